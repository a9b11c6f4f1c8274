"""The bad-peer kit against the proxy: a client that never reads (pipelined downloads
through the proxy), a trickling one, garbage, a flood; and a CONNECT tunnel whose client
never reads. Memory stays bounded and a good client is answered throughout."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from netkit.testing import serve_in_thread
from tests.drivers.test_proxy import app
from tests.support import badpeers

MODULE = "netkit.servers.proxy"


@pytest.fixture(scope="module")
def origin() -> Iterator[tuple[str, int]]:
    with serve_in_thread("http", app=app) as web:
        yield web.addresses[0]


@pytest.fixture
def proxy(spawn, origin):  # type: ignore[no-untyped-def]
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", "proxy.deny_destinations=[]",
                          "--set", f"proxy.connect_ports=[{origin[1]}]",
                          "--set", "proxy.header_timeout=0.5",
                          "--set", "proxy.limits.max_connections=64"])
    ((_, port),) = proc.listening(1)
    return proc, port


def good(port: int, origin: tuple[str, int]) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET http://{origin[0]}:{origin[1]}/inspect HTTP/1.1\r\nHost: x\r\n"
                  "Connection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out.startswith(b"HTTP/1.1 200 ")


def test_a_client_that_never_reads_leaves_memory_bounded(proxy, origin) -> None:
    proc, port = proxy
    before = badpeers.rss_kib(proc.proc.pid)
    # pipelined 4 MiB downloads that are never read: ~800 MiB if the proxy held them
    one = f"GET http://{origin[0]}:{origin[1]}/download?mib=4 HTTP/1.1\r\nHost: x\r\n\r\n"
    with badpeers.Meanwhile(lambda: good(port, origin)) as meanwhile, \
            badpeers.never_reads(("127.0.0.1", port), one.encode() * 200, connections=2):
        time.sleep(2)
        grown = badpeers.rss_kib(proc.proc.pid) - before
    assert grown < 40_000, f"RSS grew by {grown} KiB"
    assert meanwhile.answered >= 5 and not meanwhile.failures


def test_a_tunnel_whose_client_never_reads_leaves_memory_bounded(proxy, origin) -> None:
    proc, port = proxy
    before = badpeers.rss_kib(proc.proc.pid)
    connect = f"CONNECT {origin[0]}:{origin[1]} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    # through the tunnel, pipelined downloads the client never reads
    inner = b"GET /download?mib=4 HTTP/1.1\r\nHost: x\r\n\r\n" * 100
    with badpeers.never_reads(("127.0.0.1", port), connect + inner, connections=2):
        time.sleep(2)
        grown = badpeers.rss_kib(proc.proc.pid) - before
    assert grown < 40_000, f"RSS grew by {grown} KiB"
    assert good(port, origin)


def test_a_trickling_client_is_cut_at_the_head_deadline(proxy, origin) -> None:
    _, port = proxy
    head = b"GET http://127.0.0.1/ HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with badpeers.Meanwhile(lambda: good(port, origin)) as meanwhile, \
            badpeers.trickle(("127.0.0.1", port), head, interval=0.05, connections=5) as socks:
        t0 = time.monotonic()
        assert all(badpeers.closed_by_server(s, 5) for s in socks)
        assert time.monotonic() - t0 < 3
    assert meanwhile.answered >= 3 and not meanwhile.failures


@pytest.mark.parametrize("seed", range(3))
def test_garbage_gets_400_and_a_close_never_a_traceback(proxy, origin, seed) -> None:
    proc, port = proxy
    out = badpeers.garbage(("127.0.0.1", port), seed=seed)
    assert out.startswith(b"HTTP/1.1 4"), out[:40]
    assert good(port, origin) and "Traceback" not in proc.log


def test_a_flood_of_connections_leaves_the_proxy_answering(proxy, origin) -> None:
    proc, port = proxy
    before = badpeers.rss_kib(proc.proc.pid)
    payload = f"GET http://{origin[0]}:{origin[1]}/inspect HTTP/1.1\r\nHost: x\r\n\r\n"
    with badpeers.Meanwhile(lambda: good(port, origin), interval=0.05) as meanwhile:
        n = badpeers.flood(("127.0.0.1", port), payload.encode() + os.urandom(64),
                           connections=300)
    assert n > 200
    assert badpeers.rss_kib(proc.proc.pid) - before < 40_000
    assert good(port, origin) and meanwhile.answered >= 1
    assert "Traceback" not in proc.log
