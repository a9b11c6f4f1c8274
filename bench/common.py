"""Helpers shared by the benchmarks: pinning, processes, CPU time, result lines.

Every benchmark runs our server and the peer in the same run on the same load
and prints ``NAME ours/peer = RATIO (ours X UNIT, peer Y UNIT)``. Servers go on
core 0 and the load on core 1 (`taskset -c`); on 2 cores an unpinned Python
server measures 2-4x slower.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

SERVER_CORE = "0"
LOAD_CORE = "1" if (os.cpu_count() or 1) > 1 else "0"
ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        sys.exit(f"bench: {program} is not installed (bash scripts/install-peers.sh)")
    return path


def free_port() -> int:
    # the benchmarks' servers take a port given on their command line (stunnel has no
    # port 0); probe one and retry on the rare race instead of assuming one is free
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: str, argv: list[str]) -> list[str]:
    return [require("taskset"), "-c", core, *argv]


def start(argv: list[str], *, core: str = SERVER_CORE, log: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(pinned(core, argv), stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: nothing listening on 127.0.0.1:{port} after {timeout} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def report(name: str, ours: list[float], peer: list[float], unit: str) -> float:
    """Print the result line from the medians of alternating rounds; return the ratio."""
    o, p = statistics.median(ours), statistics.median(peer)
    ratio = o / p if p else float("inf")
    print(f"{name} ours/peer = {ratio:.2f} (ours {o:,.1f} {unit}, peer {p:,.1f} {unit})",
          flush=True)
    return ratio


def wrk(url: str, *, seconds: float, connections: int = 50, script: str | None = None) -> float:
    """Requests/s from wrk on the load core; fails loudly on socket errors."""
    argv = [require("wrk"), "-t1", f"-c{connections}", f"-d{int(seconds)}s", url]
    if script:
        argv[1:1] = ["-s", script]
    out = subprocess.run(pinned(LOAD_CORE, argv), capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit(f"bench: wrk printed no rate:\n{out}")
    errors = re.search(r"Socket errors: (.*)", out)
    if errors or "Non-2xx" in out:
        raise SystemExit(f"bench: wrk saw errors:\n{out}")
    return float(m.group(1))


def push(port: int, mib: int, connect_to: int | None = None) -> float:
    """MiB/s pushed to a counting sink through 127.0.0.1:port (through a CONNECT tunnel
    first when `connect_to`), confirmed by the count the sink answers at EOF."""
    block = b"x" * (1 << 20)
    with socket.create_connection(("127.0.0.1", port)) as s:
        if connect_to is not None:
            s.sendall(f"CONNECT 127.0.0.1:{connect_to} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1)
            assert head.startswith(b"HTTP/1.1 200"), head
        t0 = time.perf_counter()
        for _ in range(mib):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(64):
            answer += chunk
        took = time.perf_counter() - t0
    assert int(answer) == mib << 20, answer
    return mib / took


def sink_main(port: int) -> None:
    """A server that counts what each connection sends and, at its EOF, answers the count."""
    import asyncio

    import uvloop

    async def main() -> None:
        class Sink(asyncio.Protocol):
            def connection_made(self, transport):  # type: ignore[no-untyped-def]
                self.t, self.n = transport, 0

            def data_received(self, data: bytes) -> None:
                self.n += len(data)

            def eof_received(self):  # type: ignore[no-untyped-def]
                self.t.write(b"%d" % self.n)
                self.t.close()

        server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
        await server.serve_forever()
    uvloop.run(main())


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--sink":
    sink_main(int(sys.argv[2]))
