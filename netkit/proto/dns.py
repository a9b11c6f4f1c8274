"""Pieces of a recursive resolver, with no sockets and no clock.

- `parse_root_hints`: the named.root zone-file format.
- `Cache`: RRsets and negative answers (RFC 2308) with TTLs counted against a
  `now` the caller passes in, caps on TTLs and a bounded LRU size.
- `classify`: what an authority's response means for the name being resolved
  (answer, CNAME, referral, NXDOMAIN, NODATA or lame), keeping only records
  inside the server's bailiwick, so an answer cannot poison names its server
  has no authority over.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field

from dnslib import RCODE, DNSLabel

from .dnsmsg import (
    AAAA,
    ANY,
    CNAME,
    DNAME,
    NOERROR,
    NS,
    NXDOMAIN,
    SOA,
    A,
    Message,
    Record,
    name_to_wire,
)

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


# --- cache ---------------------------------------------------------------------------------

@dataclass(slots=True)
class CacheEntry:
    expires: float
    rrs: list[Record]
    rcode: int = RCODE.NOERROR  # NXDOMAIN/NOERROR for negative entries (rrs then hold the SOA)
    negative: bool = False
    hits: int = 0
    stored: float = 0.0


@dataclass
class Cache:
    """RRsets by (name, type) with TTLs, negative answers, LRU eviction.

    `max_ttl` caps how long anything is kept (Unbound: 1 day); `min_ttl` floors it;
    negative answers live for min(SOA TTL, SOA minimum) (RFC 2308 section 5).
    """

    max_entries: int = 100_000
    max_ttl: int = 86400
    min_ttl: int = 0
    max_negative_ttl: int = 3600
    stale_for: float = 0.0  # serve-stale (RFC 8767): how long expired entries are kept
    entries: OrderedDict[tuple[str, int], CacheEntry] = field(default_factory=OrderedDict)

    def _ttl(self, ttl: int) -> int:
        return max(self.min_ttl, min(self.max_ttl, ttl))

    def put(self, name: str, rtype: int, rrs: list[Record], now: float) -> None:
        if not rrs:
            return
        ttl = self._ttl(min(rr.ttl for rr in rrs))
        self._store((name_key(name), rtype), CacheEntry(now + ttl, rrs, stored=now))

    def put_negative(self, name: str, rtype: int, rcode: int, soa: Record | None,
                     now: float) -> None:
        ttl = 0
        if soa is not None:
            ttl = min(soa.ttl, soa.soa_minimum, self.max_negative_ttl)
        ttl = self._ttl(ttl)
        self._store((name_key(name), rtype),
                    CacheEntry(now + ttl, [soa] if soa else [], rcode, True, stored=now))

    def _store(self, key: tuple[str, int], entry: CacheEntry) -> None:
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def get(self, name: str, rtype: int, now: float) -> CacheEntry | None:
        key = (name_key(name), rtype)
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            if entry.expires + self.stale_for <= now:
                del self.entries[key]
            return None
        entry.hits += 1
        self.entries.move_to_end(key)
        return entry

    def dump(self, now: float, wall: float) -> list[dict]:
        """Live entries as JSON-able dicts, expiry in wall-clock time (for a restart)."""
        out = []
        for (name, rtype), e in self.entries.items():
            if e.expires + self.stale_for > now:
                out.append({"name": name, "type": rtype, "expires": wall + (e.expires - now),
                            "rcode": e.rcode, "negative": e.negative,
                            "rrs": [[rr.name, rr.rtype, rr.rclass, rr.ttl, rr.rdata.hex(),
                                     rr.target] for rr in e.rrs]})
        return out

    def load(self, items: list[dict], now: float, wall: float) -> int:
        """Entries from `dump`, the expired ones skipped; returns how many were loaded."""
        loaded = 0
        for item in items:
            left = item["expires"] - wall
            if left + self.stale_for <= 0:
                continue
            try:
                rrs = [Record(name, rtype, rclass, ttl, bytes.fromhex(rdata), target)
                       for name, rtype, rclass, ttl, rdata, target in item["rrs"]]
            except (TypeError, ValueError):  # a file of an older format: skipped
                continue
            self._store((item["name"], item["type"]),
                        CacheEntry(now + left, rrs, item["rcode"], item["negative"],
                                   stored=now))
            loaded += 1
        return loaded

    def get_stale(self, name: str, rtype: int, now: float) -> CacheEntry | None:
        """An expired entry still inside the serve-stale window (RFC 8767), else None."""
        entry = self.entries.get((name_key(name), rtype))
        if entry is None or entry.expires > now or entry.expires + self.stale_for <= now:
            return None
        return entry

    def with_ttls(self, entry: CacheEntry, now: float) -> list[Record]:
        """The entry's records with TTLs counted down to what is left."""
        left = max(0, int(entry.expires - now))
        return [rr.with_ttl(min(rr.ttl, left)) for rr in entry.rrs]


