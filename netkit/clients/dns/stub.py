"""A stub resolver with dnspython's manners: it asks recursive servers, it does not recurse.

    records = await resolve("example.com", "MX", server="127.0.0.1:5300")
    for mx in sorted(records, key=lambda r: r.preference): print(mx.exchange)

    answer = await lookup("missing.example", server="127.0.0.1:5300")  # never raises
    answer.rcode                                                        # for an rcode

`resolve` raises NXDOMAIN, NoAnswer, NoNameservers or Timeout; `lookup` returns the
server's Answer whatever its rcode. Servers come from `server=` (tests always give it),
else `resolv_conf=` (default /etc/resolv.conf, with its search list, ndots, timeout,
attempts and rotate). Each question goes over UDP (a random ID and source port), to
TCP when the answer is truncated; a server that times out, fails (SERVFAIL, REFUSED)
or sends nonsense makes the next one be asked, `attempts` rounds in all, within
`lifetime` seconds.
"""

from __future__ import annotations

import functools
import ipaddress
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from dnslib import CLASS, EDNS0, QTYPE, RCODE, DNSQuestion, DNSRecord

from ...config import Address
from ...errors import (
    NXDOMAIN,
    ConnectError,
    NetkitError,
    NoAnswer,
    NoNameservers,
    ResolveTimeout,
)
from ...transport.dns_exchange import DNSExchange
from ...transport.errors import CONNECTION_LOST, describe
from ..background import portal
from . import resolvconf
from .rdata import RData, typed

_rng = random.SystemRandom()
_FAILURES = {"SERVFAIL", "REFUSED", "NOTIMP", "FORMERR"}


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record: `data` as zone text, `rdata` typed (rdata.py)."""

    name: str
    type: str
    ttl: int
    data: str
    rdata: RData


@dataclass(frozen=True, slots=True)
class Answer:
    """A server's answer: rcode name ("NOERROR", "NXDOMAIN" ...), sections, who said it."""

    rcode: str
    records: tuple[Record, ...]
    authority: tuple[Record, ...]
    additional: tuple[Record, ...]
    server: str
    tcp: bool
    message: DNSRecord
    qname: str = ""
    qtype: str = ""
    wire: bytes = b""  # the answer as it came
    transport: str = "UDP"  # "UDP", "TCP", "TLS" (DoT) or "HTTPS" (DoH)

    @property
    def size(self) -> int:
        return len(self.wire)

    @property
    def flags(self) -> set[str]:
        h = self.message.header
        return {f for f, on in (("qr", h.qr), ("aa", h.aa), ("tc", h.tc), ("rd", h.rd),
                                ("ra", h.ra), ("ad", h.ad), ("cd", h.cd)) if on}

    @property
    def min_ttl(self) -> int:
        ttls = [r.ttl for r in self.records]
        if not ttls:  # negative: the SOA's TTL, capped by its minimum (RFC 2308 5)
            ttls = [min(r.ttl, getattr(r.rdata, "minimum", r.ttl)) for r in self.authority
                    if r.type == "SOA"]
        return min(ttls, default=0)


class Records(tuple):  # type: ignore[type-arg]
    """The records `resolve` found: typed rdata, in the order the server gave them, with
    `name` (asked), `canonical_name` (after CNAMEs), `ttl` (the lowest) and `answer`."""

    name: str
    canonical_name: str
    ttl: int
    answer: Answer

    def __new__(cls, items: Iterable[RData], *, name: str, canonical_name: str, ttl: int,
                answer: Answer) -> Records:
        self = super().__new__(cls, items)
        self.name, self.canonical_name, self.ttl, self.answer = name, canonical_name, ttl, \
            answer
        return self


