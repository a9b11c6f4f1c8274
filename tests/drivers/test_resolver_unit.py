"""Resolver pieces without sockets: answer matching, classification, cache, minimisation."""

from __future__ import annotations

import asyncio

from dnslib import QTYPE, RCODE, RR, DNSRecord

from netkit.proto.dns import message as dnsmsg
from netkit.proto.dns.cache import Cache
from netkit.proto.dns.classify import Kind
from netkit.proto.dns.classify import classify as classify_message
from netkit.proto.dns.names import minimised
from netkit.proto.dns.wire import matches, question_end


def classify(r: DNSRecord, qname: str, qtype: int, zone: str):  # type: ignore[no-untyped-def]
    return classify_message(dnsmsg.parse(r.pack()), qname, qtype, zone)


def record(text: str) -> dnsmsg.Record:
    r = DNSRecord.question("x.test", "A").reply()
    r.add_answer(*RR.fromZone(text))
    return dnsmsg.parse(r.pack()).answer[0]


def test_answers_must_match_id_question_and_with_0x20_the_case():
    q = DNSRecord.question("wWw.ExAmple.com", "A")
    query = q.pack()
    end = question_end(query)
    wrong_id = q.reply()
    wrong_id.header.id = (q.header.id + 1) % 65536
    assert not matches(query, wrong_id.pack(), end, exact_case=True)
    wrong_case = DNSRecord.question("www.example.com", "A")
    wrong_case.header.id = q.header.id
    assert not matches(query, wrong_case.reply().pack(), end, exact_case=True)
    assert matches(query, wrong_case.reply().pack(), end, exact_case=False)
    assert not matches(query, b"garbage", end)
    assert not matches(query, query, end)  # QR clear: a query, not an answer
    other_type = DNSRecord.question("wWw.ExAmple.com", "AAAA")
    other_type.header.id = q.header.id
    assert not matches(query, other_type.reply().pack(), end)
    assert matches(query, q.reply().pack(), end, exact_case=True)


def test_out_of_bailiwick_records_are_ignored():
    q = DNSRecord.question("www.example.com", "A")
    r = q.reply()
    r.header.aa = 1
    r.add_answer(*RR.fromZone("www.example.com. 60 IN A 192.0.2.1"))
    r.add_answer(*RR.fromZone("www.bank.test. 60 IN A 198.51.100.66"))  # poison attempt
    out = classify(r, "www.example.com.", QTYPE.A, "example.com.")
    assert out.kind is Kind.ANSWER and [rr.name for rr in out.answer] == ["www.example.com."]
    bad = q.reply()
    bad.add_answer(*RR.fromZone("www.example.com. 60 IN A 203.0.113.9"))
    # a server for another zone answering for this name is not believed
    assert classify(bad, "www.example.com.", QTYPE.A, "example.org.").kind is not Kind.ANSWER


def test_referral_glue_outside_the_zone_is_not_used():
    q = DNSRecord.question("www.example.com", "A")
    r = q.reply()
    r.add_auth(*RR.fromZone("example.com. 3600 IN NS ns.example.com."))
    r.add_auth(*RR.fromZone("example.com. 3600 IN NS ns.other.org."))
    r.add_ar(*RR.fromZone("ns.example.com. 3600 IN A 192.0.2.53"))
    r.add_ar(*RR.fromZone("ns.other.org. 3600 IN A 203.0.113.53"))  # not com.'s to say
    out = classify(r, "www.example.com.", QTYPE.A, "com.")
    assert out.kind is Kind.REFERRAL and out.zone == "example.com."
    assert out.glue == {"ns.example.com.": ["192.0.2.53"]} and out.ttl == 3600


def test_upward_referral_is_lame():
    q = DNSRecord.question("www.example.com", "A")
    r = q.reply()
    r.add_auth(*RR.fromZone(". 3600 IN NS a.root."))
    assert classify(r, "www.example.com.", QTYPE.A, "example.com.").kind is Kind.LAME


def test_cache_ttls_caps_lru_and_negative():
    cache = Cache(max_entries=2, max_ttl=100, min_ttl=5)
    cache.put("a.test", QTYPE.A, [record("a.test. 1000 IN A 192.0.2.1")], now=0)
    assert cache.get("a.test", QTYPE.A, 99) is not None
    assert cache.get("a.test", QTYPE.A, 100) is None  # capped at max_ttl
    cache.put("b.test", QTYPE.A, [record("b.test. 1 IN A 192.0.2.2")], now=0)
    assert cache.get("b.test", QTYPE.A, 4) is not None  # floored at min_ttl
    cache.put("c.test", QTYPE.A, [record("c.test. 50 IN A 192.0.2.3")], now=0)
    cache.put("d.test", QTYPE.A, [record("d.test. 50 IN A 192.0.2.4")], now=0)
    assert len(cache.entries) == 2 and cache.get("b.test", QTYPE.A, 1) is None  # LRU
    soa = record("test. 3600 IN SOA ns.test. a.test. 1 2 3 4 30")
    cache.put_negative("x.test", QTYPE.A, RCODE.NXDOMAIN, soa, now=0)
    entry = cache.get("x.test", QTYPE.A, 29)
    assert entry is not None and entry.negative and entry.rcode == RCODE.NXDOMAIN
    assert cache.get("x.test", QTYPE.A, 31) is None  # RFC 2308: the SOA minimum
    assert [r.ttl for r in cache.with_ttls(entry, 29)] == [1]


def test_minimised_names():
    assert minimised("a.b.example.com.", ".", 1) == "com."
    assert minimised("a.b.example.com.", "com.", 1) == "example.com."
    assert minimised("a.b.example.com.", "example.com.", 2) == "a.b.example.com."
    assert minimised("example.com.", "example.com.", 1) == "example.com."


def test_udp_exchanges_share_one_watcher_and_keep_their_own_deadlines():
    import os
    import socket
    import time

    import pytest

    from netkit.transport.dns_exchange import DNSExchange

    exchange = DNSExchange()

    async def main() -> None:
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))  # reads nothing, answers nothing
        port = silent.getsockname()[1]
        closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()  # nothing listens there: ICMP port unreachable
        q = DNSRecord.question("www.example.com", "A").pack()
        t0 = time.monotonic()
        with pytest.raises(ConnectionRefusedError):
            await exchange.udp("127.0.0.1", closed_port, q, 2.0)
        assert time.monotonic() - t0 < 1.5  # refused at once, not after the timeout
        fds = len(os.listdir("/proc/self/fd"))  # the loop's watcher made by now

        async def timed(timeout: float) -> float:
            with pytest.raises(TimeoutError):
                await exchange.udp("127.0.0.1", port, q, timeout)
            return time.monotonic() - t0

        # the later deadline is armed first: the earlier one must still fire on time
        slow = asyncio.ensure_future(timed(0.4))
        await asyncio.sleep(0)
        fast = await timed(0.05)
        assert fast < 0.3
        assert 0.35 < await slow < 1.5
        assert len(os.listdir("/proc/self/fd")) == fds  # every query's socket closed
        silent.close()

    asyncio.run(main())
    asyncio.run(main())  # a second event loop gets its own watcher
    exchange.close()  # its epoll, not left to the garbage collector (other tests count fds)
