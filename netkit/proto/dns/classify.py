"""What an authority's response means for the name being resolved: answer, CNAME,
referral, NXDOMAIN, NODATA or lame. Only records inside the server's bailiwick are kept,
so an answer cannot poison names its server has no authority over."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from dnslib import RCODE

from .message import (
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
from .names import name_key


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
    response: Message | None = None  # what the server said (the validator reads it)
    secure: bool = False  # DNSSEC-validated
    signatures: list[Record] = field(default_factory=list)  # RRSIGs of the answer
    proofs: list[Record] = field(default_factory=list)  # NSEC/NSEC3, RRSIGs: a denial's


def classify(response: Message, qname: str, qtype: int, zone: str) -> Classified:
    """Interpret an authority's answer for (qname, qtype), asked of a server for `zone`.
    Names are in key form already (message.py), so they compare as they are."""
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