class StubCache:
    """Answers by (name, type, class) until their TTL runs out (the lowest in the answer;
    a negative answer's from its SOA), at most `max_entries`, least recently used out."""

    def __init__(self, max_entries: int = 1000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str, str], tuple[float, Answer]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: tuple[str, str, str], now: float) -> Answer | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            self._entries.pop(key, None)
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: tuple[str, str, str], answer: Answer, now: float) -> None:
        if answer.rcode not in ("NOERROR", "NXDOMAIN") or answer.min_ttl <= 0:
            return
        self._entries[key] = (now + answer.min_ttl, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def _records(rrs: list) -> tuple[Record, ...]:
    return tuple(Record(str(rr.rname), QTYPE.get(rr.rtype), rr.ttl, rr.rdata.toZone(),
                        typed(rr)) for rr in rrs if rr.rtype != 41)  # OPT is not a record


def _parse(data: bytes) -> DNSRecord:
    try:
        return DNSRecord.parse(data)
    except Exception as exc:  # dnslib raises many kinds on garbage
        raise OSError(f"malformed answer: {exc}") from None


def reverse_name(address: str) -> str:
    """The PTR name of an address: 192.0.2.1 -> 1.2.0.192.in-addr.arpa."""
    return ipaddress.ip_address(address).reverse_pointer + "."


Server = str | Address | tuple[str, int]


def _is_pair(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int)


def _address(server: Server, port: int) -> Address:
    if isinstance(server, Address):
        return server
    if isinstance(server, tuple):
        return Address(server[0], server[1])
    try:
        return Address.parse(server, default_port=port)
    except ValueError:
        raise ValueError(f"not a server address: {server!r}") from None


class Resolver:
    """Where and how to ask. `server` (one or a list of "host[:port]", IPv6 in brackets, or
    (host, port) pairs)
    overrides the servers of `resolv_conf`; the search list applies only to names with
    fewer than `ndots` dots and no trailing dot.

    Transports: UDP (TCP when truncated), `tcp=True`, `tls=True` (DNS over TLS, RFC 7858,
    port 853) or `https=True` (DNS over HTTPS, RFC 8484, POST to /dns-query on port 443;
    a path instead of True for another). `verify` as for the HTTP client: True (the
    system's CAs), a CA file, an SSLContext, or False; `tls_hostname` the name the
    certificate must carry (default: the server as given)."""

    def __init__(self, server: Server | Iterable[Server] | None = None, *,
                 resolv_conf: str | Path | None = None, port: int | None = None,
                 timeout: float | None = None, attempts: int | None = None,
                 lifetime: float | None = None, search: Iterable[str] | None = None,
                 ndots: int | None = None, tcp: bool = False, recurse: bool = True,
                 cache: StubCache | bool = False, tls: bool = False,
                 https: bool | str = False, verify: bool | str | Path | ssl.SSLContext = True,
                 tls_hostname: str | None = None, dnssec: bool = False,
                 cd: bool = False) -> None:
        self.tls, self.verify, self.tls_hostname = tls, verify, tls_hostname
        self.dnssec, self.cd = dnssec, cd  # the DO bit (signatures too), checking disabled
        self.https_path = (https if isinstance(https, str) else "/dns-query") if https \
            else ""
        if port is None:
            port = 443 if https else 853 if tls else 53
        conf = resolvconf.load(resolv_conf or resolvconf.DEFAULT_PATH) \
            if server is None or resolv_conf is not None else resolvconf.ResolvConf()
        given = conf.nameservers if server is None else \
            [server] if isinstance(server, str | Address) or _is_pair(server) else list(server)
        self.servers = [_address(s, port) for s in given]
        if server is None and port != 53:
            self.servers = [Address(s.host, port) for s in self.servers]
        self.timeout = timeout if timeout is not None else conf.timeout
        self.attempts = attempts if attempts is not None else conf.attempts
        self.lifetime = lifetime
        self.search = tuple(search) if search is not None else \
            conf.search if server is None or resolv_conf is not None else ()
        self.ndots = ndots if ndots is not None else conf.ndots
        self.rotate = conf.rotate
        self.tcp, self.recurse = tcp, recurse
        self.cache = StubCache() if cache is True else cache or None

    def candidates(self, name: str) -> list[str]:
        """The names to try, in order (resolv.conf(5): absolute first with ndots dots)."""
        if name.endswith(".") or not self.search:
            return [name.rstrip(".") + "."]
        searched = [f"{name}.{domain}." for domain in self.search]
        absolute = name + "."
        return [absolute, *searched] if name.count(".") >= self.ndots else \
            [*searched, absolute]

    async def lookup(self, name: str, rdtype: str = "A", *, rdclass: str = "IN",
                     tcp: bool | None = None) -> Answer:
        """The server's answer for the first candidate name with a NOERROR answer; else a
        failed answer (SERVFAIL, REFUSED) if there was one, else the last NXDOMAIN. Raises
        only when no server answered at all (Timeout, ConnectError)."""
        with anyio.move_on_after(self.lifetime):
            failed = answer = None
            for candidate in self.candidates(name):
                answer = await self._ask(candidate, rdtype.upper(), rdclass.upper(),
                                         self.tcp if tcp is None else tcp)
                if answer.rcode == "NOERROR":
                    return answer
                if answer.rcode != "NXDOMAIN":
                    failed = answer  # glibc's habit: the search goes on, the failure counts
            return failed or answer  # type: ignore[return-value]
        raise ResolveTimeout(f"no answer for {name} {rdtype} within {self.lifetime} s")

    async def resolve(self, name: str, rdtype: str = "A", *, rdclass: str = "IN",
                      tcp: bool | None = None) -> Records:
        """The records of that type for the name (CNAMEs followed within the answer)."""
        answer = await self.lookup(name, rdtype, rdclass=rdclass, tcp=tcp)
        rdtype = rdtype.upper()
        if answer.rcode == "NXDOMAIN":
            tried = self.candidates(name)
            raise NXDOMAIN(f"{', '.join(tried)}: no such name ({answer.server})", names=tried)
        if answer.rcode != "NOERROR":
            raise NoNameservers(f"{answer.qname} {rdtype}: {answer.rcode} from every server "
                                f"(last: {answer.server})")
        owner = answer.qname.lower()
        if rdtype not in ("CNAME", "ANY"):
            for _ in range(16):  # a CNAME chain inside the answer, loops cut
                cname = next((r for r in answer.records if r.type == "CNAME" and
                              r.name.lower() == owner), None)
                if cname is None:
                    break
                owner = cname.data.lower()
        found = [r for r in answer.records if r.name.lower() == owner and
                 (rdtype == "ANY" or r.type == rdtype)]
        if not found:
            raise NoAnswer(f"{answer.qname} has no {rdtype} records ({answer.server})")
        canonical = next(r.name for r in found)
        return Records((r.rdata for r in found), name=answer.qname, canonical_name=canonical,
                       ttl=min(r.ttl for r in found), answer=answer)

    async def reverse(self, address: str) -> Records:
        """The PTR records of an address (dnspython's resolve_address)."""
        return await self.resolve(reverse_name(address), "PTR")

    def lookup_sync(self, name: str, rdtype: str = "A", **kw: Any) -> Answer:
        return portal().call(functools.partial(self.lookup, name, rdtype, **kw))

    def resolve_sync(self, name: str, rdtype: str = "A", **kw: Any) -> Records:
        return portal().call(functools.partial(self.resolve, name, rdtype, **kw))

    def reverse_sync(self, address: str) -> Records:
        return portal().call(self.reverse, address)

    # --- one question, each server in turn ---

    def _context(self) -> ssl.SSLContext:
        verify = self.verify
        if isinstance(verify, ssl.SSLContext):
            return verify
        if verify is False:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cafile=None if verify is True else str(verify))
        ctx.set_alpn_protocols(["dot"])
        return ctx

    async def _https(self, address: Address, query: bytes) -> bytes:
        """POST the query to https://SERVER/dns-query (RFC 8484 4.1)."""
        from ..http.client import Client
        host = self.tls_hostname or address.host
        host = f"[{host}]" if ":" in host else host
        async with Client(verify=self.verify, timeout=self.timeout,
                          follow_redirects=False) as client:
            r = await client.post(f"https://{host}:{address.port}{self.https_path}",
                                  content=query,
                                  headers={"content-type": "application/dns-message",
                                           "accept": "application/dns-message"})
        if r.status_code != 200 or r.headers.get("content-type", "").split(";")[0] != \
                "application/dns-message":
            raise ConnectError(f"DNS over HTTPS: HTTP {r.status_code}")
        return r.content

    async def _ask(self, qname: str, rdtype: str, rdclass: str, tcp: bool) -> Answer:
        key = (qname.lower(), rdtype, rdclass)
        if self.cache is not None:
            cached = self.cache.get(key, time.monotonic())
            if cached is not None:
                return cached
        qtype = getattr(QTYPE, rdtype, None)
        if qtype is None:
            raise ValueError(f"unknown record type {rdtype!r}")
        request = DNSRecord(q=DNSQuestion(qname, qtype, getattr(CLASS, rdclass)))
        request.header.id = _rng.randrange(65536)
        request.header.rd = int(self.recurse)
        request.header.cd = int(self.cd)
        request.add_ar(EDNS0(udp_len=1232, flags="do" if self.dnssec else ""))
        query = request.pack()
        servers = list(self.servers)
        if self.rotate:
            _rng.shuffle(servers)
        upstream = DNSExchange()
        problems: list[tuple[str, str]] = []
        failed: Answer | None = None
        try:
            for _ in range(self.attempts):
                for address in servers:
                    try:
                        used_tcp = tcp
                        transport = "TCP" if tcp else "UDP"
                        if self.https_path:
                            used_tcp, transport = True, "HTTPS"
                            raw = await self._https(address, query)
                        elif self.tls:
                            used_tcp, transport = True, "TLS"
                            raw = await upstream.tcp(address.host, address.port, query,
                                                     self.timeout, tls=self._context(),
                                                     server_hostname=self.tls_hostname)
                        else:
                            exchange = upstream.tcp if tcp else upstream.udp
                            raw = await exchange(address.host, address.port, query,
                                                 self.timeout)
                        msg = _parse(raw)
                        if msg.header.tc and not used_tcp:
                            used_tcp, transport = True, "TCP"
                            raw = await upstream.tcp(address.host, address.port, query,
                                                     self.timeout)
                            msg = _parse(raw)
                    except TimeoutError:
                        problems.append((str(address), "timed out"))
                        continue
                    except (*CONNECTION_LOST, NetkitError) as exc:
                        problems.append((str(address), describe(exc)))
                        continue
                    answer = Answer(RCODE.get(msg.header.rcode), _records(msg.rr),
                                    _records(msg.auth), _records(msg.ar), str(address),
                                    used_tcp, msg, qname, rdtype, raw, transport)
                    if answer.rcode in _FAILURES:
                        failed = answer  # another server may do better
                        problems.append((str(address), answer.rcode))
                        continue
                    if self.cache is not None:
                        self.cache.put(key, answer, time.monotonic())
                    return answer
        finally:
            upstream.close()
        if failed is not None:
            return failed
        if all(why == "timed out" for _, why in problems):
            raise ResolveTimeout(f"no answer for {qname} {rdtype}: " +
                                 "; ".join(f"{a}: {w}" for a, w in problems))
        raise ConnectError(f"no answer for {qname} {rdtype}", problems)


