"""The resolution engine without sockets or clocks: scripted answers in, queries out."""

from __future__ import annotations

import random

from dnslib import QTYPE, RCODE, RD, RR, DNSRecord

from netkit.proto.dns import message as dnsmsg
from netkit.proto.dns.cache import Cache
from netkit.proto.dns.names import EDE
from netkit.proto.dns.recursion import Exchange, Query, Recursion

HINTS = [("a.root.", "192.0.2.1"), ("b.root.", "192.0.2.2")]


def answer(query: Query, *, answers=(), auth=(), extra=(), rcode=0, aa=True):  # type: ignore[no-untyped-def]
    r = DNSRecord.question(query.name, QTYPE.get(query.qtype)).reply()
    r.header.aa, r.header.rcode = int(aa), rcode
    for text in answers:
        r.add_answer(*([text] if isinstance(text, RR) else RR.fromZone(text)))
    for text in auth:
        r.add_auth(*RR.fromZone(text))
    for text in extra:
        r.add_ar(*RR.fromZone(text))
    return dnsmsg.parse(r.pack())


def engine(**kw):  # type: ignore[no-untyped-def]
    kw.setdefault("random", random.Random(7).random)
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


def finish(steps, exchange):  # type: ignore[no-untyped-def]
    """Send the last exchange; the engine must stop with its Result."""
    try:
        q = steps.send(exchange)
    except StopIteration as done:
        return done.value
    raise AssertionError(f"the engine asked again: {q}")


def test_dname_is_followed_and_the_synthesised_cname_is_in_the_answer():
    e = engine(qname_minimisation=False)
    e.delegations["example.com."] = (1e9, ["198.51.100.53"])
    e.delegations["example.net."] = (1e9, ["198.51.100.54"])
    steps = e.resolve("www.old.example.com.", QTYPE.A, now=0.0)
    q = next(steps)
    assert q.server == "198.51.100.53"
    q = steps.send(Exchange(0.01, answer(
        q, answers=[RR("old.example.com.", dnsmsg.DNAME, ttl=300,
                       rdata=RD(dnsmsg.name_to_wire("new.example.net.")))])))
    # the synthesised target is asked of its own zone's server
    assert q.server == "198.51.100.54" and q.name == "www.new.example.net."
    result = finish(steps, Exchange(0.02, answer(
        q, answers=["www.new.example.net. 60 IN A 203.0.113.9"])))
    assert result.rcode == RCODE.NOERROR
    kinds = [(r.name, r.rtype) for r in result.answer]
    assert kinds == [("old.example.com.", dnsmsg.DNAME), ("www.old.example.com.", dnsmsg.CNAME),
                     ("www.new.example.net.", dnsmsg.A)]
    assert result.answer[1].target == "www.new.example.net."


def test_forward_zone_asks_its_servers_with_rd_and_never_the_root():
    e = engine(forwards={"corp.example": [("10.9.9.9", 5353), ("10.9.9.10", 53)]})
    steps = e.resolve("intranet.corp.example.", QTYPE.A, now=0.0)
    q = next(steps)
    assert (q.server, q.port, q.rd, q.name) == ("10.9.9.9", 5353, True, "intranet.corp.example.")
    # the first forwarder fails: the second is asked, still with RD
    q = steps.send(Exchange(0.1, None, "connection refused"))
    assert (q.server, q.port, q.rd) == ("10.9.9.10", 53, True)
    result = finish(steps, Exchange(0.2, answer(
        q, aa=False, answers=["intranet.corp.example. 60 IN A 10.1.2.3"])))
    assert result.rcode == RCODE.NOERROR and result.answer[0].address == "10.1.2.3"
    # names outside the zone are iterated from the root as usual
    q = next(e.resolve("www.example.com.", QTYPE.A, now=1.0))
    assert q.server in ("192.0.2.1", "192.0.2.2") and not q.rd


def test_forward_zone_with_no_answer_is_servfail_naming_each_forwarder():
    e = engine(forwards={"corp.example": [("10.9.9.9", 53)]}, total_timeout=5.0)
    steps = e.resolve("x.corp.example.", QTYPE.A, now=0.0)
    next(steps)
    result = finish(steps, Exchange(0.1, None, "connection refused"))
    assert result.rcode == RCODE.SERVFAIL
    assert result.ede[0] == EDE.NO_REACHABLE_AUTHORITY
    assert "no forwarder answered" in result.ede[1] and "10.9.9.9" in result.ede[1]


