"""DNSSEC validation of one authority's response, given the zone's trusted keys (RFC 4035
section 5, RFC 5155 section 8, RFC 6840): positive answers (wildcards included),
NXDOMAIN and NODATA by NSEC or NSEC3, referrals (a signed DS, or a proof there is none).
Pure functions of the records and the time; the recursion engine calls them as it walks
the delegations (recursion.py), the crypto is dnssec.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .dnssec import (
    DS,
    MAX_NSEC3_ITERATIONS,
    NSEC,
    NSEC3,
    RRSIG,
    BadRecord,
    Checked,
    Dnskey,
    Ds,
    Nsec,
    Nsec3,
    Rrsig,
    Verdict,
    canonical_key,
    nsec3_hash,
    verify_rrset,
)
from .message import CNAME, DNAME, SOA, Message, Record

SECURE, INSECURE = "secure", "insecure"


@dataclass(slots=True)
class ZoneKeys:
    """A zone's standing: `secure` with its validated DNSKEYs, or `insecure` (a proven
    unsigned delegation, or algorithms we do not validate)."""

    state: str
    keys: list[Dnskey] = field(default_factory=list)
    expires: float = 0.0


class Bogus(Exception):
    def __init__(self, verdict: Verdict, why: str) -> None:
        super().__init__(why)
        self.verdict = verdict
        self.why = why


def _labels(name: str) -> int:
    return 0 if name == "." else name.rstrip(".").count(".") + 1


def _parent(name: str) -> str:
    return name.split(".", 1)[1] or "." if name != "." else "."


def in_zone(name: str, zone: str) -> bool:
    return zone == "." or name == zone or name.endswith("." + zone)


_under = in_zone


def cut_below(response: Message, zone: str) -> str | None:
    """A zone apex strictly below `zone` that the response shows (an RRSIG's signer, or
    an SOA's owner): the child a server for both parent and child answered from."""
    for rr in (*response.answer, *response.authority):
        name = ""
        if rr.rtype == SOA:
            name = rr.name
        elif rr.rtype == RRSIG and len(rr.rdata) >= 19:
            try:
                name = Rrsig.parse(rr.rdata).signer
            except BadRecord:
                continue
        if name and name != zone and in_zone(name, zone):
            return name
    return None


def denial_records(response: Message, zone: str, also: tuple[int, ...]) -> list[Record]:
    """The authority section's NSEC and NSEC3 records and the RRSIGs covering them (and
    the types in `also`): what a DO client gets with a denial or a wildcard answer."""
    wanted = (NSEC, NSEC3, *also)
    return [rr for rr in response.authority if in_zone(rr.name, zone) and (
        rr.rtype in (NSEC, NSEC3) or (rr.rtype == RRSIG and len(rr.rdata) >= 2 and
                                      int.from_bytes(rr.rdata[:2], "big") in wanted))]


def rrsets(records: Sequence[Record]) -> dict[tuple[str, int], list[Record]]:
    """The RRsets of a section, RRSIGs apart (keyed by what they cover)."""
    out: dict[tuple[str, int], list[Record]] = {}
    for rr in records:
        if rr.rtype == RRSIG:
            if len(rr.rdata) >= 2:
                covered = int.from_bytes(rr.rdata[:2], "big")
                out.setdefault((rr.name, -covered), []).append(rr)
        else:
            out.setdefault((rr.name, rr.rtype), []).append(rr)
    return out


def check_rrset(sets: dict[tuple[str, int], list[Record]], name: str, rtype: int,
                zone: str, keys: Sequence[Dnskey], now: float) -> Checked:
    checked = verify_rrset(sets.get((name, rtype), []), sets.get((name, -rtype), []), keys,
                           zone, now)
    if checked.verdict not in (Verdict.SECURE,):
        raise Bogus(checked.verdict if checked.verdict != Verdict.UNSUPPORTED
                    else Verdict.BOGUS, checked.why or f"{name} {rtype} not validated")
    return checked


def _expanded_from(sets: dict[tuple[str, int], list[Record]], name: str, rtype: int
                   ) -> int | None:
    """The RRSIG labels count when the RRset is a wildcard expansion (fewer labels than
    its owner), else None."""
    from .dnssec import Rrsig
    for rr in sets.get((name, -rtype), []):
        try:
            sig = Rrsig.parse(rr.rdata)
        except BadRecord:
            continue
        if sig.labels < _labels(name):
            return sig.labels
    return None


def check_answer(response: Message, qname: str, qtype: int, zone: str,
                 keys: Sequence[Dnskey], now: float) -> int:
    """A positive answer (or CNAME/DNAME step) from `zone`: every RRset of the answer
    section inside the zone verified; a wildcard expansion also needs the proof that
    `qname` itself does not exist. The smallest TTL the signatures allow."""
    sets = rrsets([rr for rr in response.answer if _under(rr.name, zone)])
    ttl = 1 << 31
    for name, rtype in list(sets):
        if rtype < 0:
            continue
        if rtype == CNAME and any(k[1] == DNAME for k in sets):
            continue  # a CNAME synthesised from a signed DNAME is unsigned (RFC 6672)
        ttl = min(ttl, check_rrset(sets, name, rtype, zone, keys, now).ttl)
        labels = _expanded_from(sets, name, rtype)
        if labels is not None:
            _prove_wildcard_expansion(response, name, labels, zone, keys, now)
    return ttl


def _prove_wildcard_expansion(response: Message, name: str, labels: int, zone: str,
                              keys: Sequence[Dnskey], now: float) -> None:
    """RFC 4035 5.3.4 / RFC 5155 8.8: the name itself must be proven absent."""
    sets = _signed_denials(response, zone, keys, now)
    nsecs, nsec3s = sets
    if nsecs:
        if any(_nsec_covers(n, name) for n in nsecs):
            return
        raise Bogus(Verdict.NSEC_MISSING, f"wildcard answer for {name} without an NSEC "
                                          f"proving {name} absent")
    if nsec3s:
        encloser = ".".join(name.rstrip(".").split(".")[-labels:]) + "." if labels else "."
        nxt = _next_closer(name, encloser)
        if _nsec3_covering(nsec3s, nxt) is not None:
            return
        raise Bogus(Verdict.NSEC_MISSING, f"wildcard answer for {name} without an NSEC3 "
                                          f"covering {nxt}")
    raise Bogus(Verdict.NSEC_MISSING, f"wildcard answer for {name} without a denial proof")


def _signed_denials(response: Message, zone: str, keys: Sequence[Dnskey], now: float
                    ) -> tuple[list[Nsec], list[Nsec3]]:
    """The authority section's NSEC and NSEC3 records, each RRset verified."""
    sets = rrsets([rr for rr in response.authority if _under(rr.name, zone)])
    nsecs: list[Nsec] = []
    nsec3s: list[Nsec3] = []
    for (name, rtype), records in sets.items():
        if rtype not in (NSEC, NSEC3):
            continue
        check_rrset(sets, name, rtype, zone, keys, now)
        try:
            for rr in records:
                if rtype == NSEC:
                    nsecs.append(Nsec.parse(rr.name, rr.rdata))
                else:
                    nsec3s.append(Nsec3.parse(rr.name, rr.rdata))
        except BadRecord as exc:
            raise Bogus(Verdict.BOGUS, str(exc)) from None
    return nsecs, nsec3s


def _nsec_covers(nsec: Nsec, name: str) -> bool:
    """`name` falls strictly between the NSEC's owner and next (canonical order; the
    last NSEC of a zone points back to the apex)."""
    owner, nxt, key = canonical_key(nsec.owner), canonical_key(nsec.next), canonical_key(name)
    if owner < nxt:
        return owner < key < nxt
    return key > owner or key < nxt


def _next_closer(name: str, encloser: str) -> str:
    """The name one label longer than the closest encloser, on the way to `name`."""
    keep = _labels(encloser) + 1
    return ".".join(name.rstrip(".").split(".")[-keep:]) + "."


def _nsec3_params(nsec3s: Sequence[Nsec3]) -> tuple[bytes, int]:
    first = nsec3s[0]
    if first.algorithm != 1:
        raise Bogus(Verdict.BOGUS, f"NSEC3 hash algorithm {first.algorithm}")
    return first.salt, first.iterations


def _nsec3_matching(nsec3s: Sequence[Nsec3], name: str) -> Nsec3 | None:
    salt, iterations = _nsec3_params(nsec3s)
    hashed = nsec3_hash(name, salt, iterations)
    return next((n for n in nsec3s if n.owner_hash == hashed), None)


def _nsec3_covering(nsec3s: Sequence[Nsec3], name: str) -> Nsec3 | None:
    salt, iterations = _nsec3_params(nsec3s)
    hashed = nsec3_hash(name, salt, iterations)
    return next((n for n in nsec3s if n.covers(hashed)), None)


def _closest_encloser(nsec3s: Sequence[Nsec3], name: str, zone: str) -> tuple[str, str]:
    """RFC 5155 8.3: the closest encloser (an NSEC3 matches it) and the next closer name
    (an NSEC3 covers it)."""
    candidate = name
    while True:
        if _nsec3_matching(nsec3s, candidate) is not None:
            if candidate == name:
                raise Bogus(Verdict.BOGUS, f"NSEC3 says {name} exists")
            nxt = _next_closer(name, candidate)
            if _nsec3_covering(nsec3s, nxt) is None:
                raise Bogus(Verdict.NSEC_MISSING, f"no NSEC3 covers {nxt}")
            return candidate, nxt
        if candidate == zone:
            raise Bogus(Verdict.NSEC_MISSING, f"no NSEC3 matches an encloser of {name}")
        candidate = _parent(candidate)


def check_negative(response: Message, qname: str, qtype: int, zone: str,
                   keys: Sequence[Dnskey], now: float, nxdomain: bool) -> str:
    """NXDOMAIN or NODATA from `zone`, proven (RFC 4035 5.4, RFC 5155 8.4-8.7). Returns
    SECURE, or INSECURE for an opt-out span or NSEC3 past the iteration limit (RFC 9276):
    those prove nothing either way."""
    sets = rrsets([rr for rr in response.authority if _under(rr.name, zone)])
    soa = [k for k in sets if k[1] == SOA]
    if soa:
        check_rrset(sets, soa[0][0], SOA, zone, keys, now)
    nsecs, nsec3s = _signed_denials(response, zone, keys, now)
    if nsec3s and any(n.iterations > MAX_NSEC3_ITERATIONS for n in nsec3s):
        return INSECURE
    if nsecs:
        _prove_with_nsec(nsecs, qname, qtype, zone, nxdomain)
        return SECURE
    if nsec3s:
        return _prove_with_nsec3(nsec3s, qname, qtype, zone, nxdomain)
    raise Bogus(Verdict.NSEC_MISSING, f"{'NXDOMAIN' if nxdomain else 'NODATA'} for "
                                      f"{qname} without NSEC or NSEC3")


def _prove_with_nsec(nsecs: Sequence[Nsec], qname: str, qtype: int, zone: str,
                     nxdomain: bool) -> None:
    match = next((n for n in nsecs if n.owner == qname), None)
    if not nxdomain:
        if match is not None:
            if qtype in match.types or CNAME in match.types:
                raise Bogus(Verdict.BOGUS, f"NSEC says {qname} has type {qtype}")
            return
        # a wildcard NODATA: qname covered, the wildcard at the encloser matched
        if any(_nsec_covers(n, qname) for n in nsecs) and any(
                n.owner.startswith("*.") and qtype not in n.types for n in nsecs):
            return
        # an empty non-terminal: an NSEC whose next name is below qname
        if any(_nsec_covers(n, qname) and n.next.endswith("." + qname) for n in nsecs):
            return
        raise Bogus(Verdict.NSEC_MISSING, f"no NSEC proves NODATA for {qname}")
    covering = next((n for n in nsecs if _nsec_covers(n, qname)), None)
    if covering is None:
        raise Bogus(Verdict.NSEC_MISSING, f"no NSEC covers {qname}")
    # no wildcard either (RFC 4035 5.4): the closest encloser's "*" is covered too
    encloser = max(_common(qname, covering.owner), _common(qname, covering.next), key=_labels)
    wildcard = "*." + encloser if encloser != "." else "*."
    if not any(_nsec_covers(n, wildcard) for n in nsecs):
        raise Bogus(Verdict.NSEC_MISSING, f"no NSEC proves there is no {wildcard}")


def _common(a: str, b: str) -> str:
    """The longest common ancestor of two names."""
    la, lb = a.rstrip(".").split("."), b.rstrip(".").split(".")
    same = []
    for x, y in zip(reversed(la), reversed(lb), strict=False):
        if x != y or not x:
            break
        same.append(x)
    return ".".join(reversed(same)) + "." if same else "."


def _prove_with_nsec3(nsec3s: Sequence[Nsec3], qname: str, qtype: int, zone: str,
                      nxdomain: bool) -> str:
    if not nxdomain:
        match = _nsec3_matching(nsec3s, qname)
        if match is not None:
            if qtype in match.types or CNAME in match.types:
                raise Bogus(Verdict.BOGUS, f"NSEC3 says {qname} has type {qtype}")
            return SECURE
        if qtype == DS:  # RFC 5155 8.6: no DS under an opt-out span is insecure
            _, nxt = _closest_encloser(nsec3s, qname, zone)
            covering = _nsec3_covering(nsec3s, nxt)
            if covering is not None and covering.opt_out:
                return INSECURE
        encloser, _ = _closest_encloser(nsec3s, qname, zone)
        wildcard = _nsec3_matching(nsec3s, "*." + encloser if encloser != "." else "*.")
        if wildcard is not None and qtype not in wildcard.types:
            return SECURE  # RFC 5155 8.7: a wildcard NODATA
        raise Bogus(Verdict.NSEC_MISSING, f"no NSEC3 proves NODATA for {qname}")
    encloser, nxt = _closest_encloser(nsec3s, qname, zone)
    covering = _nsec3_covering(nsec3s, nxt)
    wildcard = "*." + encloser if encloser != "." else "*."
    if _nsec3_covering(nsec3s, wildcard) is None:
        raise Bogus(Verdict.NSEC_MISSING, f"no NSEC3 proves there is no {wildcard}")
    if covering is not None and covering.opt_out:
        return INSECURE  # RFC 5155 8.4: an opt-out span may hide an unsigned delegation
    return SECURE


def check_referral(response: Message, child: str, zone: str, keys: Sequence[Dnskey],
                   now: float) -> tuple[str, list[Ds], int]:
    """A delegation from `zone` to `child`: (SECURE, the child's DS set, its TTL) when a
    signed DS comes with it; (INSECURE, [], 0) when NSEC/NSEC3 prove there is none."""
    sets = rrsets([rr for rr in response.authority if _under(rr.name, zone)])
    if (child, DS) in sets:
        checked = check_rrset(sets, child, DS, zone, keys, now)
        try:
            ds = [Ds.parse(rr.rdata) for rr in sets[(child, DS)]]
        except BadRecord as exc:
            raise Bogus(Verdict.BOGUS, str(exc)) from None
        if not any(d.usable for d in ds):
            return INSECURE, [], 0  # RFC 4035 5.2: no DS we can use: as unsigned
        return SECURE, ds, checked.ttl
    nsecs, nsec3s = _signed_denials(response, zone, keys, now)
    if nsecs:
        match = next((n for n in nsecs if n.owner == child), None)
        if match is not None and DS not in match.types and 2 in match.types:
            return INSECURE, [], 0
        raise Bogus(Verdict.NSEC_MISSING, f"referral to {child}: no DS and no NSEC "
                                          f"proving there is none")
    if nsec3s:
        if any(n.iterations > MAX_NSEC3_ITERATIONS for n in nsec3s):
            return INSECURE, [], 0
        match = _nsec3_matching(nsec3s, child)
        if match is not None and DS not in match.types:
            return INSECURE, [], 0
        _, nxt = _closest_encloser(nsec3s, child, zone)
        covering = _nsec3_covering(nsec3s, nxt)
        if covering is not None and covering.opt_out:
            return INSECURE, [], 0
        raise Bogus(Verdict.NSEC_MISSING, f"referral to {child}: no DS, no NSEC3 proof")
    raise Bogus(Verdict.RRSIGS_MISSING, f"referral to {child} from signed {zone} without "
                                        f"DS or a proof of none")
