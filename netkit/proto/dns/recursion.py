"""Recursive resolution as a pure engine: the algorithm, with no sockets and no clock.

Theory of operation. `Recursion` holds what outlives one question: the cache,
the zone cuts learned (delegations), each authority's smoothed RTT and the ones
found dead. `Recursion.resolve(qname, qtype, now)` is a generator: it yields a
`Query` (ask this server this question, waiting at most this long) and is sent
back an `Exchange` (the parsed answer, or why there is none, and the time now);
it returns the `Result`. CNAME chains (16 at most), DNAMEs, referrals, glueless
delegations (resolved on the side by the same generator, depth-limited),
qname minimisation (RFC 9156), server choice by smoothed RTT, dead servers,
the total deadline and every other limit live here; every failure becomes a
Result with SERVFAIL and an Extended DNS Error (RFC 8914) saying why. The
driver, `servers/dns/resolver.py`, only sends, times and coalesces (the shape of
dnspython's `_Resolution` and its async loop).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TypeVar

from netkit.proto.dns import message as dnsmsg
from netkit.proto.dns import validate
from netkit.proto.dns.cache import Cache
from netkit.proto.dns.classify import Classified, Kind, classify
from netkit.proto.dns.dnssec import (
    DNSKEY,
    DS,
    RRSIG,
    BadRecord,
    Dnskey,
    Ds,
    Verdict,
    verify_dnskeys,
)
from netkit.proto.dns.message import CNAME, NOERROR, NXDOMAIN, SERVFAIL, SOA, A, Message, Record
from netkit.proto.dns.names import EDE, in_bailiwick, minimised, name_key
from netkit.proto.dns.validate import INSECURE, SECURE, Bogus, ZoneKeys

MAX_CNAME_CHAIN = 16
MAX_REFERRALS = 30
MAX_GLUELESS_DEPTH = 4
MAX_DELEGATIONS = 50_000  # zone cuts remembered (the oldest go first)
MAX_SERVERS = 100_000  # authorities with an RTT on record before the table starts over
MAX_MINIMISE_STEPS = 10  # RFC 9156 section 2.3: MAX_MINIMISE_COUNT
STALE_TTL = 30  # RFC 8767 section 4: the TTL of a stale answer
BOGUS_TTL = 60  # how long a bogus answer is remembered (Unbound: val-bogus-ttl)
MAX_ZONE_KEYS = 50_000


@dataclass(slots=True)
class Query:
    """Ask `server` (port) for (name, qtype); RD set for forwarders. Wait at most
    `timeout` over UDP, `tcp_timeout` over TCP when the answer comes truncated."""

    server: str
    port: int
    name: str
    qtype: int
    rd: bool
    timeout: float
    tcp_timeout: float
    dnssec_ok: bool = False  # the DO bit: signatures wanted (a validating resolver)


@dataclass(slots=True)
class Exchange:
    """What came of a Query: the answer, or None with why (`timed_out` for silence)."""

    now: float
    response: Message | None = None
    error: str = ""
    timed_out: bool = False


@dataclass
class Result:
    rcode: int
    answer: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    ede: tuple[int, str] | None = None
    secure: bool = False  # every part DNSSEC-validated (the AD bit)
    signatures: list[Record] = field(default_factory=list)  # the answer's RRSIGs (for DO)
    proofs: list[Record] = field(default_factory=list)  # a denial's NSEC(3)s and RRSIGs


class Failure(Exception):
    """Resolution failed; carries the EDE code and text for the SERVFAIL."""

    def __init__(self, code: EDE, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


T = TypeVar("T")
Steps = Generator[Query, Exchange, T]


@dataclass(slots=True)
class _Run:
    """One resolution's clock (the last time the driver said) and deadline."""

    now: float
    deadline: float
    error: str = ""  # why the last query got no answer


def negative_soa(soa: Record | None) -> list[Record]:
    """The authority section of a negative answer: the SOA with the negative TTL,
    min(its TTL, its MINIMUM) (RFC 2308 section 5), so that whoever caches the reply
    forgets the NXDOMAIN or NODATA when it should."""
    return [soa.with_ttl(min(soa.ttl, soa.soa_minimum))] if soa is not None else []


