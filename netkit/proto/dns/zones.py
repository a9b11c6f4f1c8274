"""Authoritative zones, without sockets: what NSD answers, as data and one lookup.

A `Zone` holds the records of one zone (from a zone file or records given inline, in
the standard zone-file format: $ORIGIN, $TTL, @, relative names, parentheses);
`ZoneSet.answer` answers a question from the closest enclosing zone as RFC 1034 4.3.2
says: an answer (CNAMEs followed within the zones held), a referral at a delegation
(NS in the authority section, glue in the additional), NODATA or NXDOMAIN with the
zone's SOA (its TTL capped by the SOA minimum, RFC 2308), wildcards (RFC 4592). Names
outside every zone get None: the server refuses or recurses, as configured.

Records can be added and removed while the server runs (the test fixture does); a
record for a name outside every zone makes a zone at the name's parent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dnslib import CLASS, CNAME, HTTPS, QTYPE, RR, DNSLabel, DNSRecord
from dnslib.dns import RDMAP

from .names import in_bailiwick, name_key

ANY, AXFR, IXFR = 255, 252, 251
_ADDRESS_TYPES = (QTYPE.A, QTYPE.AAAA)
_MAX_CNAME_CHAIN = 8  # as Unbound's max chase within local data
#: the SOA a zone gets when its records name none (inline zones; files must have one)
DEFAULT_SOA = "{origin} 3600 IN SOA localhost. hostmaster.{origin} 1 3600 600 86400 60"


class DNAME(CNAME):
    """RFC 6672 DNAME: a CNAME's shape, its target never compressed. dnslib has no DNAME
    (it would read one as unknown data): registered here, for zone files and the wire."""

    def pack(self, buffer: object) -> None:
        buffer.encode_name_nocompress(self.label)  # type: ignore[attr-defined]


RDMAP.setdefault("DNAME", DNAME)


class SVCB(HTTPS):
    """RFC 9460 SVCB (type 64): HTTPS's format under its own type, which dnslib lacks."""


RDMAP.setdefault("SVCB", SVCB)


class ZoneDataError(ValueError):
    """Records that cannot be served: a parse error, a name out of the zone, CNAME beside
    other data, a zone without its SOA."""


def parse_records(text: str, origin: str, *, ttl: int = 300) -> list[RR]:
    """Zone-file text -> records (relative names are below `origin`)."""
    try:
        records = list(RR.fromZone(text, origin=origin, ttl=ttl))
    except Exception as exc:  # dnslib's parse errors have no common base
        raise ZoneDataError(f"cannot parse: {exc}") from None
    for rr in records:
        if isinstance(rr.rdata, HTTPS):
            # RFC 9460 2.2: parameters in increasing key order on the wire (validating
            # clients reject others); dnslib keeps the zone file's order
            rr.rdata.params.sort(key=lambda param: param[0])
    return records


def record(name: str, rtype: str, value: str, ttl: int = 300) -> RR:
    """One record from its parts, e.g. ("api.test", "A", "192.0.2.1")."""
    if rtype.upper() == "TXT" and not value.startswith('"'):
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    rrs = parse_records(f"{name_key(name)} {ttl} IN {rtype.upper()} {value}", ".")
    if len(rrs) != 1:
        raise ZoneDataError(f"{name} {rtype} {value!r}: expected one record")
    return rrs[0]


