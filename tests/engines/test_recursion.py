"""The resolution engine without sockets or clocks: scripted answers in, queries out."""

from __future__ import annotations

from dnslib import QTYPE, RCODE, RR, DNSRecord

from netkit.proto.dns import message as dnsmsg
from netkit.proto.dns.cache import Cache
from netkit.proto.dns.names import EDE
from netkit.proto.dns.recursion import Exchange, Query, Recursion

HINTS = [("a.root.", "192.0.2.1"), ("b.root.", "192.0.2.2")]


def answer(query: Query, *, answers=(), auth=(), extra=(), rcode=0, aa=True):  # type: ignore[no-untyped-def]
    r = DNSRecord.question(query.name, QTYPE.get(query.qtype)).reply()
    r.header.aa, r.header.rcode = int(aa), rcode
    for text in answers:
        r.add_answer(*RR.fromZone(text))
    for text in auth:
        r.add_auth(*RR.fromZone(text))
    for text in extra:
        r.add_ar(*RR.fromZone(text))
    return dnsmsg.parse(r.pack())


def engine(**kw):  # type: ignore[no-untyped-def]
    return Recursion(hints=HINTS, cache=Cache(), query_private_authorities=True, **kw)


def test_referral_with_glue_then_answer_and_the_cut_is_remembered():
    e = engine(qname_minimisation=False)
    steps = e.resolve("www.example.com.", QTYPE.A, now=100.0)
    q = next(steps)
    assert q.server in ("192.0.2.1", "192.0.2.2") and q.name == "www.example.com."
    q = steps.send(Exchange(100.01, answer(
        q, aa=False, auth=["example.com. 3600 IN NS ns.example.com."],
        extra=["ns.example.com. 3600 IN A 198.51.100.53"])))
    assert q.server == "198.51.100.53"
    try:
        steps.send(Exchange(100.02, answer(q, answers=["www.example.com. 60 IN A 203.0.113.7"])))
    except StopIteration as done:
        result = done.value
    assert result.rcode == RCODE.NOERROR and result.answer[0].address == "203.0.113.7"
    # the next name in the zone goes straight to its server, from the same engine
    q = next(e.resolve("mail.example.com.", QTYPE.A, now=101.0))
    assert q.server == "198.51.100.53"


def test_silent_server_is_skipped_and_remembered_then_the_deadline_ends_it():
    e = engine(server_timeout=0.5, total_timeout=2.0)
    steps = e.resolve("example.com.", QTYPE.A, now=0.0)
    first = next(steps)
    assert first.timeout == 0.5
    second = steps.send(Exchange(0.5, None, "timed out", timed_out=True))
    assert second.server != first.server and e.dead_until[first.server] == 60.5
    # the clock says the resolution's time is up: SERVFAIL, EDE 22, and no more queries
    try:
        steps.send(Exchange(2.1, None, "timed out", timed_out=True))
    except StopIteration as done:
        result = done.value
    assert result.rcode == RCODE.SERVFAIL
    assert result.ede == (EDE.NO_REACHABLE_AUTHORITY, "no answer within 2.0 s")


def test_waits_are_cut_to_what_is_left_of_the_deadline():
    e = engine(server_timeout=0.8, total_timeout=1.0)
    steps = e.resolve("example.com.", QTYPE.A, now=0.0)
    next(steps)
    q = steps.send(Exchange(0.7, None, "connection refused"))
    assert abs(q.timeout - 0.3) < 1e-9 and abs(q.tcp_timeout - 0.3) < 1e-9


def test_cname_loop_is_servfail_with_ede_24():
    e = engine(qname_minimisation=False)
    e.delegations["example.com."] = (1e9, ["198.51.100.53"])
    steps = e.resolve("a.example.com.", QTYPE.A, now=0.0)
    q = next(steps)
    result = None
    try:
        for _ in range(5):
            target = "b" if q.name.startswith("a.") else "a"
            q = steps.send(Exchange(0.01, answer(
                q, answers=[f"{q.name} 60 IN CNAME {target}.example.com."])))
    except StopIteration as done:
        result = done.value
    assert result is not None and result.rcode == RCODE.SERVFAIL
    assert result.ede[0] == EDE.INVALID_DATA and "CNAME loop" in result.ede[1]
