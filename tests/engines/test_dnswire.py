"""The wire-form fast path: question parsing, TTL offsets, patched answers; fuzzed input."""

from __future__ import annotations

from dnslib import EDNS0, QTYPE, RR, DNSRecord
from hypothesis import given
from hypothesis import strategies as st

from netkit.proto.dns.wire import AnswerCache, parse_question, ttl_offsets


def query(name: str = "WwW.Example.COM", qtype: str = "A", edns: bool = True) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    if edns:
        q.add_ar(EDNS0(udp_len=1232))
    return q


def test_parse_question_lowercases_and_finds_the_end():
    q = query()
    data = q.pack()
    qname, qtype, end, has_opt = parse_question(data)
    assert qname == b"\x03www\x07example\x03com\x00" and qtype == QTYPE.A and has_opt
    assert data[end:end + 1] == b"\x00" and end == 12 + len(qname) + 4


def test_hit_patches_id_case_rd_and_ttls():
    q = query("www.example.com")
    r = q.reply()
    r.add_answer(*RR.fromZone("www.example.com. 300 IN CNAME web.example.com."))
    r.add_answer(*RR.fromZone("web.example.com. 60 IN A 192.0.2.1"))
    r.add_ar(EDNS0(udp_len=1232))
    wire = r.pack()
    qname, qtype, end, has_opt = parse_question(q.pack())
    cache = AnswerCache(10)
    cache.store((qname, qtype, has_opt), wire, end, now=100.0)
    later = query("WWW.EXAMPLE.COM")  # 0x20-style case: echoed as the client sent it
    later.header.id = 4321
    data = later.pack()
    out = cache.answer(data, (qname, qtype, True), parse_question(data)[2], now=110.4)
    parsed = DNSRecord.parse(out)
    assert parsed.header.id == 4321 and str(parsed.q.qname) == "WWW.EXAMPLE.COM."
    assert [rr.ttl for rr in parsed.rr] == [290, 50]
    assert str(parsed.rr[1].rdata) == "192.0.2.1"
    assert cache.answer(data, (qname, qtype, True), parse_question(data)[2], now=160.0) is None


def test_ttl_offsets_skip_opt_and_reject_garbage():
    r = query().reply()
    r.add_answer(*RR.fromZone("www.example.com. 300 IN A 192.0.2.1"))
    r.add_ar(EDNS0(udp_len=1232))
    wire = r.pack()
    end = 12 + len(b"\x03www\x07example\x03com\x00") + 4
    assert len(ttl_offsets(wire, end)) == 1
    assert ttl_offsets(wire[:-3], end) is None


@given(st.binary(max_size=600))
def test_any_bytes_parse_or_take_the_slow_path(data):
    result = parse_question(data)
    if result is not None:
        qname, _, end, _ = result
        assert qname.endswith(b"\x00") and end <= len(data)


@given(st.binary(min_size=1, max_size=64), st.integers(0, 40))
def test_mutated_queries_never_raise(noise, at):
    data = bytearray(query().pack())
    for i, b in enumerate(noise):
        data[(at + i) % len(data)] ^= b
    parse_question(bytes(data))
    ttl_offsets(bytes(data), 12)


def test_popular_entries_near_expiry_are_marked_for_prefetch_once():
    q = query("www.example.com")
    r = q.reply()
    r.add_answer(*RR.fromZone("www.example.com. 100 IN A 192.0.2.1"))
    r.add_ar(EDNS0(udp_len=1232))
    data = q.pack()
    qname, qtype, end, has_opt = parse_question(data)
    key = (qname, qtype, has_opt)
    cache = AnswerCache(10)
    cache.store(key, r.pack(), end, now=0.0)
    cache.answer(data, key, end, now=50.0)  # first hit, mid-life
    cache.answer(data, key, end, now=89.0)  # second hit, not yet in the last tenth
    assert cache.due == []
    cache.answer(data, key, end, now=91.0)  # popular and in the last tenth: due
    cache.answer(data, key, end, now=95.0)  # already being refreshed: not again
    assert cache.due == [key]


def test_answers_travel_between_caches_with_their_age() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from netkit.proto.dns.wire import AnswerCache

    question = b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
    # one A record, TTL 300, compressed name pointer to the question
    answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04\xc0\x00\x02\x0a"
    message = b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + question + answer
    key = (question[:-4], 1, False)
    a, b = AnswerCache(10), AnswerCache(10)
    a.store(key, message, 12 + len(question), now=1000.0)
    blob, left = a.export(key, wall=5000.0, now=1010.0)  # 10 s after it was stored
    assert left == 290
    assert b.adopt(key, blob, wall=5005.0, now=50.0)  # 5 s later, elsewhere
    query = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + question
    out = b.answer(query, key, 12 + len(question), now=50.0)
    assert out is not None and out[:2] == b"\xab\xcd"
    assert int.from_bytes(out[-10:-6], "big") == 285  # 300 - 10 - 5
    assert not AnswerCache(10).adopt(key, blob, wall=5000.0 + 400, now=0.0)  # expired

    @given(st.binary(max_size=80))
    def garbage_is_refused_or_harmless(data: bytes) -> None:
        cache = AnswerCache(10)
        if cache.adopt(key, data, wall=0.0, now=0.0):
            cache.answer(query, key, 12 + len(question), now=0.0)

    garbage_is_refused_or_harmless()
