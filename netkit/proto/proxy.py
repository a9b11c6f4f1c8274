"""PROXY protocol v1 and v2 (haproxy's spec, "The PROXY protocol", versions 1 and 2).

A load balancer or TLS wrapper that relays a connection puts one header in
front of the relayed bytes saying who the real client is. `decode` reads it
off the start of a stream (returning None until the whole header is there);
`encode_v1`/`encode_v2` write one. Nothing here touches a socket.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from ..errors import RemoteProtocolError

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
#: Spec section 2.1: a v1 line is at most 107 bytes including CRLF.
V1_MAX = 107
#: v2 allows 65535 bytes of addresses and TLVs; real senders use a few hundred.
#: Refusing more keeps a stranger from making us buffer 64 KiB before any check.
V2_MAX_PAYLOAD = 2048

_FAMILIES = {0x11: ("tcp", 4), 0x12: ("udp", 4), 0x21: ("tcp", 6), 0x22: ("udp", 6)}


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the header says; source/destination are None for LOCAL and UNKNOWN."""

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    transport: str = "tcp"
    tlvs: tuple[tuple[int, bytes], ...] = ()


def decode(buf: bytes | bytearray) -> tuple[ProxyHeader, int] | None:
    """Parse a header at the start of `buf`: (header, bytes used), or None for "need more".

    Raises RemoteProtocolError when the bytes cannot be a PROXY header.
    """
    if not buf:
        return None
    head = bytes(buf[:12])
    if head == V2_SIGNATURE[:len(head)]:  # v2 starts with CR, v1 with "P": never both
        return _decode_v2(buf) if len(buf) >= 12 else None
    if head[:6] == V1_PREFIX[:len(head[:6])]:
        return _decode_v1(buf) if len(buf) >= 6 else None
    raise RemoteProtocolError(f"expected a PROXY protocol header, got {bytes(buf[:16])!r}")


def _decode_v1(buf: bytes | bytearray) -> tuple[ProxyHeader, int] | None:
    end = bytes(buf[:V1_MAX]).find(b"\r\n")
    if end < 0:
        if len(buf) >= V1_MAX:
            raise RemoteProtocolError("PROXY v1 header longer than 107 bytes")
        return None
    line = bytes(buf[:end])
    try:
        parts = line.decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise RemoteProtocolError("PROXY v1 header is not ASCII") from None
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(1, None, None), end + 2
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise RemoteProtocolError(f"malformed PROXY v1 header {line!r}")
    version = 4 if parts[1] == "TCP4" else 6
    src = _v1_endpoint(parts[2], parts[4], version, line)
    dst = _v1_endpoint(parts[3], parts[5], version, line)
    return ProxyHeader(1, src, dst), end + 2


def _v1_endpoint(host: str, port: str, version: int, line: bytes) -> tuple[str, int]:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise RemoteProtocolError(f"bad address {host!r} in PROXY v1 header {line!r}") from None
    # the spec forbids leading zeros and signs; int() would accept both
    if addr.version != version or not port.isdigit() or (port != "0" and port[0] == "0") or (
            int(port) > 65535):
        raise RemoteProtocolError(f"bad address or port in PROXY v1 header {line!r}")
    return str(addr), int(port)


def _decode_v2(buf: bytes | bytearray) -> tuple[ProxyHeader, int] | None:
    if len(buf) < 16:
        return None
    ver_cmd, fam, length = struct.unpack_from("!BBH", buf, 12)
    if ver_cmd >> 4 != 2:
        raise RemoteProtocolError(f"PROXY v2 header with version {ver_cmd >> 4}")
    command = ver_cmd & 0x0F
    if command not in (0, 1):
        raise RemoteProtocolError(f"PROXY v2 header with unknown command {command}")
    if length > V2_MAX_PAYLOAD:
        raise RemoteProtocolError(f"PROXY v2 header of {length} bytes (limit {V2_MAX_PAYLOAD})")
    if len(buf) < 16 + length:
        return None
    payload = bytes(buf[16:16 + length])
    used = 16 + length
    if command == 0 or fam == 0:
        # LOCAL (health checks from the proxy itself) or UNSPEC: keep the real socket address
        return ProxyHeader(2, None, None), used
    if fam not in _FAMILIES:
        raise RemoteProtocolError(f"PROXY v2 header with unsupported family 0x{fam:02x}")
    transport, version = _FAMILIES[fam]
    alen = 12 if version == 4 else 36
    if length < alen:
        raise RemoteProtocolError(f"PROXY v2 address block of {length} bytes, need {alen}")
    n = 4 if version == 4 else 16
    src_ip = ipaddress.ip_address(payload[:n])
    dst_ip = ipaddress.ip_address(payload[n:2 * n])
    sport, dport = struct.unpack_from("!HH", payload, 2 * n)
    tlvs = _decode_tlvs(payload[alen:])
    return ProxyHeader(2, (str(src_ip), sport), (str(dst_ip), dport), transport, tlvs), used


def _decode_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    tlvs = []
    i = 0
    while i < len(data):
        if len(data) - i < 3:
            raise RemoteProtocolError("truncated TLV in PROXY v2 header")
        kind, size = struct.unpack_from("!BH", data, i)
        if i + 3 + size > len(data):
            raise RemoteProtocolError("truncated TLV in PROXY v2 header")
        tlvs.append((kind, data[i + 3:i + 3 + size]))
        i += 3 + size
    return tuple(tlvs)


def encode_v1(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """A v1 line; UNKNOWN when either end is missing or the families differ."""
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    s, d = ipaddress.ip_address(_unmap(source[0])), ipaddress.ip_address(_unmap(destination[0]))
    if s.version != d.version:
        return b"PROXY UNKNOWN\r\n"
    fam = "TCP4" if s.version == 4 else "TCP6"
    return f"PROXY {fam} {s} {d} {source[1]} {destination[1]}\r\n".encode("ascii")


def encode_v2(source: tuple[str, int] | None, destination: tuple[str, int] | None, *,
              transport: str = "tcp", tlvs: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    """A v2 header; LOCAL when either end is missing or the families differ."""
    tlv_bytes = b"".join(struct.pack("!BH", k, len(v)) + v for k, v in tlvs)
    if source is not None and destination is not None:
        s, d = ipaddress.ip_address(_unmap(source[0])), ipaddress.ip_address(_unmap(destination[0]))
        if s.version == d.version:
            fam = (0x11 if s.version == 4 else 0x21) + (1 if transport == "udp" else 0)
            body = s.packed + d.packed + struct.pack("!HH", source[1], destination[1]) + tlv_bytes
            return V2_SIGNATURE + struct.pack("!BBH", 0x21, fam, len(body)) + body
    return V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, len(tlv_bytes)) + tlv_bytes


def _unmap(host: str) -> str:
    """``::ffff:1.2.3.4`` (an IPv4 client on a dual-stack socket) -> ``1.2.3.4``."""
    addr = ipaddress.ip_address(host.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)
