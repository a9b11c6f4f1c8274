"""The bad-peer kit against the HTTP server: memory stays bounded, every bad input gets
its answer or a close, and a good client is answered throughout."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support import badpeers
from tests.support.fixtures import http_get

MODULE = "netkit.servers.http"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "small.txt").write_text("small\n")
    (root / "f200k.bin").write_bytes(os.urandom(200 * 1024))
    return root


def small_ok(port: int) -> bool:
    out = http_get(port, b"/small.txt")
    return out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"small\n")


@pytest.mark.parametrize("app", [False, True])
def test_a_pipelining_client_that_never_reads_leaves_memory_bounded(spawn, site, app):
    args = ["--listen", "127.0.0.1:0", "--set", f"http.root={site}"]
    if app:  # an application's answers are held back the same way
        args += ["--app", "tests.support.apps:big", "--set", "http.app_type=native"]
    proc = spawn(MODULE, args)
    ((_, port),) = proc.listening(1)
    assert small_ok(port) or app
    before = badpeers.rss_kib(proc.proc.pid)
    target = b"/" if app else b"/f200k.bin"
    pipeline = b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % target * 2000
    with badpeers.Meanwhile(lambda: small_ok(port) or app) as good, \
            badpeers.never_reads(("127.0.0.1", port), pipeline, connections=2):
        time.sleep(2)
        grown = badpeers.rss_kib(proc.proc.pid) - before
    # answering all 4000 would hold ~800 MB (the server used to); the write buffer
    # (256 KiB) and one read's worth of requests per connection is what it may hold
    assert grown < 40_000, f"RSS grew by {grown} KiB"
    assert good.answered >= 5 and not good.failures


def test_a_trickling_client_is_cut_at_the_head_deadline(spawn, site):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", f"http.root={site}",
                          "--set", "http.header_timeout=0.5"])
    ((_, port),) = proc.listening(1)
    head = b"GET /small.txt HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with badpeers.Meanwhile(lambda: small_ok(port)) as good, \
            badpeers.trickle(("127.0.0.1", port), head, interval=0.05, connections=5) as socks:
        t0 = time.monotonic()
        assert all(badpeers.closed_by_server(s, 5) for s in socks)
        assert time.monotonic() - t0 < 3
    assert good.answered >= 3 and not good.failures


def test_empty_lines_forever_are_cut(spawn, site):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", f"http.root={site}",
                          "--set", "http.header_timeout=1"])
    ((_, port),) = proc.listening(1)
    # whole CRLFs: each one is an empty line, never a partial head
    with badpeers.trickle(("127.0.0.1", port), b"\r\n" * 200, interval=0.1, step=2) as (s,):
        t0 = time.monotonic()
        assert badpeers.closed_by_server(s, 10)
        assert time.monotonic() - t0 < 3  # after a few lines, not after the idle timeout
    assert small_ok(port)


@pytest.mark.parametrize("seed", range(4))
def test_garbage_gets_400_and_a_close_never_a_traceback(spawn, site, seed):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", f"http.root={site}",
                          "--set", "http.header_timeout=1"])
    ((_, port),) = proc.listening(1)
    out = badpeers.garbage(("127.0.0.1", port), seed=seed)
    assert out.startswith(b"HTTP/1.1 4"), out[:40]
    assert small_ok(port) and "Traceback" not in proc.log


def test_a_flood_of_connections_leaves_the_server_answering(spawn, site):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", f"http.root={site}",
                          "--set", "http.limits.max_connections=64"])
    ((_, port),) = proc.listening(1)
    before = badpeers.rss_kib(proc.proc.pid)
    with badpeers.Meanwhile(lambda: small_ok(port), interval=0.05) as good:
        n = badpeers.flood(("127.0.0.1", port), b"GET /f200k.bin HTTP/1.1\r\nHost: x\r\n\r\n",
                           connections=400)
    assert n > 300
    assert badpeers.rss_kib(proc.proc.pid) - before < 40_000
    assert small_ok(port) and good.answered >= 1
