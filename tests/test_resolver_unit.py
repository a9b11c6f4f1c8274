"""Resolver pieces without sockets: answer matching, classification, cache, minimisation."""

from __future__ import annotations

import asyncio

from dnslib import QTYPE, RCODE, RR, DNSRecord

from netkit.dnsexchange import _Waiter
from netkit.proto.dns import Cache, Kind, classify, minimised


def test_answers_must_match_id_question_and_with_0x20_the_case():
    async def main() -> None:
        q = DNSRecord.question("wWw.ExAmple.com", "A")
        strict = _Waiter(q, exact_case=True)
        wrong_id = q.reply()
        wrong_id.header.id = (q.header.id + 1) % 65536
        strict.datagram_received(wrong_id.pack(), ("127.0.0.1", 53))
        wrong_case = DNSRecord.question("www.example.com", "A")
        wrong_case.header.id = q.header.id
        strict.datagram_received(wrong_case.reply().pack(), ("127.0.0.1", 53))
        strict.datagram_received(b"garbage", ("127.0.0.1", 53))
        assert not strict.done.done()
        strict.datagram_received(q.reply().pack(), ("127.0.0.1", 53))
        assert strict.done.done()

    asyncio.run(main())


def test_out_of_bailiwick_records_are_ignored():
    q = DNSRecord.question("www.example.com", "A")
    r = q.reply()
    r.header.aa = 1
    r.add_answer(*RR.fromZone("www.example.com. 60 IN A 192.0.2.1"))
    r.add_answer(*RR.fromZone("www.bank.test. 60 IN A 198.51.100.66"))  # poison attempt
    out = classify(r, "www.example.com.", QTYPE.A, "example.com.")
    assert out.kind is Kind.ANSWER and [str(rr.rname) for rr in out.answer] == ["www.example.com."]
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
    rr = RR.fromZone("a.test. 1000 IN A 192.0.2.1")
    cache.put("a.test", QTYPE.A, rr, now=0)
    assert cache.get("a.test", QTYPE.A, 99) is not None
    assert cache.get("a.test", QTYPE.A, 100) is None  # capped at max_ttl
    cache.put("b.test", QTYPE.A, RR.fromZone("b.test. 1 IN A 192.0.2.2"), now=0)
    assert cache.get("b.test", QTYPE.A, 4) is not None  # floored at min_ttl
    cache.put("c.test", QTYPE.A, RR.fromZone("c.test. 50 IN A 192.0.2.3"), now=0)
    cache.put("d.test", QTYPE.A, RR.fromZone("d.test. 50 IN A 192.0.2.4"), now=0)
    assert len(cache.entries) == 2 and cache.get("b.test", QTYPE.A, 1) is None  # LRU
    soa = RR.fromZone("test. 3600 IN SOA ns.test. a.test. 1 2 3 4 30")[0]
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