def _in_zone(name: str, zone: str) -> bool:
    """`name` is `zone` or below it (both in key form)."""
    return zone == "." or name == zone or name.endswith("." + zone)


@functools.lru_cache(maxsize=4096)
def _is_private(server: str) -> bool:
    addr = ipaddress.ip_address(server)
    return addr.is_private or addr.is_loopback or addr.is_link_local


class Recursion:
    """The resolution algorithm and the tables it learns into (see the module doc)."""

    def __init__(self, *, hints: list[tuple[str, str]], cache: Cache, port: int = 53,
                 server_timeout: float = 0.8, total_timeout: float = 5.0,
                 query_private_authorities: bool = False,
                 on_step: Callable[[str, str, str, int, Classified], None] | None = None,
                 qname_minimisation: bool = True,
                 forwards: dict[str, list[tuple[str, int]]] | None = None,
                 random: Callable[[], float],
                 trust_anchors: list[Ds | Dnskey] | None = None,
                 wall_clock: Callable[[], float] | None = None) -> None:
        self.hints = hints
        self.random = random  # [0, 1): the driver's unpredictable source; tests seed one
        self.hint_addresses = [addr for _, addr in hints]
        self.cache = cache
        self.port = port
        self.server_timeout = server_timeout
        self.total_timeout = total_timeout
        self.query_private_authorities = query_private_authorities
        self.srtt: dict[str, float] = {}
        self.dead_until: dict[str, float] = {}
        self.delegations: dict[str, tuple[float, list[str]]] = {}
        self.on_step = on_step  # (zone, server, name, qtype, outcome): `+trace` prints these
        self.qname_minimisation = qname_minimisation
        self.forwards = {name_key(z): s for z, s in (forwards or {}).items()}
        # DNSSEC: the root's trust anchor (None: no validation), each zone's standing,
        # and answers found bogus; signatures' windows are wall-clock time
        self.trust_anchors = trust_anchors
        self.wall_clock = wall_clock
        self.zone_keys: dict[str, ZoneKeys] = {}
        self.bogus: dict[tuple[str, int], tuple[float, int, str]] = {}

    def resolve(self, qname: str, qtype: int, now: float) -> Steps[Result]:
        """Resolve (qname in key form); SERVFAIL with an EDE when it cannot be done."""
        run = _Run(now, now + self.total_timeout)
        try:
            return (yield from self._resolve(qname, qtype, 0, set(), run))
        except Failure as exc:
            failed = Result(SERVFAIL, ede=(exc.code, exc.text))
        return self._stale(qname, qtype, failed, run.now) or failed

    def _time_left(self, run: _Run) -> float:
        left = run.deadline - run.now
        if left <= 0:
            raise Failure(EDE.NO_REACHABLE_AUTHORITY,
                          f"no answer within {self.total_timeout} s")
        return left

    def _stale(self, qname: str, qtype: int, failed: Result, now: float) -> Result | None:
        """RFC 8767: when resolution fails, an expired answer beats none (TTL 30, EDE 3)."""
        if not self.cache.stale_for:
            return None
        chain: list[Record] = []
        name = qname
        for _ in range(MAX_CNAME_CHAIN + 1):
            entry = self.cache.get_stale(name, qtype, now) or self.cache.get(name, qtype, now)
            if entry is not None:
                rrs = [rr.with_ttl(STALE_TTL) for rr in entry.rrs]
                why = failed.ede[1] if failed.ede else "resolution failed"
                ede = (EDE.STALE_ANSWER, f"stale answer: {why}")
                if entry.negative:
                    return Result(entry.rcode, chain, rrs, ede)
                return Result(NOERROR, chain + rrs, ede=ede)
            cname = self.cache.get_stale(name, CNAME, now) or \
                self.cache.get(name, CNAME, now)
            if cname is None:
                return None
            rr = cname.rrs[0]
            chain.append(rr.with_ttl(STALE_TTL))
            name = rr.target
        return None

    # --- the iteration ---

    def _resolve(self, qname: str, qtype: int, depth: int, resolving: set[tuple[str, int]],
                 run: _Run) -> Steps[Result]:
        chain: list[Record] = []
        name = qname
        seen = {name}
        secure = self.trust_anchors is not None  # until a part is not
        sigs: list[Record] = []  # RRSIGs along the chain, for clients that set DO
        for _ in range(MAX_CNAME_CHAIN + 1):
            if self.bogus:
                self._still_bogus(name, qtype, run.now)
            forward = self._forwarders(name) if self.forwards else None
            if forward is not None:
                secure = False  # forwarded answers are not validated
                result, cnames = yield from self._forward(*forward, name, qtype, run)
                if result is not None:
                    result.answer[:0] = chain
                    return result
                chain.extend(cnames[:-1])
                cname = cnames[-1]
            else:
                cname = None
            if cname is not None:
                chain.append(cname)
                name = cname.target
                if name in seen:
                    raise Failure(EDE.INVALID_DATA, f"CNAME loop at {name}")
                seen.add(name)
                continue
            now = run.now
            hit = self.cache.get(name, qtype, now)
            if hit is not None:
                rrs = self.cache.with_ttls(hit, now)
                secure = secure and hit.secure
                if hit.negative:
                    return Result(hit.rcode, chain, rrs, secure=secure, signatures=sigs,
                                  proofs=self.cache.sigs_with_ttls(hit, now))
                return Result(NOERROR, chain + rrs, secure=secure,
                              signatures=sigs + self.cache.sigs_with_ttls(hit, now),
                              proofs=self.cache.sigs_with_ttls(hit, now, proofs=True))
            cached_cname = self.cache.get(name, CNAME, now) if qtype != CNAME \
                else None
            if cached_cname is not None:
                cname = self.cache.with_ttls(cached_cname, now)[0]
                secure = secure and cached_cname.secure
                sigs += self.cache.sigs_with_ttls(cached_cname, now)
            else:
                outcome = yield from self._iterate(name, qtype, depth, resolving, run)
                secure = secure and outcome.secure
                sigs += outcome.signatures
                if outcome.kind is not Kind.CNAME:
                    if outcome.kind is Kind.ANSWER:
                        return Result(NOERROR, chain + outcome.answer, secure=secure,
                                      signatures=sigs, proofs=outcome.proofs)
                    rcode = NXDOMAIN if outcome.kind is Kind.NXDOMAIN else NOERROR
                    return Result(rcode, chain, negative_soa(outcome.soa), secure=secure,
                                  signatures=sigs, proofs=outcome.proofs)
                cname = outcome.cname
                assert cname is not None
                chain.extend(outcome.answer)  # a DNAME that synthesised the CNAME
            chain.append(cname)
            name = cname.target
            if name in seen:
                raise Failure(EDE.INVALID_DATA, f"CNAME loop at {name}")
            seen.add(name)
        raise Failure(EDE.INVALID_DATA, f"CNAME chain longer than {MAX_CNAME_CHAIN}")

    def _iterate(self, name: str, qtype: int, depth: int, resolving: set[tuple[str, int]],
                 run: _Run) -> Steps[Classified]:
        # a DS lives on the parent's side of the cut (RFC 4035 3.1.4.1): ask from above
        zone, servers = self._closest(name if qtype != DS or name == "." else
                                      name.split(".", 1)[1] or ".", run.now)
        keys = (yield from self._keys_of(zone, servers, run)) \
            if self.trust_anchors is not None else None
        extra = 1  # labels below the zone cut that the next minimised question reveals
        for _ in range(MAX_REFERRALS + MAX_MINIMISE_STEPS):
            ask = minimised(name, zone, extra) if self.qname_minimisation else name
            asked_type = qtype if ask == name else A
            outcome = yield from self._ask(zone, servers, ask, asked_type, run)
            now = run.now
            if keys is not None and keys.state == SECURE and outcome.response is not None \
                    and outcome.kind is not Kind.REFERRAL:
                # a server for the parent that serves the child too answers from the
                # child with no referral: its signatures name the cut (Unbound probes
                # for it with DS questions the same way)
                signer = validate.cut_below(outcome.response, zone)
                if signer is not None and in_bailiwick(ask, signer):
                    keys = yield from self._cut_at(signer, zone, keys, servers, run)
                    zone, extra = signer, max(1, ask.count(".") - signer.count("."))
            if ask != name and outcome.kind is not Kind.REFERRAL:
                if outcome.kind is Kind.NXDOMAIN:
                    # RFC 8020: nothing exists below a name that does not exist
                    self._validate(outcome, ask, asked_type, zone, keys, now)
                    self.cache.put_negative(name, qtype, NXDOMAIN, outcome.soa, now,
                                            secure=outcome.secure, sigs=outcome.proofs)
                    return outcome
                extra += 1  # the name exists here (or is an empty non-terminal): go deeper
                continue
            if outcome.kind is not Kind.REFERRAL:
                self._validate(outcome, name, qtype, zone, keys, now)
            if outcome.kind is Kind.ANSWER:
                self.cache.put(name, qtype, outcome.answer, now, secure=outcome.secure,
                               sigs=outcome.signatures, proofs=outcome.proofs)
                return outcome
            if outcome.kind is Kind.CNAME:
                assert outcome.cname is not None
                self.cache.put(name, CNAME, [outcome.cname], now, secure=outcome.secure,
                               sigs=[s for s in outcome.signatures if s.name == name])
                return outcome
            if outcome.kind in (Kind.NXDOMAIN, Kind.NODATA):
                rcode = NXDOMAIN if outcome.kind is Kind.NXDOMAIN else NOERROR
                self.cache.put_negative(name, qtype, rcode, outcome.soa, now,
                                        secure=outcome.secure, sigs=outcome.proofs)
                return outcome
            # a referral: find the new zone's servers' addresses, with glue or without
            addresses = [a for n in outcome.ns_names for a in outcome.glue.get(n, [])]
            if not addresses:
                addresses = yield from self._glueless(outcome, depth, resolving, run)
            if not addresses:
                raise Failure(EDE.NO_REACHABLE_AUTHORITY,
                              f"no address for any server of {outcome.zone} "
                              f"({', '.join(outcome.ns_names)})")
            ttl = min(outcome.ttl, self.cache.max_ttl)
            self.delegations[outcome.zone] = (now + ttl, addresses)
            if len(self.delegations) > MAX_DELEGATIONS:  # bounded like every other table
                self.delegations.pop(next(iter(self.delegations)))
            if keys is not None:
                keys = yield from self._delegate(outcome, zone, keys, addresses, ttl, run)
            zone, servers, extra = outcome.zone, addresses, 1
        raise Failure(EDE.OTHER, f"more than {MAX_REFERRALS} referrals for {name}")

    def _forward(self, zone: str, servers: list[tuple[str, int]], name: str, qtype: int,
                 run: _Run) -> Steps[tuple[Result | None, list[Record]]]:
        """A forward zone: ask its servers to recurse (RD=1). Only records inside `zone` are
        believed and cached, as a referral's would be: a forwarder for evil.test cannot
        answer for victim.example. Returns (the result, []) or, when the zone's CNAME chain
        leads out of the zone, (None, that chain) for the caller to follow like any CNAME."""
        problems = []
        for host, port in servers:
            response = yield from self._query(host, port, name, qtype, True, run)
            if response is None:
                problems.append(f"{host}:{port}: {run.error}")
                continue
            now = run.now
            if response.rcode == SERVFAIL:
                problems.append(f"{host}:{port}: SERVFAIL")
                continue
            try:
                authority = response.authority
            except dnsmsg.FormatError as exc:
                problems.append(f"{host}:{port}: malformed answer: {exc}")
                continue
            inside = [rr for rr in response.answer if _in_zone(rr.name, zone)]
            groups: dict[tuple[str, int], list[Record]] = {}
            for rr in inside:
                groups.setdefault((rr.name, rr.rtype), []).append(rr)
            for (owner, rtype), rrs in groups.items():
                self.cache.put(owner, rtype, rrs, now)
            chain: list[Record] = []
            current = name
            for _ in range(MAX_CNAME_CHAIN + 1):
                found = groups.get((current, qtype))
                if found:
                    return Result(NOERROR, chain + found), []
                cnames = groups.get((current, CNAME)) if qtype != CNAME else None
                if not cnames:
                    break
                chain.append(cnames[0])
                current = cnames[0].target
                if not _in_zone(current, zone):
                    return None, chain  # followed outside, never believed from here
            soa = next((rr for rr in authority
                        if rr.rtype == SOA and _in_zone(rr.name, zone)), None)
            if response.rcode in (NOERROR, NXDOMAIN):  # NODATA or NXDOMAIN at the chain's end
                self.cache.put_negative(current, qtype, response.rcode, soa, now)
            return Result(response.rcode, chain, negative_soa(soa)), []
        raise Failure(EDE.NO_REACHABLE_AUTHORITY,
                      "no forwarder answered: " + "; ".join(problems))

    def _forwarders(self, name: str) -> tuple[str, list[tuple[str, int]]] | None:
        """The deepest forward zone `name` is in, and its servers."""
        best = None
        for zone, servers in self.forwards.items():
            if in_bailiwick(name, zone) and (best is None or len(zone) > len(best[0])):
                best = (zone, servers)
        return best

    def _glueless(self, referral: Classified, depth: int, resolving: set[tuple[str, int]],
                  run: _Run) -> Steps[list[str]]:
        if depth >= MAX_GLUELESS_DEPTH:
            raise Failure(EDE.OTHER, f"glueless delegations nested deeper than "
                                     f"{MAX_GLUELESS_DEPTH} at {referral.zone}")
        for ns in referral.ns_names:
            key = (ns, A)
            if key in resolving:
                continue  # a delegation loop: this name is already being looked up
            try:
                result = yield from self._resolve(ns, A, depth + 1, resolving | {key},
                                                  run)
            except Failure:
                continue
            found = [rr.address for rr in result.answer if rr.rtype == A]
            if found:
                return found
        return []

    def _closest(self, name: str, now: float) -> tuple[str, list[str]]:
        """The deepest zone cut known for `name` (key form), and its servers' addresses
        (validating: one whose DNSSEC standing is known too)."""
        zone = name
        validating = self.trust_anchors is not None
        while zone != ".":
            entry = self.delegations.get(zone)
            if entry is not None and entry[0] > now and (
                    not validating or self._known_keys(zone, now) is not None):
                return zone, entry[1]
            zone = zone[zone.index(".") + 1:] or "."
        return ".", self.hint_addresses

    # --- DNSSEC: the chain of trust, walked along the referrals ---

    def _known_keys(self, zone: str, now: float) -> ZoneKeys | None:
        keys = self.zone_keys.get(zone)
        return keys if keys is not None and keys.expires > now else None

    def _store_keys(self, zone: str, keys: ZoneKeys) -> ZoneKeys:
        self.zone_keys[zone] = keys
        if len(self.zone_keys) > MAX_ZONE_KEYS:
            self.zone_keys.pop(next(iter(self.zone_keys)))
        return keys

    def _keys_of(self, zone: str, servers: list[str], run: _Run) -> Steps[ZoneKeys]:
        """The standing of the zone iteration starts in: known (`_closest` chose it so),
        or the root's, checked against the trust anchor."""
        known = self._known_keys(zone, run.now)
        if known is not None:
            return known
        assert self.trust_anchors is not None
        keys = yield from self._fetch_keys(".", servers, self.trust_anchors, run)
        return self._store_keys(".", keys)

    def _fetch_keys(self, zone: str, servers: list[str], anchors: list[Ds | Dnskey],
                    run: _Run) -> Steps[ZoneKeys]:
        """The zone's DNSKEY set, from its servers, validated by `anchors` (its DS set)."""
        outcome = yield from self._ask(zone, servers, zone, DNSKEY, run)
        if outcome.kind is not Kind.ANSWER or outcome.response is None:
            raise Failure(EDE.DNSKEY_MISSING, f"no DNSKEY for {zone}")
        sets = validate.rrsets(outcome.response.answer)
        checked, keys = verify_dnskeys(zone, sets.get((zone, DNSKEY), []),
                                       sets.get((zone, -DNSKEY), []), anchors,
                                       self._wall())
        if checked.verdict is Verdict.SECURE:
            ttl = min(checked.ttl, self.cache.max_ttl)
            return ZoneKeys(SECURE, keys, run.now + ttl)
        if checked.verdict is Verdict.UNSUPPORTED:  # as unsigned (RFC 4035 5.2)
            return ZoneKeys(INSECURE, expires=run.now + min(3600, self.cache.max_ttl))
        raise Failure(EDE(int(checked.verdict)), checked.why or f"DNSKEY of {zone} bogus")

    def _delegate(self, referral: Classified, zone: str, keys: ZoneKeys,
                  addresses: list[str], ttl: int, run: _Run) -> Steps[ZoneKeys]:
        """The child's standing from a referral: insecure under an insecure parent or
        with a proven absence of DS; else its DNSKEYs validated by the signed DS."""
        child = referral.zone
        if keys.state != SECURE or referral.response is None:
            return self._store_keys(child, ZoneKeys(INSECURE, expires=run.now + ttl))
        try:
            state, ds, ds_ttl = validate.check_referral(referral.response, child, zone,
                                                        keys.keys, self._wall())
        except Bogus as exc:
            raise Failure(EDE(int(exc.verdict)), exc.why) from None
        if state == INSECURE:
            return self._store_keys(child, ZoneKeys(INSECURE, expires=run.now + ttl))
        child_keys = yield from self._fetch_keys(child, addresses, list(ds), run)
        child_keys.expires = min(child_keys.expires, run.now + max(ds_ttl, 1))
        return self._store_keys(child, child_keys)

    def _cut_at(self, child: str, zone: str, keys: ZoneKeys, servers: list[str],
                run: _Run) -> Steps[ZoneKeys]:
        """The standing of a zone cut found inside `zone` (same servers): its DS asked of
        them and validated with the parent's keys, then its DNSKEYs; or proven none."""
        known = self._known_keys(child, run.now)
        if known is not None:
            return known
        outcome = yield from self._ask(zone, servers, child, DS, run)
        now = run.now
        ttl = self.cache.max_ttl
        if outcome.response is None:
            raise Failure(EDE.DNSKEY_MISSING, f"no DS answer for {child}")
        try:
            if outcome.kind is Kind.ANSWER:
                ttl = validate.check_answer(outcome.response, child, DS, zone, keys.keys,
                                            self._wall())
                ds = [Ds.parse(rr.rdata) for rr in outcome.answer if rr.rtype == DS]
                if not any(d.usable for d in ds):
                    found = ZoneKeys(INSECURE, expires=now + min(ttl, 3600))
                else:
                    found = yield from self._fetch_keys(child, servers, list(ds), run)
                    found.expires = min(found.expires, now + max(ttl, 1))
            elif outcome.kind is Kind.NODATA:
                validate.check_negative(outcome.response, child, DS, zone, keys.keys,
                                        self._wall(), nxdomain=False)
                found = ZoneKeys(INSECURE, expires=now + min(ttl, 3600))
            else:
                raise Failure(EDE.DNSSEC_BOGUS, f"no DS and no proof of none for {child}")
        except (Bogus, BadRecord) as exc:
            raise Failure(EDE(int(getattr(exc, "verdict", Verdict.BOGUS))), str(exc)) \
                from None
        self.delegations[child] = (found.expires, servers)
        return self._store_keys(child, found)

    def _validate(self, outcome: Classified, qname: str, qtype: int, zone: str,
                  keys: ZoneKeys | None, now: float) -> None:
        """Check an answer from a secure zone: `outcome.secure`, TTLs capped by the
        signatures; a bogus one is remembered a while and fails (SERVFAIL, its EDE)."""
        if keys is None or keys.state != SECURE or outcome.response is None:
            return
        try:
            if outcome.kind in (Kind.ANSWER, Kind.CNAME):
                ttl = validate.check_answer(outcome.response, qname, qtype, zone, keys.keys,
                                            self._wall())
                outcome.answer = [rr.with_ttl(min(rr.ttl, ttl)) for rr in outcome.answer]
                owners = {rr.name for rr in outcome.answer}
                if outcome.cname is not None:
                    outcome.cname = outcome.cname.with_ttl(min(outcome.cname.ttl, ttl))
                    owners.add(outcome.cname.name)
                outcome.signatures = [rr.with_ttl(min(rr.ttl, ttl))
                                      for rr in outcome.response.answer
                                      if rr.rtype == RRSIG and rr.name in owners]
                # a wildcard expansion's proof that the name itself does not exist
                outcome.proofs = [rr.with_ttl(min(rr.ttl, ttl)) for rr in
                                  validate.denial_records(outcome.response, zone, ())]
                outcome.secure = True
            elif outcome.kind in (Kind.NXDOMAIN, Kind.NODATA):
                state = validate.check_negative(outcome.response, qname, qtype, zone,
                                                keys.keys, self._wall(),
                                                nxdomain=outcome.kind is Kind.NXDOMAIN)
                outcome.secure = state == SECURE
                outcome.proofs = validate.denial_records(outcome.response, zone, (SOA,))
        except Bogus as exc:
            self.bogus[(qname, qtype)] = (now + BOGUS_TTL, int(exc.verdict), exc.why)
            if len(self.bogus) > MAX_ZONE_KEYS:
                self.bogus.pop(next(iter(self.bogus)))
            raise Failure(EDE(int(exc.verdict)), exc.why) from None

    def _still_bogus(self, name: str, qtype: int, now: float) -> None:
        entry = self.bogus.get((name, qtype))
        if entry is None:
            return
        if entry[0] <= now:
            del self.bogus[(name, qtype)]
            return
        raise Failure(EDE(entry[1]), entry[2])

    def _wall(self) -> float:
        assert self.wall_clock is not None
        return self.wall_clock()

    # --- asking one zone's servers ---

    def _order(self, servers: list[str], now: float) -> list[str]:
        if len(servers) == 1:
            return servers  # nothing to choose (dead or not, it is the only one)
        alive = [s for s in servers if self.dead_until.get(s, 0) <= now]
        # unknown servers get a small random RTT so each is tried before settling
        return sorted(alive or servers,
                      key=lambda s: self.srtt.get(s, 0.05 + self.random() * 0.01))

    def _ask(self, zone: str, servers: list[str], name: str, qtype: int,
             run: _Run) -> Steps[Classified]:
        problems: list[str] = []
        for server in self._order(servers, run.now):
            if not self._may_query(server):
                problems.append(f"{server}: private address (query_private_authorities is off)")
                continue
            t0 = run.now
            response = yield from self._query(server, self.port, name, qtype, False, run)
            if response is None:
                self._penalise(server, run.now)
                problems.append(f"{server}: {run.error}")
                continue
            rtt = run.now - t0
            self._forget_servers_if_too_many()
            old = self.srtt.get(server)
            self.srtt[server] = rtt if old is None else 0.7 * old + 0.3 * rtt
            try:
                outcome = classify(response, name, qtype, zone)
            except dnsmsg.FormatError as exc:  # in a section parsed only now
                problems.append(f"{server}: malformed answer: {exc}")
                continue
            outcome.response = response
            if self.on_step is not None:
                self.on_step(zone, server, name, qtype, outcome)
            if outcome.kind is Kind.LAME:
                problems.append(f"{server}: lame for {zone} ({outcome.why})")
                continue
            return outcome
        code = EDE.PROHIBITED if problems and all("private" in p for p in problems) \
            else EDE.NO_REACHABLE_AUTHORITY
        raise Failure(code, f"no reachable authority for {zone}: " + "; ".join(problems))

    def _may_query(self, server: str) -> bool:
        return self.query_private_authorities or not _is_private(server)

    def _forget_servers_if_too_many(self) -> None:
        if len(self.srtt) > MAX_SERVERS:
            self.srtt.clear()
            self.dead_until.clear()

    def _penalise(self, server: str, now: float) -> None:
        # a server that timed out is skipped for a while (Unbound: "infra-host-ttl")
        self.srtt[server] = max(self.srtt.get(server, 0.1) * 2, self.server_timeout)
        self.dead_until[server] = now + 60

    def _query(self, server: str, port: int, name: str, qtype: int, rd: bool,
               run: _Run) -> Steps[Message | None]:
        """Ask one server: the parsed answer, or None with `run.error` saying why. Waits
        are cut to what is left of the resolution's time; when that is gone, Failure."""
        left = self._time_left(run)
        exchange = yield Query(server, port, name, qtype, rd, min(self.server_timeout, left),
                               min(self.server_timeout * 2, left),
                               dnssec_ok=self.trust_anchors is not None)
        run.now = exchange.now
        if exchange.response is None:
            if exchange.timed_out:
                self._time_left(run)  # the whole resolution's time is up: say so
            run.error = exchange.error
        return exchange.response