@dataclass
class Zone:
    """One zone's records, by owner name and type."""

    origin: str
    rrsets: dict[str, dict[int, list[RR]]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)  # owners and empty non-terminals

    @classmethod
    def from_records(cls, origin: str, records: Iterable[RR], *,
                     need_soa: bool = True) -> Zone:
        zone = cls(name_key(origin))
        for rr in records:
            zone.add(rr)
        if QTYPE.SOA not in zone.rrsets.get(zone.origin, {}):
            if need_soa:
                raise ZoneDataError(f"zone {zone.origin} has no SOA record at its apex")
            # (the root's hostmaster is "hostmaster." : "hostmaster.." is no name)
            zone.add(parse_records(DEFAULT_SOA.format(origin=zone.origin).replace(
                "hostmaster..", "hostmaster."), ".")[0])
        return zone

    @property
    def soa(self) -> RR:
        return self.rrsets[self.origin][QTYPE.SOA][0]

    def __len__(self) -> int:
        return sum(len(rrs) for types in self.rrsets.values() for rrs in types.values())

    def add(self, rr: RR) -> None:
        owner = name_key(rr.rname)
        if not in_bailiwick(owner, self.origin):
            raise ZoneDataError(f"{owner} is outside zone {self.origin}")
        if rr.rclass != CLASS.IN:
            raise ZoneDataError(f"{owner}: only class IN is served")
        types = self.rrsets.get(owner, {})
        if rr.rtype == QTYPE.SOA and owner != self.origin:
            raise ZoneDataError(f"{owner}: an SOA record belongs at the zone apex "
                                f"{self.origin}")
        if (rr.rtype == QTYPE.CNAME and set(types) - {QTYPE.CNAME}) or \
                (rr.rtype != QTYPE.CNAME and QTYPE.CNAME in types):
            raise ZoneDataError(f"{owner}: a CNAME cannot stand beside other data "
                                "(RFC 1034 3.6.2)")
        rrs = self.rrsets.setdefault(owner, types).setdefault(rr.rtype, [])
        if rr.rtype in (QTYPE.SOA, QTYPE.CNAME):
            rrs.clear()  # one per name: the last given wins
        if not any(old.rdata == rr.rdata for old in rrs):
            rrs.append(rr)
            for other in rrs:  # one TTL per RRset (RFC 2181 5.2): the newest
                other.ttl = rr.ttl
        while owner != self.origin and owner not in self.names:
            self.names.add(owner)
            owner = owner.split(".", 1)[1] or "."
        self.names.add(self.origin)

    def remove(self, name: str, rtype: int | None = None, rdata_text: str | None = None
               ) -> int:
        """Records removed: all of `name`'s, one type's, or those whose data reads
        `rdata_text`. The apex SOA stays."""
        owner = name_key(name)
        types = self.rrsets.get(owner, {})
        removed = 0
        for t in list(types):
            if (rtype is not None and t != rtype) or (owner == self.origin and t == QTYPE.SOA):
                continue
            keep = [rr for rr in types[t]
                    if rdata_text is not None and str(rr.rdata) != rdata_text]
            removed += len(types[t]) - len(keep)
            if keep:
                types[t] = keep
            else:
                del types[t]
        if not types:
            self.rrsets.pop(owner, None)
            self._rebuild_names()
        return removed

    def _rebuild_names(self) -> None:
        self.names = {self.origin}
        for owner in self.rrsets:
            while owner not in self.names:
                self.names.add(owner)
                owner = owner.split(".", 1)[1] or "."


@dataclass
class Answer:
    """What the zones say to one question (dnslib records, ready to pack)."""

    rcode: int = 0
    aa: bool = True
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)


class ZoneSet:
    """The zones one server is authoritative for."""

    def __init__(self, zones: Iterable[Zone] = ()) -> None:
        self.zones = {z.origin: z for z in zones}

    def __bool__(self) -> bool:
        return bool(self.zones)

    def __len__(self) -> int:
        return sum(len(z) for z in self.zones.values())

    def find(self, name: str) -> Zone | None:
        """The closest enclosing zone of `name` (key form), or None."""
        zones = self.zones
        while True:
            zone = zones.get(name)
            if zone is not None:
                return zone
            if name == ".":
                return None
            name = name.split(".", 1)[1] or "."

    def add(self, rr: RR) -> Zone:
        """Add a record; a name outside every zone makes a zone at its parent."""
        owner = name_key(rr.rname)
        zone = self.find(owner)
        if zone is None:
            origin = owner.split(".", 1)[1] if owner.count(".") > 1 else owner
            zone = Zone.from_records(origin, (), need_soa=False)
            self.zones[zone.origin] = zone
        zone.add(rr)
        return zone

    def answer(self, qname: str | DNSLabel, qtype: int) -> Answer | None:
        """The authoritative answer, or None when `qname` is in none of the zones."""
        name = name_key(qname)
        zone = self.find(name)
        if zone is None:
            return None
        result = Answer()
        if qtype in (AXFR, IXFR):
            result.rcode = 5  # REFUSED: zone transfers are not offered (NSD's default)
            return result
        self._lookup(zone, name, DNSLabel(str(qname)), qtype, result, set())
        apex_ns = zone.rrsets.get(zone.origin, {}).get(QTYPE.NS)
        if result.rcode == 0 and result.answer and result.aa and apex_ns and \
                result.answer[-1].rtype in (qtype, *(() if qtype != ANY else (QTYPE.CNAME,))) \
                and not (name == zone.origin and qtype in (QTYPE.NS, ANY)):
            # as NSD (and BIND without minimal-responses), for an answer that is complete
            # here: who else answers for the zone
            result.authority += apex_ns
            result.additional += self._addresses(zone, (str(rr.rdata) for rr in apex_ns))
        return result

    def _lookup(self, zone: Zone, name: str, owner: DNSLabel, qtype: int, result: Answer,
                seen: set[str]) -> None:
        kind, node = _cut(zone, name, qtype)
        if kind == "NS":
            if result.answer:  # a CNAME led into a delegated name: the chain stops here
                return
            result.aa = False
            ns = zone.rrsets[node][QTYPE.NS]
            result.authority += ns
            result.additional += self._addresses(zone, (str(rr.rdata) for rr in ns))
            return
        if kind == "DNAME":  # RFC 6672: the DNAME, and a CNAME made from it
            dname = zone.rrsets[node][QTYPE.DNAME][0]
            target = str(owner).rstrip(".")[: -len(node.rstrip("."))] + str(dname.rdata.label)
            result.answer.append(dname)
            if len(target) > 255:
                result.rcode = 6  # YXDOMAIN: the new name would be too long
                return
            cname = RR(owner, QTYPE.CNAME, CLASS.IN, dname.ttl, CNAME(DNSLabel(target)))
            result.answer.append(cname)
            self._follow(name, DNSLabel(target), qtype, result, seen)
            return
        types = zone.rrsets.get(name)
        if types is None and name not in zone.names:
            types = _wildcard(zone, name)
            if types is None:
                result.rcode = 3  # NXDOMAIN
                result.authority.append(_negative_soa(zone))
                return
        types = types or {}
        if qtype == ANY and types:
            found = [rr for rrs in types.values() for rr in rrs]
        else:
            found = types.get(qtype, [])
        if found:
            result.answer += _owned(found, owner)
            result.additional += self._addresses(zone, _targets(found))
            return
        cname = types.get(QTYPE.CNAME)
        if cname:
            result.answer += _owned(cname, owner)
            self._follow(name, cname[0].rdata.label, qtype, result, seen)
            return
        result.authority.append(_negative_soa(zone))  # NODATA

    def _follow(self, name: str, target: DNSLabel, qtype: int, result: Answer,
                seen: set[str]) -> None:
        """Go on with a CNAME's target when it is in one of our zones (as NSD does)."""
        key = name_key(target)
        next_zone = self.find(key)
        if next_zone is not None and key not in seen and len(seen) < _MAX_CNAME_CHAIN:
            seen.add(name)
            self._lookup(next_zone, key, target, qtype, result, seen)

    def _addresses(self, zone: Zone, names: Iterable[str]) -> list[RR]:
        """A and AAAA records `zone` holds for `names` (glue; MX, SRV and NS targets);
        as NSD, never from another zone."""
        out: list[RR] = []
        for target in names:
            held = zone.rrsets.get(name_key(target), {})
            for t in _ADDRESS_TYPES:
                out += held.get(t, [])
        return out