def _resolver(kw: dict[str, Any]) -> Resolver:
    keys = ("server", "resolv_conf", "port", "timeout", "attempts", "lifetime", "search",
            "ndots", "tcp", "recurse", "cache", "tls", "https", "verify", "tls_hostname",
            "dnssec", "cd")
    return Resolver(**{k: kw.pop(k) for k in keys if k in kw})


async def lookup(name: str, rdtype: str = "A", **kw: Any) -> Answer:
    """`Resolver(**options).lookup(name, rdtype)`: the Answer, whatever its rcode."""
    return await _resolver(kw).lookup(name, rdtype, **kw)


async def resolve(name: str, rdtype: str = "A", **kw: Any) -> Records:
    """`Resolver(**options).resolve(name, rdtype)`: the records, or NXDOMAIN, NoAnswer,
    NoNameservers, Timeout."""
    return await _resolver(kw).resolve(name, rdtype, **kw)


async def reverse(address: str, **kw: Any) -> Records:
    return await _resolver(kw).reverse(address)


def lookup_sync(name: str, rdtype: str = "A", **kw: Any) -> Answer:
    return portal().call(functools.partial(lookup, name, rdtype, **kw))


def resolve_sync(name: str, rdtype: str = "A", **kw: Any) -> Records:
    return portal().call(functools.partial(resolve, name, rdtype, **kw))


def reverse_sync(address: str, **kw: Any) -> Records:
    return portal().call(functools.partial(reverse, address, **kw))
