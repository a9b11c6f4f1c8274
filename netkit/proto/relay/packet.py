"""IPv4 packets as the textbook draws them: the header's fields, the TCP/UDP ports and
TCP flags, ICMP's type/code/identifier and the header an ICMP error carries; checksums
computed whole (RFC 1071) or updated for a changed word (RFC 1624).

    p = parse(data)                      # MalformedPacket if it is not a sound IPv4 packet
    p.src, p.dst, p.proto, p.ttl, p.sport, p.dport, p.flags, p.icmp_type
    data = rewrite(data, p, src=..., sport=..., ttl=...)   # checksums updated in place
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

ICMP, TCP, UDP = 1, 6, 17
ECHO_REPLY, UNREACHABLE, ECHO_REQUEST, TIME_EXCEEDED = 0, 3, 8, 11
FRAG_NEEDED = 4  # code of UNREACHABLE
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
DF = 0x4000


class MalformedPacket(ValueError):
    """Not an IPv4 packet the relay can forward (counted and dropped)."""


@dataclass(slots=True)
class Packet:
    ihl: int  # header length in bytes
    total: int
    ident: int
    df: bool
    fragment: bool  # a fragment other than the first, or one with more to come
    ttl: int
    proto: int
    src: str
    dst: str
    sport: int = 0  # TCP/UDP ports; for ICMP echo, the identifier in both
    dport: int = 0
    flags: int = 0  # TCP flags
    icmp_type: int = -1
    icmp_code: int = -1
    inner: Packet | None = None  # the packet an ICMP error is about

    @property
    def payload_offset(self) -> int:
        return self.ihl


def checksum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071: the ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def update(old_sum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3: a checksum after one 16-bit word went from `old` to `new`."""
    total = (~old_sum & 0xFFFF) + (~old & 0xFFFF) + new
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def parse(data: bytes | bytearray, *, inner: bool = False) -> Packet:
    """`inner`: the truncated copy an ICMP error carries (header + 8 bytes)."""
    if len(data) < 20:
        raise MalformedPacket(f"{len(data)} bytes: shorter than an IPv4 header")
    vihl, _, total, ident, frag, ttl, proto, _ = struct.unpack_from("!BBHHHBBH", data)
    if vihl >> 4 != 4:
        raise MalformedPacket(f"IP version {vihl >> 4}")
    ihl = (vihl & 0x0F) * 4
    if ihl < 20 or ihl > len(data):
        raise MalformedPacket(f"header length {ihl}")
    if not inner:
        if total < ihl or total > len(data):
            raise MalformedPacket(f"total length {total} for {len(data)} bytes")
        if checksum(memoryview(data)[:ihl]) != 0:
            raise MalformedPacket("bad header checksum")
    p = Packet(ihl, total, ident, bool(frag & DF), bool(frag & 0x3FFF & ~DF) or
               bool(frag & 0x1FFF), ttl, proto, socket.inet_ntoa(data[12:16]),
               socket.inet_ntoa(data[16:20]))
    end = len(data) if inner else total
    if p.fragment and frag & 0x1FFF:
        return p  # a later fragment: no transport header here
    body = memoryview(data)[ihl:end]
    if proto in (TCP, UDP):
        if len(body) < (8 if inner or proto == UDP else 20):
            raise MalformedPacket("truncated transport header")
        p.sport, p.dport = struct.unpack_from("!HH", body)
        if proto == TCP and len(body) >= 14:
            p.flags = body[13]
    elif proto == ICMP:
        if len(body) < 8:
            raise MalformedPacket("truncated ICMP header")
        p.icmp_type, p.icmp_code = body[0], body[1]
        if p.icmp_type in (ECHO_REQUEST, ECHO_REPLY):
            p.sport = p.dport = struct.unpack_from("!H", body, 4)[0]
        elif p.icmp_type in (UNREACHABLE, TIME_EXCEEDED) and not inner:
            p.inner = parse(bytes(body[8:]), inner=True)
    return p