def test_serve_stale_answers_from_an_expired_entry_when_the_authorities_are_gone():
    e = Recursion(hints=HINTS, cache=Cache(stale_for=3600.0), query_private_authorities=True,
                  qname_minimisation=False, server_timeout=0.5, total_timeout=1.0,
                  random=random.Random(7).random)
    e.delegations["example.com."] = (1e9, ["198.51.100.53"])
    steps = e.resolve("www.example.com.", QTYPE.A, now=0.0)
    q = next(steps)
    result = finish(steps, Exchange(0.01, answer(
        q, answers=["www.example.com. 60 IN A 203.0.113.7"])))
    assert result.ede is None
    # 10 minutes later the entry has expired and the only server is silent
    steps = e.resolve("www.example.com.", QTYPE.A, now=600.0)
    q = next(steps)
    assert q.server == "198.51.100.53"
    result = finish(steps, Exchange(601.1, None, "timed out", timed_out=True))
    assert result.rcode == RCODE.NOERROR
    assert result.answer[0].address == "203.0.113.7" and result.answer[0].ttl == 30
    assert result.ede[0] == EDE.STALE_ANSWER
    # past the stale window it is SERVFAIL again
    steps = e.resolve("www.example.com.", QTYPE.A, now=600.0 + 3600.0)
    next(steps)
    result = finish(steps, Exchange(4201.1, None, "timed out", timed_out=True))
    assert result.rcode == RCODE.SERVFAIL


def test_unknown_servers_are_ordered_by_the_injected_randomness():
    orders = set()
    for seed in range(20):
        e = engine(random=random.Random(seed).random, qname_minimisation=False)
        orders.add(next(e.resolve("example.com.", QTYPE.A, now=0.0)).server)
    assert orders == {"192.0.2.1", "192.0.2.2"}
    e1, e2 = (engine(random=random.Random(3).random) for _ in range(2))
    assert next(e1.resolve("a.", QTYPE.A, 0.0)).server == \
        next(e2.resolve("a.", QTYPE.A, 0.0)).server


def test_a_forwarder_cannot_answer_for_names_outside_its_zone():
    e = engine(forwards={"evil.test": [("10.9.9.9", 53)]}, qname_minimisation=False)
    steps = e.resolve("www.evil.test.", QTYPE.A, now=0.0)
    q = next(steps)
    # the forwarder slips in a record for a name it has no say over
    result = finish(steps, Exchange(0.1, answer(
        q, aa=False, answers=["www.evil.test. 60 IN A 10.6.6.6",
                              "victim.example. 60 IN A 6.6.6.6"])))
    assert [r.name for r in result.answer] == ["www.evil.test."]
    assert e.cache.get("victim.example.", QTYPE.A, 1.0) is None
    # so victim.example is iterated from the root, not answered from what evil.test said
    q = next(e.resolve("victim.example.", QTYPE.A, now=1.0))
    assert q.server in ("192.0.2.1", "192.0.2.2")


def test_a_forwarded_cname_out_of_the_zone_is_followed_not_believed():
    e = engine(forwards={"corp.example": [("10.9.9.9", 53)]}, qname_minimisation=False)
    e.delegations["cdn.example."] = (1e9, ["198.51.100.80"])
    steps = e.resolve("app.corp.example.", QTYPE.A, now=0.0)
    q = next(steps)
    q = steps.send(Exchange(0.1, answer(
        q, aa=False, answers=["app.corp.example. 60 IN CNAME edge.cdn.example.",
                              "edge.cdn.example. 60 IN A 6.6.6.6"])))  # not believed
    assert (q.server, q.name) == ("198.51.100.80", "edge.cdn.example.")  # asked where it lives
    result = finish(steps, Exchange(0.2, answer(
        q, answers=["edge.cdn.example. 60 IN A 203.0.113.80"])))
    assert [(r.name, r.rtype) for r in result.answer] == [
        ("app.corp.example.", dnsmsg.CNAME), ("edge.cdn.example.", dnsmsg.A)]
    assert result.answer[1].address == "203.0.113.80"


def test_a_negative_answer_carries_and_lives_by_the_negative_ttl():
    e = engine(qname_minimisation=False)
    e.delegations["example.com."] = (1e9, ["198.51.100.53"])
    steps = e.resolve("gone.example.com.", QTYPE.A, now=0.0)
    q = next(steps)
    # SOA TTL 30, MINIMUM 2: the negative TTL is 2 (RFC 2308 section 5)
    result = finish(steps, Exchange(0.01, answer(q, rcode=RCODE.NXDOMAIN, auth=[
        "example.com. 30 IN SOA ns.example.com. host.example.com. 1 3600 600 86400 2"])))
    assert result.rcode == RCODE.NXDOMAIN and result.authority[0].ttl == 2
    hit = e.cache.get("gone.example.com.", QTYPE.A, 1.0)
    assert hit is not None and hit.rrs[0].ttl == 2
    assert e.cache.get("gone.example.com.", QTYPE.A, 3.0) is None  # forgotten at 2 s
