"""Typed record data, named as dnspython names it: `A.address`, `MX.preference` and
`.exchange`, `TXT.strings`, `SOA.serial`..., `SVCB/HTTPS.params`. Names are absolute
text with the trailing dot ("mail.example.com."); anything without a class here is
`Generic` (its type and its rdata as zone text)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

from dnslib import QTYPE, RR, DNSLabel

from ...proto.dns import zones  # noqa: F401  (registers DNAME and SVCB with dnslib)


@dataclass(frozen=True, slots=True)
class A:
    address: str


@dataclass(frozen=True, slots=True)
class AAAA:
    address: str


@dataclass(frozen=True, slots=True)
class NS:
    target: str


@dataclass(frozen=True, slots=True)
class CNAME:
    target: str


@dataclass(frozen=True, slots=True)
class PTR:
    target: str


@dataclass(frozen=True, slots=True)
class DNAME:
    target: str


@dataclass(frozen=True, slots=True)
class MX:
    preference: int
    exchange: str


@dataclass(frozen=True, slots=True)
class TXT:
    strings: tuple[bytes, ...]

    @property
    def text(self) -> str:
        """The strings joined, as SPF and DKIM read them (UTF-8, bad bytes replaced)."""
        return b"".join(self.strings).decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class SOA:
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


@dataclass(frozen=True, slots=True)
class SRV:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class CAA:
    flags: int
    tag: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class SVCB:
    """SVCB and HTTPS (RFC 9460). `params` by key name: mandatory (names), alpn (str ids),
    no-default-alpn (True), port (int), ipv4hint and ipv6hint (address text), ech (bytes),
    keyNNNNN (bytes)."""

    priority: int
    target: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HTTPS(SVCB):
    pass


@dataclass(frozen=True, slots=True)
class Generic:
    rdtype: str
    text: str


RData = A | AAAA | NS | CNAME | PTR | DNAME | MX | TXT | SOA | SRV | CAA | SVCB | Generic

_SVC_KEYS = {0: "mandatory", 1: "alpn", 2: "no-default-alpn", 3: "port", 4: "ipv4hint",
             5: "ech", 6: "ipv6hint"}


def _name(label: Any) -> str:
    text = str(label if isinstance(label, DNSLabel) else DNSLabel(label))
    return text if text.endswith(".") else text + "."


def _svc_value(key: int, raw: bytes) -> Any:
    if key == 0:
        return tuple(_SVC_KEYS.get(k, f"key{k}") for (k,) in struct.iter_unpack("!H", raw))
    if key == 1:
        ids, i = [], 0
        while i < len(raw):
            ids.append(raw[i + 1:i + 1 + raw[i]].decode("ascii", "replace"))
            i += 1 + raw[i]
        return tuple(ids)
    if key == 2:
        return True
    if key == 3:
        return struct.unpack("!H", raw)[0]
    if key == 4:
        return tuple(str(ipaddress.IPv4Address(raw[i:i + 4])) for i in range(0, len(raw), 4))
    if key == 6:
        return tuple(str(ipaddress.IPv6Address(raw[i:i + 16]))
                     for i in range(0, len(raw), 16))
    return bytes(raw)


def typed(rr: RR) -> RData:
    """The typed data of one dnslib resource record."""
    kind = QTYPE.get(rr.rtype)
    d = rr.rdata
    if kind in ("A", "AAAA"):
        return (A if kind == "A" else AAAA)(str(d))
    if kind in ("NS", "CNAME", "PTR", "DNAME"):
        return {"NS": NS, "CNAME": CNAME, "PTR": PTR, "DNAME": DNAME}[kind](_name(d.label))
    if kind == "MX":
        return MX(d.preference, _name(d.label))
    if kind == "TXT":
        return TXT(tuple(bytes(s) for s in d.data))
    if kind == "SOA":
        return SOA(_name(d.mname), _name(d.rname), *d.times)
    if kind == "SRV":
        return SRV(d.priority, d.weight, d.port, _name(d.target))
    if kind == "CAA":
        return CAA(d.flags, d.tag.encode() if isinstance(d.tag, str) else bytes(d.tag),
                   d.value.encode() if isinstance(d.value, str) else bytes(d.value))
    if kind in ("HTTPS", "SVCB"):
        params = {_SVC_KEYS.get(k, f"key{k}"): _svc_value(k, bytes(v)) for k, v in d.params}
        return (HTTPS if kind == "HTTPS" else SVCB)(d.priority, _name(d.target), params)
    return Generic(str(kind), d.toZone())
