"""Two resolvers sharing answers through a real Redis (Debian's redis-server, started
here on a free loopback port, stopped by PID): the second answers without asking any
authority, TTLs count down across both, and a Redis that dies never fails a query."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from dnslib import DNSRecord

from netkit.running import serve_in_thread
from tests.support.fixtures import free_port, wait_listening

pytestmark = pytest.mark.peer


@pytest.fixture
def redis(tmp_path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server (bash scripts/install-peers.sh)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(proc, port, "redis-server")
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def resolver(hierarchy, redis_port: int, timeout: float = 0.2):  # type: ignore[no-untyped-def]
    return serve_in_thread("dns", {"dns": {
        "root_hints": str(hierarchy.root_hints), "query_private_authorities": True,
        "server_timeout": 0.3, "total_timeout": 2,
        "shared_cache": f"redis://127.0.0.1:{redis_port}/0",
        "shared_cache_timeout": timeout}})


def ask(server, name: str):  # type: ignore[no-untyped-def]
    host, port = server.addresses[0]
    return DNSRecord.parse(DNSRecord.question(name).send(host, port, timeout=3))


def test_a_second_resolver_answers_from_the_shared_cache(hierarchy, redis) -> None:
    port, _ = redis
    with resolver(hierarchy, port) as a, resolver(hierarchy, port) as b:
        first = ask(a, "www.example.com")
        assert str(first.a.rdata) == "192.0.2.10" and a.counters["upstream_queries"] > 0
        time.sleep(2.2)
        second = ask(b, "www.example.com")
        assert str(second.a.rdata) == "192.0.2.10"
        assert b.counters["upstream_queries"] == 0  # no authority was asked
        assert b.counters["shared_cache_hits"] == 1
        assert second.a.ttl <= first.a.ttl - 2  # the TTL went on counting down
        again = ask(b, "www.example.com")  # now from B's own cache
        assert str(again.a.rdata) == "192.0.2.10" and b.counters["shared_cache_hits"] == 1


def test_a_redis_that_dies_never_fails_a_query(hierarchy, redis) -> None:
    port, proc = redis
    with resolver(hierarchy, port, timeout=0.05) as a:
        assert str(ask(a, "www.example.com").a.rdata) == "192.0.2.10"
        proc.send_signal(signal.SIGSTOP)  # alive but silent: a slow Redis
        try:
            t0 = time.monotonic()
            assert str(ask(a, "www.example.org").a.rdata) == "192.0.2.20"
            assert time.monotonic() - t0 < 2
        finally:
            proc.send_signal(signal.SIGCONT)
        proc.kill()  # and now gone
        proc.wait(10)
        time.sleep(0.2)
        assert ask(a, "deep.a.b.c.example.com").header.rcode == 0
        assert a.counters["shared_cache_errors"] >= 2
