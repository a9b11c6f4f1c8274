"""The bad-peer kit against the DNS resolver over TCP (and UDP answered meanwhile)."""

from __future__ import annotations

import contextlib
import socket
import struct
import time

from dnslib import DNSRecord

from tests.peers.test_dns import MODULE, resolver_args
from tests.support import badpeers


def udp_ok(port: int) -> bool:
    q = DNSRecord.question("localhost", "A")
    answer = DNSRecord.parse(q.send("127.0.0.1", port, timeout=2))
    return answer.header.rcode == 0 and str(answer.rr[0].rdata) == "127.0.0.1"


def framed(name: str, qtype: str, ident: int) -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = ident & 0xFFFF
    wire = q.pack()
    return struct.pack("!H", len(wire)) + wire


def test_pipelined_tcp_queries_never_read_leave_memory_bounded(spawn, hierarchy):
    proc = spawn(MODULE, resolver_args(hierarchy))
    (_, port), _ = proc.listening(2)
    assert udp_ok(port)
    # warm the cache: every query below is then a ~3 KB answer from memory
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(framed("big.example.com", "TXT", 1))
        size = struct.unpack("!H", s.recv(2))[0]
        assert size > 2000
    before = badpeers.rss_kib(proc.proc.pid)
    pipeline = b"".join(framed("big.example.com", "TXT", i) for i in range(20000))
    with badpeers.Meanwhile(lambda: udp_ok(port)) as good, \
            badpeers.never_reads(("127.0.0.1", port), pipeline, connections=2):
        time.sleep(2)
        grown = badpeers.rss_kib(proc.proc.pid) - before
    # 40,000 answers of 3 KB would be 120 MB held; the server stops reading instead
    assert grown < 30_000, f"RSS grew by {grown} KiB"
    assert good.answered >= 5 and not good.failures


def test_zero_length_tcp_messages_close_the_connection(spawn, hierarchy):
    proc = spawn(MODULE, resolver_args(hierarchy))
    (_, port), _ = proc.listening(2)
    with badpeers.Meanwhile(lambda: udp_ok(port), interval=0.02) as good:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            t0 = time.monotonic()
            with contextlib.suppress(OSError):  # closed on us mid-send: what we want
                s.sendall(b"\x00\x00" * (2 << 20))  # 4 MiB of empty messages
            assert badpeers.closed_by_server(s, 5)
            assert time.monotonic() - t0 < 3
        time.sleep(0.2)
    assert good.answered >= 3 and not good.failures
    proc.wait_for(r"zero-length message over TCP: closing")


def test_garbage_and_a_flood_over_tcp(spawn, hierarchy):
    proc = spawn(MODULE, resolver_args(hierarchy, "--set", "dns.tcp.max_connections=32"))
    (_, port), _ = proc.listening(2)
    for seed in range(3):
        badpeers.garbage(("127.0.0.1", port), seed=seed, timeout=2)
    with badpeers.Meanwhile(lambda: udp_ok(port)) as good:
        n = badpeers.flood(("127.0.0.1", port), framed("localhost", "A", 7), connections=300)
    assert n > 200 and udp_ok(port) and good.answered >= 1
    assert "Traceback" not in proc.log


def test_a_trickling_tcp_client_gets_its_answer_and_others_are_served(spawn, hierarchy):
    proc = spawn(MODULE, resolver_args(hierarchy))
    (_, port), _ = proc.listening(2)
    query = framed("localhost", "A", 42)
    with badpeers.Meanwhile(lambda: udp_ok(port)) as good, \
            badpeers.trickle(("127.0.0.1", port), query, interval=0.03, connections=4) as socks:
        time.sleep(0.03 * len(query) + 0.5)
        for s in socks:
            s.settimeout(3)
            size = struct.unpack("!H", s.recv(2))[0]
            assert DNSRecord.parse(s.recv(size)).header.id == 42
    assert good.answered >= 3 and not good.failures


def test_two_hierarchies_run_side_by_side(hierarchy, tmp_path):
    from netkit.testing.nsd import start_hierarchy

    other = start_hierarchy(tmp_path)  # beside the session's: another 127.X.Y prefix
    try:
        assert other.prefix != hierarchy.prefix
        for h in (hierarchy, other):
            q = DNSRecord.question("com", "NS")
            assert DNSRecord.parse(q.send(h.addr(2), 53, timeout=3)).header.rcode == 0
    finally:
        other.stop()
