"""The resolver's own message codec against dnslib: same records, and garbage only ever
raises FormatError (also from the sections parsed late)."""

from __future__ import annotations

from dnslib import EDNS0, QTYPE, RR, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.proto.dns import message as dnsmsg

ZONE_LINES = [
    "www.example.com. 300 IN A 192.0.2.1",
    "www.example.com. 300 IN AAAA 2001:db8::1",
    "alias.example.com. 60 IN CNAME www.example.com.",
    "example.com. 3600 IN NS ns1.example.com.",
    "example.com. 3600 IN MX 10 mail.example.com.",
    "example.com. 60 IN SOA ns1.example.com. admin.example.com. 1 2 3 4 30",
    "example.com. 60 IN TXT \"hello\" \"world\"",
    "1.2.0.192.in-addr.arpa. 60 IN PTR www.example.com.",
    "_sip._tcp.example.com. 60 IN SRV 1 2 5060 sip.example.com.",
]


def reply(*lines: str, name: str = "www.example.com") -> bytes:
    r = DNSRecord.question(name, "A").reply()
    for line in lines:
        r.add_answer(*RR.fromZone(line))
    r.add_auth(*RR.fromZone("example.com. 3600 IN NS ns1.example.com."))
    r.add_ar(*RR.fromZone("ns1.example.com. 3600 IN A 127.0.0.4"))
    r.add_ar(EDNS0(udp_len=1400))
    return r.pack()  # dnslib compresses names, in RDATA too


def test_records_match_dnslib_and_names_come_out_decompressed():
    data = reply(*ZONE_LINES)
    msg = dnsmsg.parse(data)
    ref = DNSRecord.parse(data)
    assert msg.qname == "www.example.com." and msg.qtype == QTYPE.A
    assert [rr.to_zone().split() for rr in msg.answer] == \
        [str(rr).split() for rr in ref.rr]
    assert msg.edns_size == 1400 and msg.authority[0].target == "ns1.example.com."
    assert msg.additional[0].address == "127.0.0.4"
    # copied into a reply of our own, the records read back the same (no stale pointers)
    out = dnsmsg.encode_reply(7, 0x0100, msg.question, 0, msg.answer, msg.authority,
                              edns=True, ede=(22, "why"))
    back = DNSRecord.parse(out)
    assert [str(rr) for rr in back.rr] == [str(rr) for rr in ref.rr]
    assert back.header.id == 7 and back.header.rd == 1 and back.header.ra == 1


def test_a_reply_over_the_limit_is_truncated():
    msg = dnsmsg.parse(reply(*ZONE_LINES))
    out = dnsmsg.encode_reply(1, 0, msg.question, 0, msg.answer, [], max_size=100)
    back = DNSRecord.parse(out)
    assert back.header.tc == 1 and not back.rr and len(out) <= 100


def test_compression_loops_and_overruns_are_format_errors():
    loop = bytearray(reply("www.example.com. 300 IN A 192.0.2.1"))
    loop[12:14] = b"\xc0\x0c"  # the question's name points at itself
    for bad in (bytes(loop), b"\x00" * 11, reply()[:-3], reply() + b"\x00"):
        try:
            msg = dnsmsg.parse(bad)
            msg.authority  # noqa: B018 - parsed late, must fail the same way
        except dnsmsg.FormatError:
            continue
        raise AssertionError(f"parsed {bad!r}")


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_garbage_only_raises_format_error(data):
    try:
        msg = dnsmsg.parse(data)
        _ = msg.authority, msg.additional, msg.edns_size
    except dnsmsg.FormatError:
        pass


@settings(max_examples=300)
@given(st.data())
def test_mutated_answers_only_raise_format_error(data):
    wire = bytearray(reply(*ZONE_LINES))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    try:
        msg = dnsmsg.parse(bytes(wire))
        _ = msg.authority, msg.additional
        for rr in msg.answer + msg.authority + msg.additional:
            if rr.rtype in (dnsmsg.A, dnsmsg.AAAA):
                _ = rr.address  # glue and answers are read as addresses
    except dnsmsg.FormatError:
        pass


def test_reply_ttl_offsets_are_where_the_cache_would_find_them():
    from netkit.proto.dns.wire import ttl_offsets

    msg = dnsmsg.parse(reply(*ZONE_LINES))
    ttls: list[tuple[int, int]] = []
    out = dnsmsg.encode_reply(1, 0, msg.question, 0, msg.answer, msg.authority, edns=True,
                              ttls=ttls)
    qend = 12 + len(msg.question)
    assert [off + qend for off, _ in ttls] == ttl_offsets(out, qend) and len(ttls) == 10
    assert [ttl for _, ttl in ttls] == [rr.ttl for rr in msg.answer + msg.authority]