# --- what a response means ----------------------------------------------------------------

class Kind(enum.Enum):
    ANSWER = "answer"
    CNAME = "cname"
    REFERRAL = "referral"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    LAME = "lame"


@dataclass
class Classified:
    kind: Kind
    answer: list[Record] = field(default_factory=list)  # the RRset for (qname, qtype)
    cname: Record | None = None
    soa: Record | None = None
    zone: str = ""  # referral: the delegated zone
    ttl: int = 0  # referral: the NS RRset's TTL
    ns_names: list[str] = field(default_factory=list)
    glue: dict[str, list[str]] = field(default_factory=dict)
    why: str = ""


def classify(response: Message, qname: str, qtype: int, zone: str) -> Classified:
    """Interpret an authority's answer for (qname, qtype), asked of a server for `zone`.
    Names are in key form already (dnsmsg), so they compare as they are."""
    qn = name_key(qname)
    zone = name_key(zone)
    rcode = response.rcode
    if rcode not in (NOERROR, NXDOMAIN):
        return Classified(Kind.LAME, why=f"rcode {RCODE.get(rcode)}")
    # records outside the server's zone are never believed (anti-poisoning)
    answers = [rr for rr in response.answer if _under(rr.name, zone)]
    matching = [rr for rr in answers if rr.name == qn and
                (rr.rtype == qtype or qtype == ANY)]
    if matching:
        return Classified(Kind.ANSWER, answer=matching)
    dnames = [rr for rr in answers if rr.rtype == DNAME and rr.name != qn
              and _under(qn, rr.name)]
    cnames = [rr for rr in answers if rr.name == qn and rr.rtype == CNAME]
    if dnames:
        # RFC 6672: the DNAME maps the whole subtree; the CNAME is synthesised here rather
        # than trusted from the server, and the DNAME goes into the answer before it
        dname = dnames[0]
        target = qn[: -len(dname.name)] + dname.target
        cname = Record(qn, CNAME, 1, dname.ttl, name_to_wire(target), target)
        return Classified(Kind.CNAME, answer=[dname], cname=cname)
    if cnames:
        return Classified(Kind.CNAME, cname=cnames[0])
    soas = [rr for rr in response.authority if rr.rtype == SOA and _under(rr.name, zone)
            and _under(qn, rr.name)]
    if rcode == NXDOMAIN:
        return Classified(Kind.NXDOMAIN, soa=soas[0] if soas else None)
    ns = [rr for rr in response.authority if rr.rtype == NS]
    if ns and not soas:
        cut = ns[0].name
        if not _under(qn, cut) or not _under(cut, zone) or cut == zone:
            # a referral sideways or upwards: the server is lame for this zone
            return Classified(Kind.LAME, why=f"bad referral to {cut} from a server for {zone}")
        names = [rr.target for rr in ns if rr.name == cut]
        glue: dict[str, list[str]] = {}
        for rr in response.additional:
            n = rr.name
            # glue is believed only for names inside the zone that sent it
            if rr.rtype in (A, AAAA) and n in names and _under(n, zone):
                glue.setdefault(n, []).append(rr.address)
        return Classified(Kind.REFERRAL, zone=cut, ns_names=names, glue=glue,
                          ttl=min(rr.ttl for rr in ns))
    if not response.aa and not soas:
        return Classified(Kind.LAME, why="not authoritative and no referral")
    return Classified(Kind.NODATA, soa=soas[0] if soas else None)


def _under(name: str, zone: str) -> bool:
    """in_bailiwick for names already in key form."""
    return zone == "." or name == zone or name.endswith("." + zone)
