"""The bad-peer kit: the four clients every server's tests meet, and the measure of what
they cost the server.

- `never_reads`: sends (say, pipelined requests) and never reads an answer, with a
  small receive buffer, so every byte the server answers stays with the server;
- `trickle`: sends a byte at a time, slowly, holding a connection (slowloris);
- `garbage`: sends random bytes and reports what came back;
- `flood`: many connections at once, each sending a payload and closing.

`rss_kib(pid)` reads a server's resident memory; `Meanwhile` asks a good client's
question over and over while a bad peer runs, so a test can assert the server went on
answering others. Everything is on loopback, bounded in count and time.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


@contextlib.contextmanager
def never_reads(address: tuple[str, int], payload: bytes, *,
                connections: int = 1) -> Iterator[list[socket.socket]]:
    """Connections that send `payload` (as far as the server takes it) and never read;
    held open for the body of the `with`."""
    socks = []
    try:
        for _ in range(connections):
            s = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(address)
            s.settimeout(2)
            with contextlib.suppress(OSError):  # a server that stops reading: fine
                s.sendall(payload)
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


@contextlib.contextmanager
def trickle(address: tuple[str, int], data: bytes, *, interval: float = 0.05,
            connections: int = 1, step: int = 1) -> Iterator[list[socket.socket]]:
    """Connections that send `data` `step` bytes every `interval` in a thread, for the
    body of the `with` (or until `data` runs out or the server closes)."""
    socks = [socket.create_connection(address, timeout=5) for _ in range(connections)]
    stop = threading.Event()

    def run() -> None:
        for i in range(0, len(data), step):
            if stop.wait(interval):
                return
            for s in socks:
                with contextlib.suppress(OSError):
                    s.send(data[i:i + step])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield socks
    finally:
        stop.set()
        thread.join(5)
        for s in socks:
            s.close()


def closed_by_server(s: socket.socket, timeout: float) -> bool:
    """The server closed `s` (EOF or reset) within `timeout`; what it sent is skipped."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def garbage(address: tuple[str, int], *, size: int = 4096, seed: int = 0,
            timeout: float = 3.0) -> bytes:
    """Send `size` random bytes, then read what comes back until the server closes or
    `timeout` passes."""
    data = random.Random(seed).randbytes(size)
    out = b""
    with socket.create_connection(address, timeout=timeout) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                out += chunk
    return out


def flood(address: tuple[str, int], payload: bytes, *, connections: int = 200,
          threads: int = 8) -> int:
    """`connections` connections, `threads` at a time, each sending `payload` and
    closing; returns how many connected."""
    done = 0
    lock = threading.Lock()
    per = connections // threads

    def run() -> None:
        nonlocal done
        for _ in range(per):
            try:
                with socket.create_connection(address, timeout=5) as s:
                    s.sendall(payload)
                    with lock:
                        done += 1
            except OSError:
                pass

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    return done


class Meanwhile:
    """Asks `check()` (a good client's whole exchange, True when answered right) again and
    again in a thread while the `with` body runs; `failures` counts wrong or missing
    answers, `answered` the right ones."""

    def __init__(self, check: Callable[[], bool], interval: float = 0.1) -> None:
        self.check = check
        self.interval = interval
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            try:
                if self.check():
                    self.answered += 1
                else:
                    self.failures.append("wrong answer")
            except OSError as exc:
                self.failures.append(repr(exc))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Meanwhile:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