def _word(data: bytearray, offset: int) -> int:
    return int.from_bytes(data[offset:offset + 2], "big")


def _set_word(data: bytearray, offset: int, value: int) -> None:
    data[offset:offset + 2] = value.to_bytes(2, "big")


def _transport_sum_offset(p: Packet) -> int | None:
    """Where the TCP/UDP checksum is (None: none to keep, as UDP's 0)."""
    if p.fragment:
        return None
    if p.proto == TCP:
        return p.ihl + 16
    if p.proto == UDP:
        return p.ihl + 6
    return None


def rewrite(data: bytearray, p: Packet, *, src: str | None = None, dst: str | None = None,
            sport: int | None = None, dport: int | None = None,
            ttl_decrement: bool = False, base: int = 0) -> None:
    """Change addresses, ports (ICMP echo: the identifier) and TTL of the packet at
    `base` in `data`, updating the IP header checksum and the TCP/UDP/ICMP checksum
    word by word (RFC 1624)."""
    ip_sum = base + 10
    t_sum = _transport_sum_offset(p)
    t_sum = base + t_sum if t_sum is not None else None
    if t_sum is not None and p.proto == UDP and _word(data, t_sum) == 0:
        t_sum = None  # no checksum was sent (UDP over IPv4 may do that)
    icmp_sum = base + p.ihl + 2 if p.proto == ICMP else None

    def change(offset: int, new: int, pseudo: bool) -> None:
        old = _word(data, offset)
        if old == new:
            return
        _set_word(data, offset, new)
        if offset < base + p.ihl:
            _set_word(data, ip_sum, update(_word(data, ip_sum), old, new))
        if pseudo and t_sum is not None and t_sum + 2 <= len(data):
            _set_word(data, t_sum, update(_word(data, t_sum), old, new))
        if not pseudo and offset >= base + p.ihl:
            target = t_sum if t_sum is not None else icmp_sum
            if target is not None and target + 2 <= len(data):
                _set_word(data, target, update(_word(data, target), old, new))

    if ttl_decrement:
        word = _word(data, base + 8)  # TTL and protocol share a word
        change(base + 8, word - 0x100, False)
    for field, offset in ((src, 12), (dst, 16)):
        if field is not None:
            packed = socket.inet_aton(field)
            change(base + offset, int.from_bytes(packed[:2], "big"), True)
            change(base + offset + 2, int.from_bytes(packed[2:], "big"), True)
    if p.proto in (TCP, UDP) and not p.fragment:
        if sport is not None:
            change(base + p.ihl, sport, False)
        if dport is not None:
            change(base + p.ihl + 2, dport, False)
    elif p.proto == ICMP and p.icmp_type in (ECHO_REQUEST, ECHO_REPLY):
        ident = sport if sport is not None else dport
        if ident is not None:
            change(base + p.ihl + 4, ident, False)


def build_ipv4(src: str, dst: str, proto: int, payload: bytes, *, ttl: int = 64,
               ident: int = 0) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, ttl, proto,
                         0, socket.inet_aton(src), socket.inet_aton(dst))
    header = header[:10] + checksum(header).to_bytes(2, "big") + header[12:]
    return header + payload


def icmp_error(router: str, original: bytes | bytearray, icmp_type: int, code: int,
               mtu: int = 0) -> bytes:
    """An ICMP error from `router` about `original` (its header and 8 bytes, RFC 792);
    `mtu` for Fragmentation Needed (RFC 1191)."""
    p = parse(original)
    quoted = bytes(original[:p.ihl + 8])
    rest = mtu.to_bytes(4, "big") if icmp_type == UNREACHABLE and code == FRAG_NEEDED \
        else bytes(4)
    body = bytes([icmp_type, code, 0, 0]) + rest + quoted
    body = body[:2] + checksum(body).to_bytes(2, "big") + body[4:]
    return build_ipv4(router, p.src, ICMP, body)
