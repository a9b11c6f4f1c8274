"""A throwaway PostgreSQL server (Debian's postgresql package) for tests and benchmarks.

    with PostgresServer() as pg:        # a free loopback port, a data directory of its own
        pg.dsn                          # postgresql://netkit@127.0.0.1:PORT/postgres
        pg.socket_dsn                   # the same over its Unix socket (from a namespace)
        pg.stop(); pg.start()           # gone and back, same data

PostgreSQL refuses to run as root: as root the server runs as the `postgres` user (or
`nobody`), in a directory made for it. Stopped by its PID, never by name.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def postgres_bin() -> Path | None:
    """Debian's /usr/lib/postgresql/N/bin, the newest N."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, *, durable: bool = False, port: int = 0) -> None:
        """`durable=False` turns fsync off (tests: nothing survives the machine anyway);
        benchmarks keep PostgreSQL's defaults."""
        bindir = postgres_bin()
        if bindir is None:
            raise FileNotFoundError("no PostgreSQL server (apt-get install postgresql)")
        self.bindir = bindir
        self.durable = durable
        self.port = port or _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="netkit-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = next((u for u in ("postgres", "nobody") if _exists(u)), None)
            if self.user is None:
                raise PermissionError("PostgreSQL refuses root and no other user exists")
            entry = pwd.getpwnam(self.user)
            os.chmod(self.dir, 0o755)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.proc: subprocess.Popen[bytes] | None = None
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", "netkit", "-A",
                   "trust", "-E", "UTF8", "--no-sync", "--locale=C"])

    @property
    def dsn(self) -> str:
        return f"postgresql://netkit@127.0.0.1:{self.port}/postgres"

    @property
    def socket_dsn(self) -> str:
        return f"postgresql://netkit@/postgres?host={self.dir}&port={self.port}"

    def _run(self, argv: list[str]) -> None:
        subprocess.run(argv, check=True, capture_output=True, user=self.user,
                       group=self.user and pwd.getpwnam(self.user).pw_gid)

    def start(self, timeout: float = 30) -> PostgresServer:
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                    "-c", "max_connections=200", "-c", "shared_buffers=64MB"]
        if not self.durable:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off",
                         "-c", "full_page_writes=off"]
        log = open(self.log, "ab")  # noqa: SIM115 - the server's, kept open while it runs
        self.proc = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             *settings], stdout=log, stderr=log, user=self.user,
            group=self.user and pwd.getpwnam(self.user).pw_gid)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text()[-2000:]}")
            if subprocess.run([str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1",
                               "-p", str(self.port)]).returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"postgres did not start: {self.log.read_text()[-2000:]}")

    def stop(self, *, immediate: bool = False) -> None:
        """Fast shutdown (SIGINT: sessions are ended), or an immediate one (SIGQUIT,
        as a crash would)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT if immediate else signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True
