"""The recursive resolver's driver: iterates from the root hints over UDP (TCP when truncated).

The decisions (what a response means, what may be cached, what the cache holds)
are in `proto/dns.py`; this module sends the queries, times them, picks servers
by smoothed RTT and applies the limits: a deadline per server and for the
whole resolution, CNAME chains of at most 16, referral and glueless depth.
Every failure comes back as SERVFAIL with an Extended DNS Error saying why.

Anti-spoofing: a fresh UDP socket per query (so a kernel-chosen random source
port), a random ID, and an answer is accepted only from the address asked
(connected socket) with the same ID and question.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dnslib import QTYPE, RCODE

from . import dnsexchange
from .proto import dnsmsg
from .proto.dns import (
    EDE,
    Cache,
    Classified,
    Kind,
    classify,
    in_bailiwick,
    minimised,
    name_key,
    parse_root_hints,
)
from .proto.dnsmsg import Message, Record

log = logging.getLogger("netkit.resolver")

MAX_CNAME_CHAIN = 16
MAX_REFERRALS = 30
MAX_GLUELESS_DEPTH = 4
MAX_DELEGATIONS = 50_000  # zone cuts remembered (the oldest go first)
MAX_SERVERS = 100_000  # authorities with an RTT on record before the table starts over
MAX_MINIMISE_STEPS = 10  # RFC 9156 section 2.3: MAX_MINIMISE_COUNT
EDNS_SIZE = 1232  # DNS flag day 2020: avoids IP fragmentation
STALE_TTL = 30  # RFC 8767 section 4: the TTL of a stale answer


@dataclass
class Result:
    rcode: int
    answer: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    ede: tuple[int, str] | None = None


class Failure(Exception):
    """Resolution failed; carries the EDE code and text for the SERVFAIL."""

    def __init__(self, code: EDE, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


@functools.lru_cache(maxsize=4096)
def _is_private(server: str) -> bool:
    addr = ipaddress.ip_address(server)
    return addr.is_private or addr.is_loopback or addr.is_link_local


class Resolver:
    def __init__(self, *, root_hints: str, cache: Cache, port: int = 53,
                 server_timeout: float = 0.8, total_timeout: float = 5.0,
                 query_private_authorities: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | _UrandomBits | None = None,
                 on_step: Callable[[str, str, str, int, Classified], None] | None = None,
                 qname_minimisation: bool = True,
                 use_caps_for_id: bool = False,
                 forwards: dict[str, list[tuple[str, int]]] | None = None,
                 ) -> None:
        self.hints = parse_root_hints(root_hints)
        self.cache = cache
        self.port = port
        self.server_timeout = server_timeout
        self.total_timeout = total_timeout
        self.query_private_authorities = query_private_authorities
        self.clock = clock
        self.rng = rng or _UrandomBits()
        self.srtt: dict[str, float] = {}
        self.dead_until: dict[str, float] = {}
        self.delegations: dict[str, tuple[float, list[str]]] = {}
        self._inflight: dict[tuple[str, int], asyncio.Future[Result]] = {}
        self.upstream_queries = 0
        self.on_step = on_step  # (zone, server, name, qtype, outcome): `+trace` prints these
        self.qname_minimisation = qname_minimisation
        self.use_caps_for_id = use_caps_for_id
        self.forwards = {name_key(z): s for z, s in (forwards or {}).items()}

    # --- public ---

    async def resolve(self, qname: str, qtype: int) -> Result:
        """Resolve, coalescing identical concurrent questions into one resolution."""
        key = (name_key(qname), qtype)
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._resolve_with_deadline(key[0], qtype)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[key]

    async def _resolve_with_deadline(self, qname: str, qtype: int) -> Result:
        # the deadline is passed down and every wait is cut to it (no timer of its own:
        # one less per resolution on the cold path)
        deadline = self.clock() + self.total_timeout
        try:
            return await self._resolve(qname, qtype, 0, set(), deadline)
        except Failure as exc:
            failed = Result(RCODE.SERVFAIL, ede=(exc.code, exc.text))
        return self._stale(qname, qtype, failed) or failed

    def _time_left(self, deadline: float) -> float:
        left = deadline - self.clock()
        if left <= 0:
            raise Failure(EDE.NO_REACHABLE_AUTHORITY,
                          f"no answer within {self.total_timeout} s")
        return left

    def _stale(self, qname: str, qtype: int, failed: Result) -> Result | None:
        """RFC 8767: when resolution fails, an expired answer beats none (TTL 30, EDE 3)."""
        if not self.cache.stale_for:
            return None
        now = self.clock()
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
                return Result(RCODE.NOERROR, chain + rrs, ede=ede)
            cname = self.cache.get_stale(name, QTYPE.CNAME, now) or \
                self.cache.get(name, QTYPE.CNAME, now)
            if cname is None:
                return None
            rr = cname.rrs[0]
            chain.append(rr.with_ttl(STALE_TTL))
            name = rr.target
        return None

    # --- the iteration ---

    async def _resolve(self, qname: str, qtype: int, depth: int,
                       resolving: set[tuple[str, int]], deadline: float) -> Result:
        chain: list[Record] = []
        name = qname
        seen = {name}
        for _ in range(MAX_CNAME_CHAIN + 1):
            forwarders = self._forwarders(name) if self.forwards else None
            if forwarders is not None:
                result = await self._forward(forwarders, name, qtype, deadline)
                result.answer[:0] = chain
                return result
            now = self.clock()
            hit = self.cache.get(name, qtype, now)
            if hit is not None:
                rrs = self.cache.with_ttls(hit, now)
                if hit.negative:
                    return Result(hit.rcode, chain, rrs)
                return Result(RCODE.NOERROR, chain + rrs)
            cached_cname = self.cache.get(name, QTYPE.CNAME, now) if qtype != QTYPE.CNAME \
                else None
            if cached_cname is not None:
                cname = self.cache.with_ttls(cached_cname, now)[0]
            else:
                outcome = await self._iterate(name, qtype, depth, resolving, deadline)
                if outcome.kind is not Kind.CNAME:
                    if outcome.kind is Kind.ANSWER:
                        return Result(RCODE.NOERROR, chain + outcome.answer)
                    rcode = RCODE.NXDOMAIN if outcome.kind is Kind.NXDOMAIN else RCODE.NOERROR
                    return Result(rcode, chain, [outcome.soa] if outcome.soa else [])
                cname = outcome.cname
                assert cname is not None
                chain.extend(outcome.answer)  # a DNAME that synthesised the CNAME
            chain.append(cname)
            name = cname.target
            if name in seen:
                raise Failure(EDE.INVALID_DATA, f"CNAME loop at {name}")
            seen.add(name)
        raise Failure(EDE.INVALID_DATA, f"CNAME chain longer than {MAX_CNAME_CHAIN}")

    async def _iterate(self, name: str, qtype: int, depth: int,
                       resolving: set[tuple[str, int]], deadline: float) -> Classified:
        zone, servers = self._closest(name)
        extra = 1  # labels below the zone cut that the next minimised question reveals
        for _ in range(MAX_REFERRALS + MAX_MINIMISE_STEPS):
            ask = minimised(name, zone, extra) if self.qname_minimisation else name
            outcome = await self._ask(zone, servers, ask, qtype if ask == name else QTYPE.A,
                                      deadline)
            now = self.clock()
            if ask != name and outcome.kind is not Kind.REFERRAL:
                if outcome.kind is Kind.NXDOMAIN:
                    # RFC 8020: nothing exists below a name that does not exist
                    self.cache.put_negative(name, qtype, RCODE.NXDOMAIN, outcome.soa, now)
                    return outcome
                extra += 1  # the name exists here (or is an empty non-terminal): go deeper
                continue
            if outcome.kind is Kind.ANSWER:
                self.cache.put(name, qtype, outcome.answer, now)
                return outcome
            if outcome.kind is Kind.CNAME:
                assert outcome.cname is not None
                self.cache.put(name, QTYPE.CNAME, [outcome.cname], now)
                return outcome
            if outcome.kind in (Kind.NXDOMAIN, Kind.NODATA):
                rcode = RCODE.NXDOMAIN if outcome.kind is Kind.NXDOMAIN else RCODE.NOERROR
                self.cache.put_negative(name, qtype, rcode, outcome.soa, now)
                return outcome
            # a referral: find the new zone's servers' addresses, with glue or without
            addresses = [a for n in outcome.ns_names for a in outcome.glue.get(n, [])]
            if not addresses:
                addresses = await self._glueless(outcome, depth, resolving, deadline)
            if not addresses:
                raise Failure(EDE.NO_REACHABLE_AUTHORITY,
                              f"no address for any server of {outcome.zone} "
                              f"({', '.join(outcome.ns_names)})")
            ttl = min(outcome.ttl, self.cache.max_ttl)
            self.delegations[outcome.zone] = (now + ttl, addresses)
            if len(self.delegations) > MAX_DELEGATIONS:  # bounded like every other table
                self.delegations.pop(next(iter(self.delegations)))
            zone, servers, extra = outcome.zone, addresses, 1
        raise Failure(EDE.OTHER, f"more than {MAX_REFERRALS} referrals for {name}")

    async def _forward(self, servers: list[tuple[str, int]], name: str, qtype: int,
                       deadline: float) -> Result:
        """A forward zone: ask its servers to recurse (RD=1) and take their answer."""
        problems = []
        for host, port in servers:
            try:
                response = await self._query(host, name, qtype, deadline, port=port, rd=True)
            except TimeoutError:
                self._time_left(deadline)  # the whole resolution's time is up: say so
                problems.append(f"{host}:{port}: timed out")
                continue
            except OSError as exc:
                problems.append(f"{host}:{port}: {exc.strerror or exc}")
                continue
            now = self.clock()
            if response.rcode == RCODE.SERVFAIL:
                problems.append(f"{host}:{port}: SERVFAIL")
                continue
            try:
                authority = response.authority
            except dnsmsg.FormatError as exc:
                problems.append(f"{host}:{port}: malformed answer: {exc}")
                continue
            groups: dict[tuple[str, int], list[Record]] = {}
            for rr in response.answer:
                groups.setdefault((rr.name, rr.rtype), []).append(rr)
            for (owner, rtype), rrs in groups.items():
                self.cache.put(owner, rtype, rrs, now)
            if not response.answer:
                soa = next((rr for rr in authority if rr.rtype == QTYPE.SOA), None)
                self.cache.put_negative(name, qtype, response.rcode, soa, now)
            return Result(response.rcode, list(response.answer), list(authority))
        raise Failure(EDE.NO_REACHABLE_AUTHORITY,
                      "no forwarder answered: " + "; ".join(problems))

    def _forwarders(self, name: str) -> list[tuple[str, int]] | None:
        best = None
        for zone, servers in self.forwards.items():
            if in_bailiwick(name, zone) and (best is None or len(zone) > len(best[0])):
                best = (zone, servers)
        return best[1] if best else None

    async def _glueless(self, referral: Classified, depth: int,
                        resolving: set[tuple[str, int]], deadline: float) -> list[str]:
        if depth >= MAX_GLUELESS_DEPTH:
            raise Failure(EDE.OTHER, f"glueless delegations nested deeper than "
                                     f"{MAX_GLUELESS_DEPTH} at {referral.zone}")
        for ns in referral.ns_names:
            key = (ns, QTYPE.A)
            if key in resolving:
                continue  # a delegation loop: this name is already being looked up
            try:
                result = await self._resolve(ns, QTYPE.A, depth + 1, resolving | {key},
                                             deadline)
            except Failure:
                continue
            found = [rr.address for rr in result.answer if rr.rtype == QTYPE.A]
            if found:
                return found
        return []

    def _closest(self, name: str) -> tuple[str, list[str]]:
        now = self.clock()
        labels = name.rstrip(".").split(".") if name != "." else []
        for i in range(len(labels)):
            zone = ".".join(labels[i:]) + "."
            entry = self.delegations.get(zone)
            if entry is not None and entry[0] > now:
                return zone, entry[1]
        return ".", [addr for _, addr in self.hints]

    # --- asking one zone's servers ---

    def _order(self, servers: list[str]) -> list[str]:
        now = self.clock()
        alive = [s for s in servers if self.dead_until.get(s, 0) <= now]
        # unknown servers get a small random RTT so each is tried before settling
        return sorted(alive or servers,
                      key=lambda s: self.srtt.get(s, 0.05 + random.random() * 0.01))

    async def _ask(self, zone: str, servers: list[str], name: str, qtype: int,
                   deadline: float) -> Classified:
        problems: list[str] = []
        for server in self._order(servers):
            if not self._may_query(server):
                problems.append(f"{server}: private address (query_private_authorities is off)")
                continue
            t0 = self.clock()
            try:
                response = await self._query(server, name, qtype, deadline)
            except TimeoutError:
                self._time_left(deadline)  # the whole resolution's time is up: say so
                self._penalise(server)
                problems.append(f"{server}: timed out")
                continue
            except OSError as exc:
                self._penalise(server)
                problems.append(f"{server}: {exc.strerror or exc}")
                continue
            rtt = self.clock() - t0
            self._forget_servers_if_too_many()
            old = self.srtt.get(server)
            self.srtt[server] = rtt if old is None else 0.7 * old + 0.3 * rtt
            try:
                outcome = classify(response, name, qtype, zone)
            except dnsmsg.FormatError as exc:  # in a section parsed only now
                problems.append(f"{server}: malformed answer: {exc}")
                continue
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

    def _penalise(self, server: str) -> None:
        # a server that timed out is skipped for a while (Unbound: "infra-host-ttl")
        self.srtt[server] = max(self.srtt.get(server, 0.1) * 2, self.server_timeout)
        self.dead_until[server] = self.clock() + 60

    async def _query(self, server: str, name: str, qtype: int, deadline: float, *,
                     port: int | None = None, rd: bool = False) -> Message:
        self.upstream_queries += 1
        port = port or self.port
        if self.use_caps_for_id:
            # draft-vixie-dnsext-dns0x20: every letter's case is one more random bit
            name = "".join(c.upper() if self.rng.random() < 0.5 else c.lower() for c in name)
        query = dnsmsg.encode_query(self.rng.getrandbits(16), name, qtype, rd=rd,
                                    edns_size=EDNS_SIZE)
        timeout = min(self.server_timeout, self._time_left(deadline))
        data = await dnsexchange.udp(server, port, query, timeout,
                                     exact_case=self.use_caps_for_id)
        response = _parse(data, server)
        if response.tc:
            timeout = min(self.server_timeout * 2, self._time_left(deadline))
            data = await dnsexchange.tcp(server, port, query, timeout)
            response = _parse(data, server)
        return response


class _UrandomBits:
    """Unpredictable query IDs and 0x20 bits (RFC 5452) from os.urandom, read 4 KiB at a
    time: SystemRandom makes a system call per ID."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def getrandbits(self, k: int) -> int:
        n = (k + 7) // 8
        if self._at + n > len(self._pool):
            self._pool, self._at = os.urandom(4096), 0
        value = int.from_bytes(self._pool[self._at:self._at + n], "big")
        self._at += n
        return value >> (n * 8 - k)

    def random(self) -> float:
        return self.getrandbits(53) / (1 << 53)


def _parse(data: bytes, server: str) -> Message:
    try:
        return dnsmsg.parse(data)
    except dnsmsg.FormatError as exc:  # counted like a server that did not answer
        raise OSError(f"malformed answer from {server}: {exc}") from None
