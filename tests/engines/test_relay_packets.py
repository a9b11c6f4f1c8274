"""The packet mode's sans-IO parts: IPv4/TCP/UDP/ICMP parsing from hex dumps, RFC 1624
checksum updates checked against checksums computed from scratch, and the masquerade
engine's rewrites; hypothesis for malformed packets (dropped and counted, never raised)."""

from __future__ import annotations

import socket
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.proto.relay import packet as pk
from netkit.proto.relay.conntrack import ConnectionTable
from netkit.proto.relay.nat import Masquerade
from netkit.proto.relay.rules import Firewall

INSIDE, ROUTER, OUTSIDE, FAR = "10.1.0.2", "10.1.0.1", "203.0.113.1", "203.0.113.2"

# Wikipedia's IPv4 header checksum example (checksum b861), carrying 95 bytes of UDP
WIKI = bytes.fromhex("45000073000040004011b861c0a80001c0a800c7") + \
    bytes.fromhex("d4310035005f0000") + bytes(87)


def ones(data: bytes) -> int:
    """A checksum from scratch, the slow way: for checking the fast ones."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def transport_ok(data: bytes) -> bool:
    ihl = (data[0] & 15) * 4
    total = struct.unpack("!H", data[2:4])[0]
    proto = data[9]
    segment = data[ihl:total]
    if proto == pk.ICMP:
        return ones(segment) == 0
    pseudo = data[12:20] + bytes([0, proto]) + struct.pack("!H", len(segment))
    return ones(pseudo + segment) == 0


def header_ok(data: bytes) -> bool:
    return ones(data[:(data[0] & 15) * 4]) == 0


def tcp(src: str, dst: str, sport: int, dport: int, flags: int, payload: bytes = b"",
        ttl: int = 64, df: bool = True) -> bytes:
    seg = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 65535, 0, 0) + \
        payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6,
                                                                         len(seg))
    seg = seg[:16] + ones(pseudo + seg).to_bytes(2, "big") + seg[18:]
    packet = bytearray(pk.build_ipv4(src, dst, pk.TCP, seg, ttl=ttl))
    if df:
        packet[6] |= 0x40
        packet[10:12] = b"\0\0"
        packet[10:12] = ones(bytes(packet[:20])).to_bytes(2, "big")
    return bytes(packet)


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes, ttl: int = 64) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 17,
                                                                         len(seg))
    seg = seg[:6] + ones(pseudo + seg).to_bytes(2, "big") + seg[8:]
    return pk.build_ipv4(src, dst, pk.UDP, seg, ttl=ttl)


def ping(src: str, dst: str, ident: int, ttl: int = 64) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"abcd"
    body = body[:2] + ones(body).to_bytes(2, "big") + body[4:]
    return pk.build_ipv4(src, dst, pk.ICMP, body, ttl=ttl)


def engine(**kw) -> Masquerade:  # type: ignore[no-untyped-def]
    return Masquerade(outside=OUTSIDE, inside_router=ROUTER, firewall=Firewall([]),
                      table=ConnectionTable(), **kw)


def test_the_textbook_header_parses() -> None:
    p = pk.parse(WIKI)
    assert (p.src, p.dst, p.proto, p.ttl, p.total, p.df) == ("192.168.0.1", "192.168.0.199",
                                                            17, 64, 115, True)
    assert (p.sport, p.dport) == (54321, 53)
    assert pk.checksum(WIKI[:20]) == 0


def test_rfc1624_updates_match_a_full_recomputation() -> None:
    data = bytearray(WIKI)
    p = pk.parse(data)
    pk.rewrite(data, p, src="10.9.8.7", dst="1.2.3.4", sport=40000, ttl_decrement=True)
    assert header_ok(bytes(data)) and data[8] == 63
    assert pk.parse(bytes(data)).sport == 40000
    seg = tcp(INSIDE, FAR, 5555, 80, pk.SYN)
    data = bytearray(seg)
    pk.rewrite(data, pk.parse(seg), src=OUTSIDE, sport=20001, ttl_decrement=True)
    assert header_ok(bytes(data)) and transport_ok(bytes(data))


def test_outbound_and_back_tcp_with_state() -> None:
    nat = engine()
    out, back = nat.from_inside(tcp(INSIDE, FAR, 5555, 80, pk.SYN), 0.0)
    assert back == [] and len(out) == 1
    p = pk.parse(out[0])
    assert (p.src, p.dst, p.dport, p.ttl) == (OUTSIDE, FAR, 80, 63)
    assert header_ok(out[0]) and transport_ok(out[0])
    port = p.sport
    reply = tcp(FAR, OUTSIDE, 80, port, pk.SYN | pk.ACK)
    out, back = nat.from_outside(reply, 0.1)
    q = pk.parse(back[0])
    assert (q.dst, q.dport, q.src, q.sport) == (INSIDE, 5555, FAR, 80)
    assert header_ok(back[0]) and transport_ok(back[0])
    (row,) = nat.table.view(0.2)
    assert row["state"] == "established" and row["outside"] == f"{OUTSIDE}:{port}"
    # a stranger cannot use the mapping (endpoint-dependent filtering)
    assert nat.from_outside(tcp("198.51.100.9", OUTSIDE, 80, port, pk.ACK), 0.3) == ([], [])
    nat.from_inside(tcp(INSIDE, FAR, 5555, 80, pk.FIN | pk.ACK), 1.0)
    assert nat.table.view(1.0)[0]["state"] == "closing"
    assert nat.expire(1.0 + 241) == 1 and len(nat.table) == 0  # transitory time-out


def test_icmp_echo_ids_are_mapped_and_the_router_answers() -> None:
    nat = engine()
    out, _ = nat.from_inside(ping(INSIDE, FAR, 0x1234), 0.0)
    p = pk.parse(out[0])
    assert p.src == OUTSIDE and transport_ok(out[0]) and header_ok(out[0])
    body = bytearray(out[0][20:])
    body[0] = 0
    body[2:4] = b"\0\0"
    body[2:4] = ones(bytes(body)).to_bytes(2, "big")
    _, back = nat.from_outside(pk.build_ipv4(FAR, OUTSIDE, pk.ICMP, bytes(body)), 0.1)
    q = pk.parse(back[0])
    assert q.dst == INSIDE and q.sport == 0x1234 and transport_ok(back[0])
    _, mine = nat.from_inside(ping(INSIDE, ROUTER, 7), 0.2)
    assert pk.parse(mine[0]).src == ROUTER and pk.parse(mine[0]).icmp_type == 0


def test_icmp_errors_are_mapped_back_by_the_header_they_quote() -> None:
    nat = engine()
    out, _ = nat.from_inside(udp(INSIDE, FAR, 33434, 33435, b"probe"), 0.0)
    sent = out[0]
    unreachable = pk.icmp_error(FAR, sent, pk.UNREACHABLE, 3)  # port unreachable
    _, back = nat.from_outside(unreachable, 0.1)
    outer = pk.parse(back[0])
    assert outer.dst == INSIDE and outer.icmp_type == 3 and header_ok(back[0])
    assert transport_ok(back[0])  # the ICMP checksum over the rewritten quote
    inner = outer.inner
    assert inner is not None and (inner.src, inner.sport) == (INSIDE, 33434)
    assert ones(back[0][28:48]) == 0  # the quoted IP header's checksum too


def test_a_router_sends_time_exceeded_and_fragmentation_needed() -> None:
    nat = engine(outside_mtu=1000)
    out, back = nat.from_inside(udp(INSIDE, FAR, 4000, 53, b"x", ttl=1), 0.0)
    assert out == [] and pk.parse(back[0]).icmp_type == pk.TIME_EXCEEDED
    assert pk.parse(back[0]).src == ROUTER and pk.parse(back[0]).dst == INSIDE
    big = tcp(INSIDE, FAR, 5, 80, pk.ACK, b"y" * 1200)
    out, back = nat.from_inside(big, 0.0)
    err = pk.parse(back[0])
    assert out == [] and (err.icmp_type, err.icmp_code) == (3, 4)
    assert struct.unpack("!H", back[0][26:28])[0] == 1000  # the next-hop MTU
    assert nat.counters.ttl_exceeded == 1 and nat.counters.frag_needed == 1


def test_nothing_leaves_with_an_inside_source() -> None:
    nat = engine()
    for packet in (udp(INSIDE, FAR, 1, 2, b"a"), tcp(INSIDE, FAR, 3, 4, pk.SYN),
                   ping(INSIDE, FAR, 9)):
        out, _ = nat.from_inside(packet, 0.0)
        assert all(pk.parse(o).src == OUTSIDE for o in out)


valid = st.sampled_from([tcp(INSIDE, FAR, 5555, 80, pk.SYN), udp(INSIDE, FAR, 1, 53, b"q"),
                         ping(INSIDE, FAR, 77), WIKI])


@given(st.binary(max_size=200))
@settings(max_examples=400)
def test_random_bytes_never_raise(data) -> None:
    nat = engine()
    assert nat.from_inside(data, 0.0) is not None
    assert nat.from_outside(data, 0.0) is not None


@given(valid, st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
       st.integers(0, 300))
@settings(max_examples=500)
def test_mutated_packets_are_forwarded_or_dropped_never_raise(packet, flips, cut) -> None:
    data = bytearray(packet)
    for i, v in flips:
        if i < len(data):
            data[i] = v
    data = data[:cut] if cut < len(data) else data
    nat = engine()
    out, _ = nat.from_inside(bytes(data), 0.0)
    for o in out:
        assert pk.parse(o).src == OUTSIDE and header_ok(o)
    nat.from_outside(bytes(data), 0.0)