def _cut(zone: Zone, name: str, qtype: int) -> tuple[str, str]:
    """("NS", node) for a delegation between the apex (excluded) and `name`; ("DNAME",
    node) for a DNAME strictly above `name`; ("", "") for neither. A DS question at the
    cut itself is the parent's to answer (RFC 4035 3.1.4.1)."""
    if name == zone.origin:
        return "", ""
    below = name[: -len(zone.origin)].rstrip(".").split(".") if zone.origin != "." \
        else name.rstrip(".").split(".")
    node = zone.origin
    if QTYPE.DNAME in zone.rrsets.get(node, {}):
        return "DNAME", node
    for label in reversed(below):
        node = f"{label}.{node}" if node != "." else f"{label}."
        types = zone.rrsets.get(node)
        if not types:
            continue
        if QTYPE.NS in types and not (node == name and qtype == QTYPE.DS):
            return "NS", node
        if QTYPE.DNAME in types and node != name:
            return "DNAME", node
    return "", ""


def _wildcard(zone: Zone, name: str) -> dict[int, list[RR]] | None:
    """RFC 4592: the records of ``*.<closest encloser>`` when that name exists."""
    encloser = name
    while encloser not in zone.names:
        encloser = encloser.split(".", 1)[1] or "."
    return zone.rrsets.get("*." + encloser if encloser != "." else "*.")


def _owned(rrs: list[RR], owner: DNSLabel) -> list[RR]:
    """Records as answers to `owner` (a wildcard's are given the name asked for, and the
    letter case of the question is kept)."""
    return [RR(owner, rr.rtype, rr.rclass, rr.ttl, rr.rdata) for rr in rrs]


def _targets(rrs: list[RR]) -> list[str]:
    out = []
    for rr in rrs:
        if rr.rtype in (QTYPE.MX, QTYPE.NS, QTYPE.SRV):
            label = getattr(rr.rdata, "label", None) or getattr(rr.rdata, "target", None)
            if label is not None:
                out.append(str(label))
    return out


def _negative_soa(zone: Zone) -> RR:
    soa = zone.soa
    ttl = min(soa.ttl, soa.rdata.times[-1])
    return RR(soa.rname, QTYPE.SOA, CLASS.IN, ttl, soa.rdata)


def reply(request: DNSRecord, result: Answer, *, ra: bool) -> DNSRecord:
    """The DNS message for `result`: AA unless it is a referral, RA only when the server
    also recurses."""
    r = request.reply()
    r.header.aa = int(result.aa and result.rcode != 5)
    r.header.ra = int(ra)
    r.header.tc = 0
    r.header.ad = 0
    r.header.rcode = result.rcode
    r.ar = []
    for rr in result.answer:
        r.add_answer(rr)
    for rr in result.authority:
        r.add_auth(rr)
    seen = set()
    for rr in result.additional:
        key = (name_key(rr.rname), rr.rtype, str(rr.rdata))
        if key not in seen:
            seen.add(key)
            r.add_ar(rr)
    return r
