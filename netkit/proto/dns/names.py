"""DNS names and the constants a resolver starts from: IANA's root hints (and the
named.root parser), Extended DNS Error codes, and the name forms we compare in.
No sockets, no clock."""

from __future__ import annotations

import enum

from dnslib import DNSLabel

#: IANA's root servers (named.root, 2024): the default when no hints file is given.
IANA_ROOT_HINTS = """
.                        3600000      NS    A.ROOT-SERVERS.NET.
A.ROOT-SERVERS.NET.      3600000      A     198.41.0.4
.                        3600000      NS    B.ROOT-SERVERS.NET.
B.ROOT-SERVERS.NET.      3600000      A     170.247.170.2
.                        3600000      NS    C.ROOT-SERVERS.NET.
C.ROOT-SERVERS.NET.      3600000      A     192.33.4.12
.                        3600000      NS    D.ROOT-SERVERS.NET.
D.ROOT-SERVERS.NET.      3600000      A     199.7.91.13
.                        3600000      NS    E.ROOT-SERVERS.NET.
E.ROOT-SERVERS.NET.      3600000      A     192.203.230.10
.                        3600000      NS    F.ROOT-SERVERS.NET.
F.ROOT-SERVERS.NET.      3600000      A     192.5.5.241
.                        3600000      NS    G.ROOT-SERVERS.NET.
G.ROOT-SERVERS.NET.      3600000      A     192.112.36.4
.                        3600000      NS    H.ROOT-SERVERS.NET.
H.ROOT-SERVERS.NET.      3600000      A     198.97.190.53
.                        3600000      NS    I.ROOT-SERVERS.NET.
I.ROOT-SERVERS.NET.      3600000      A     192.36.148.17
.                        3600000      NS    J.ROOT-SERVERS.NET.
J.ROOT-SERVERS.NET.      3600000      A     192.58.128.30
.                        3600000      NS    K.ROOT-SERVERS.NET.
K.ROOT-SERVERS.NET.      3600000      A     193.0.14.129
.                        3600000      NS    L.ROOT-SERVERS.NET.
L.ROOT-SERVERS.NET.      3600000      A     199.7.83.42
.                        3600000      NS    M.ROOT-SERVERS.NET.
M.ROOT-SERVERS.NET.      3600000      A     202.12.27.33
"""


class EDE(enum.IntEnum):
    """Extended DNS Error info codes (RFC 8914 section 4) that this resolver uses."""

    OTHER = 0
    STALE_ANSWER = 3
    DNSSEC_BOGUS = 6
    SIGNATURE_EXPIRED = 7
    SIGNATURE_NOT_YET_VALID = 8
    DNSKEY_MISSING = 9
    RRSIGS_MISSING = 10
    NSEC_MISSING = 12
    PROHIBITED = 18
    NO_REACHABLE_AUTHORITY = 22
    NETWORK_ERROR = 23
    INVALID_DATA = 24


def name_key(name: str | DNSLabel) -> str:
    """Lower-case, dot-terminated: the form names are compared and cached in."""
    if name.__class__ is str and name.endswith(".") and name.islower():
        return name  # already (the resolver's names nearly always are): no copy
    text = str(name).lower()
    return text if text.endswith(".") else text + "."


def in_bailiwick(name: str | DNSLabel, zone: str | DNSLabel) -> bool:
    """`name` is `zone` or below it."""
    n, z = name_key(name), name_key(zone)
    return z == "." or n == z or n.endswith("." + z)


def minimised(name: str, zone: str, extra: int) -> str:
    """RFC 9156: `name` cut to `extra` labels below `zone` (the whole name when shorter)."""
    name, zone = name_key(name), name_key(zone)
    keep = (0 if zone == "." else zone.count(".")) + extra
    if keep >= name.count("."):
        return name
    return ".".join(name[:-1].split(".")[-keep:]) + "."


def parse_root_hints(text: str) -> list[tuple[str, str]]:
    """(server name, address) pairs from a named.root file; AAAA records are kept too."""
    names: set[str] = set()
    addresses: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].split()
        if len(line) < 3:
            continue
        rtype = line[-2].upper()
        if rtype == "NS":
            names.add(name_key(line[-1]))
        elif rtype in ("A", "AAAA"):
            addresses.append((name_key(line[0]), line[-1]))
    hints = [(n, a) for n, a in addresses if n in names]
    if not hints:
        raise ValueError("no root server with an address in the hints")
    return hints
