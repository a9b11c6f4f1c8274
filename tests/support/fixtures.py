"""Shared fixtures: development certificates, servers run as real processes, backends.

Every socket is on loopback with port 0; every process a test starts is
stopped by its PID at the end of the test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import queue
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netkit import certs

from . import guard

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": True})


def need(program: str) -> str:
    """The path of a real peer; in CI a missing peer is a failure, not a skip. Only tests
    marked `peer` may call it (`pytest -m "not peer"` must not need one)."""
    if not guard.marked_peer():
        pytest.fail(f"need({program!r}) in a test not marked peer")
    path = shutil.which(program)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{program} is not installed (the README's test command installs it)")
        pytest.skip(f"{program} is not installed")
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for peers and configs that need a number;
    our own servers take port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, target: bytes = b"/", timeout: float = 5) -> bytes:
    """One GET to 127.0.0.1:port on its own connection, read to the server's close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


@dataclass
class DevPKI:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing we use
    other_cert: Path  # a client certificate from the other CA
    other_key: Path
    expired_cert: Path
    expired_key: Path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPKI:
    d = tmp_path_factory.mktemp("pki")
    ca, _ = certs.ensure_ca(d)
    server_cert, server_key = certs.issue(d, ["localhost", "127.0.0.1", "::1"])
    client_cert, client_key = certs.issue(d, ["client.example", "spiffe://netkit/client"],
                                          stem="client")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired_cert, expired_key = certs.issue(d, ["localhost", "127.0.0.1"], not_before=past,
                                            not_after=past + dt.timedelta(days=1),
                                            stem="expired")
    other = d / "other"
    other_ca, _ = certs.ensure_ca(other)
    other_cert, other_key = certs.issue(other, ["client.example"], stem="client")
    return DevPKI(d, ca, server_cert, server_key, client_cert, client_key, other_ca,
                  other_cert, other_key, expired_cert, expired_key)


class ServerProcess:
    """A netkit server in a child process; its log lines are collected as they come."""

    def __init__(self, module: str, args: list[str], cwd: Path | None = None,
                 prefix: list[str] | None = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", module, *args], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        """The first log line (from line `start` on) matching `pattern`, waiting for it."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for line in self.lines[seen:]:
                m = re.search(pattern, line)
                if m:
                    return m
            seen = max(seen, len(self.lines))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no log line matching {pattern!r}; log:\n{self.log}")
            try:
                if self._queue.get(timeout=min(left, 0.2)) is None and self.proc.poll() is not None:
                    for line in self.lines[seen:]:
                        m = re.search(pattern, line)
                        if m:
                            return m
                    raise AssertionError(f"process exited ({self.proc.returncode}) before a "
                                         f"line matching {pattern!r}; log:\n{self.log}")
            except queue.Empty:
                pass

    def listening(self, count: int = 1) -> list[tuple[str, int]]:
        """The bound addresses, from the "listening on HOST:PORT" lines."""
        out = []
        for i in range(count):
            self.wait_for(r"listening on", start=0)
            deadline = time.monotonic() + 15
            while True:
                found = [re.search(r"listening on \[?([0-9a-f.:]+?)\]?:(\d+) ", line)
                         for line in self.lines]
                found = [m for m in found if m]
                if len(found) > i:
                    out.append((found[i].group(1), int(found[i].group(2))))
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"only {len(found)} listeners; log:\n{self.log}")
                time.sleep(0.05)
        return out

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


@pytest.fixture
def spawn() -> Iterator[type[ServerProcess]]:
    """spawn(module, args) -> ServerProcess; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def make(module: str, args: list[str], cwd: Path | None = None,
             prefix: list[str] | None = None) -> ServerProcess:
        """`prefix`: what runs it (["ip", "netns", "exec", NS] puts it in a namespace)."""
        p = ServerProcess(module, args, cwd, prefix)
        started.append(p)
        return p

    yield make  # type: ignore[misc]
    for p in started:
        p.stop()


class Backend:
    """A threaded TCP server on 127.0.0.1:0.

    "echo": echoes every chunk; on EOF it sends b"[eof]" and closes (so a half-close
    that really reached it is visible to the client). "sink": reads and counts.
    "http": answers one HTTP request with "hello through". "banner": speaks first
    (b"220 banner\r\n", as SMTP and SSH servers do), then echoes.
    Every connection's first bytes are kept in `first` (PROXY header tests).
    """

    def __init__(self, mode: str = "echo") -> None:
        backend = self
        self.first: list[bytes] = []
        self.received = 0
        self.connections = 0
        self.paused = threading.Event()  # set: connections stop reading

        class H(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                backend.connections += 1
                first = True
                if mode == "banner":
                    sock.sendall(b"220 banner\r\n")
                while True:
                    if backend.paused.is_set():
                        time.sleep(0.05)
                        continue
                    try:
                        data = sock.recv(262144)
                    except OSError:
                        return
                    if first:
                        backend.first.append(data)
                        first = False
                    if not data:
                        if mode in ("echo", "banner"):
                            with contextlib.suppress(OSError):
                                sock.sendall(b"[eof]")
                        return
                    backend.received += len(data)
                    if mode == "http" and b"\r\n\r\n" in data:
                        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n"
                                     b"Connection: close\r\n\r\nhello through\n")
                        return
                    if mode in ("echo", "banner"):
                        try:
                            sock.sendall(data)
                        except OSError:
                            return

        class S(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = S(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend("echo")
    yield b
    b.close()


@pytest.fixture
def make_backend() -> Iterator[type[Backend]]:
    made: list[Backend] = []

    def make(mode: str = "echo") -> Backend:
        b = Backend(mode)
        made.append(b)
        return b

    yield make  # type: ignore[misc]
    for b in made:
        b.close()


@pytest.fixture(scope="session")
def hierarchy(tmp_path_factory: pytest.TempPathFactory):
    """The local DNS hierarchy of NSD servers on 127.0.0.2-.7 port 53 (netkit/testing/nsd.py)."""
    from netkit.testing.nsd import start_hierarchy

    need("nsd")
    h = start_hierarchy(tmp_path_factory.mktemp("dns-hierarchy"))
    yield h
    h.stop()


def wait_listening(proc: subprocess.Popen, port: int, what: str, timeout: float = 10) -> None:
    """Wait until a peer started by a fixture accepts on 127.0.0.1:port (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{what} did not start listening on {port}") from None
            time.sleep(0.05)
