"""The DNS server's policy, without sockets or clocks: who may ask (the ACL), how fast
(a token bucket per client, fed the time), and what is answered locally instead of
being resolved. Local answers, in this order of precedence:

1. configured `[[dns.local]]` records (a LAN's own names and PTRs always win);
1b. `[[dns.zone]]` zones, answered as their authority would (`zones.py`); with
   recursion off, everything outside them is REFUSED and nothing below applies;
2. names in a `[[dns.forward]]` zone are not answered here (the forwarders say);
3. built-in zones, as Unbound serves them: ANY gets RFC 8482's small answer;
   localhost and its addresses' PTRs (127.0.0.1, ::1); the locally-served zones of
   RFC 6761 and RFC 6303 (private and special reverse zones, invalid., test., onion.)
   get an authoritative NXDOMAIN, never sent upstream; version.bind and id.server in
   class CH are refused unless `identity`/`version` are set.

The server asks `Policy` before anything else; a reload builds a new one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from dnslib import QTYPE, RD, RR, TXT, DNSRecord

from ...errors import ConfigError
from ..addresses import in_networks
from .message import ANY
from .names import in_bailiwick, name_key
from .zones import ZoneDataError, ZoneSet, record
from .zones import reply as zone_reply

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: RFC 6761/6303 (and Unbound's defaults): never sent upstream, answered NXDOMAIN here
LOCALLY_SERVED = frozenset(name_key(z) for z in (
    "invalid", "test", "onion",
    "0.in-addr.arpa", "127.in-addr.arpa", "10.in-addr.arpa", "168.192.in-addr.arpa",
    *(f"{n}.172.in-addr.arpa" for n in range(16, 32)),
    "254.169.in-addr.arpa", "2.0.192.in-addr.arpa", "100.51.198.in-addr.arpa",
    "113.0.203.in-addr.arpa", "255.255.255.255.in-addr.arpa",
    "0." * 32 + "ip6.arpa", "d.f.ip6.arpa", "8.e.f.ip6.arpa", "9.e.f.ip6.arpa",
    "a.e.f.ip6.arpa", "b.e.f.ip6.arpa", "8.b.d.0.1.0.0.2.ip6.arpa"))
LOCALHOST_PTRS = frozenset((name_key("1.0.0.127.in-addr.arpa"),
                            name_key("1." + "0." * 31 + "ip6.arpa")))
_LOCAL_TLDS = frozenset(("arpa", "invalid", "test", "onion", "localhost"))
CHAOS_NAMES = {name_key("version.bind"): "version", name_key("version.server"): "version",
               name_key("id.server"): "identity", name_key("hostname.bind"): "identity"}
CH = 3

MAX_VERDICTS = 10_000  # client addresses whose ACL verdict is remembered
MAX_BUCKETS = 100_000  # clients with a rate bucket: a flood of spoofed sources cannot grow it


def local_records(records: Iterable[Any]) -> dict[tuple[str, int], list[RR]]:
    """Configured local records (name, type, value, ttl) by (name, type); ConfigError names
    the first one that does not parse."""
    local: dict[tuple[str, int], list[RR]] = {}
    for i, rec in enumerate(records):
        try:
            rr = record(rec.name, rec.type, rec.value, rec.ttl)
        except ZoneDataError as exc:
            raise ConfigError([f"dns.local[{i}]: cannot parse {rec.type} {rec.value!r}: "
                               f"{exc}"]) from None
        local.setdefault((name_key(rr.rname), rr.rtype), []).append(rr)
    return local


class Policy:
    """ACL, rate limit and local answers for one configuration."""

    def __init__(self, *, allow: Iterable[Network], rate_limit: float = 0.0,
                 rate_burst: int = 20, local: Iterable[Any] = (),
                 forward_zones: Iterable[str] = (), identity: str = "",
                 version: str = "", zones: ZoneSet | None = None,
                 recursion: bool = True, nodefault: Iterable[str] = ()) -> None:
        self.allow = tuple(allow)
        self.zones = zones if zones is not None else ZoneSet()
        self.recursion = recursion
        self.forward_zones = tuple(name_key(z) for z in forward_zones)
        self.nodefault = frozenset(name_key(z) for z in nodefault)  # resolved after all
        self.chaos = {"identity": identity, "version": version}
        self.rate_limit = rate_limit
        self.rate_burst = float(rate_burst)
        self.local = local_records(local)
        self.local_names = {n for n, _ in self.local}
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last time)
        self._verdicts: dict[str, bool] = {}

    def allowed(self, host: str) -> bool:
        """`host` (an address, possibly with a %scope) is in `allow`."""
        return in_networks(host, self.allow)

    def allowed_cached(self, host: str) -> bool:
        """`allowed`, remembered per address (bounded: cleared when it grows large)."""
        verdict = self._verdicts.get(host)
        if verdict is None:
            if len(self._verdicts) >= MAX_VERDICTS:
                self._verdicts.clear()
            verdict = self._verdicts[host] = self.allowed(host)
        return verdict

    def over_rate(self, client: str, now: float) -> bool:
        """Token bucket per client address; True means drop this query (Unbound:
        ip-ratelimit). `rate_burst` queries at once, then `rate_limit` a second."""
        rate = self.rate_limit
        if not rate:
            return False
        burst = self.rate_burst
        tokens, last = self.buckets.get(client, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            return True
        if len(self.buckets) >= MAX_BUCKETS:
            self.buckets.clear()
        self.buckets[client] = (tokens - 1, now)
        return False

    def maybe_local(self, qname: bytes, name: str, qtype: int) -> bool:
        """A plain query (wire name and key-form name) that a local answer may serve."""
        return qtype == ANY or name in self.local_names or \
            name.rsplit(".", 2)[-2] in _LOCAL_TLDS or not self.recursion or \
            (bool(self.zones) and self.zones.find(name) is not None)

    def _forwarded(self, name: str) -> bool:
        return any(in_bailiwick(name, zone) for zone in self.forward_zones)

    def _served_zone(self, name: str) -> str | None:
        """The locally-served zone `name` is in (RFC 6761/6303), or None."""
        if name.rsplit(".", 2)[-2] not in _LOCAL_TLDS:
            return None
        labels = name.split(".")
        for i in range(len(labels) - 1):
            zone = ".".join(labels[i:])
            if zone in LOCALLY_SERVED:
                return zone if zone not in self.nodefault else None
        return None

    def answer_locally(self, request: DNSRecord) -> DNSRecord | None:
        """The local answer to `request`, or None when it is to be resolved."""
        q = request.q
        qn = name_key(q.qname)
        if q.qclass == CH:
            return self._chaos(request, qn)
        if qn in self.local_names:
            r = reply_to(request, ra=self.recursion)
            r.header.aa = 1
            rrs = self.local.get((qn, q.qtype)) or self.local.get((qn, QTYPE.CNAME), [])
            r.add_answer(*rrs)
            return r
        if self.zones:
            found = self.zones.answer(q.qname, q.qtype)
            # with recursion on, a name delegated out of a zone is resolved, not referred
            if found is not None and not (self.recursion and found.authority and
                                          not found.aa):
                return zone_reply(request, found, ra=self.recursion)
        if not self.recursion:
            r = reply_to(request, ra=False)
            r.header.rcode = 5  # REFUSED: not one of our zones, and we do not recurse
            return r
        if q.qtype == QTYPE.ANY:
            # RFC 8482: a small answer instead of everything we hold
            r = reply_to(request, ra=self.recursion)
            r.add_answer(RR(q.qname, QTYPE.HINFO, ttl=3600, rdata=_hinfo()))
            return r
        if self.forward_zones and self._forwarded(qn):
            return None
        if in_bailiwick(qn, "localhost."):  # RFC 6761 6.3
            r = reply_to(request, ra=self.recursion)
            r.header.aa = 1
            if q.qtype == QTYPE.A:
                r.add_answer(*RR.fromZone(f"{qn} 86400 IN A 127.0.0.1"))
            elif q.qtype == QTYPE.AAAA:
                r.add_answer(*RR.fromZone(f"{qn} 86400 IN AAAA ::1"))
            return r
        if qn in LOCALHOST_PTRS:
            r = reply_to(request, ra=self.recursion)
            r.header.aa = 1
            if q.qtype in (QTYPE.PTR, QTYPE.ANY):
                r.add_answer(*RR.fromZone(f"{qn} 86400 IN PTR localhost."))
            return r
        zone = self._served_zone(qn)
        if zone is not None:
            r = reply_to(request, ra=self.recursion)
            r.header.aa = 1
            r.header.rcode = 3  # NXDOMAIN, with the zone's SOA for negative caching
            r.add_auth(*RR.fromZone(f"{zone} 10800 IN SOA localhost. nobody.invalid. "
                                    "1 3600 1200 604800 10800"))
            return r
        return None

    def _chaos(self, request: DNSRecord, qn: str) -> DNSRecord:
        """version.bind / id.server in class CH: refused unless configured."""
        r = reply_to(request, ra=self.recursion)
        what = CHAOS_NAMES.get(qn)
        text = self.chaos.get(what, "") if what else ""
        if not text or request.q.qtype not in (QTYPE.TXT, QTYPE.ANY):
            r.header.rcode = 5  # REFUSED
            return r
        r.header.aa = 1
        r.add_answer(RR(request.q.qname, QTYPE.TXT, rclass=CH, ttl=0, rdata=TXT(text)))
        return r


def _hinfo() -> RD:
    # dnslib has no HINFO type: the rdata is two character-strings, "RFC8482" and ""
    return RD(b"\x07RFC8482\x00")


def reply_to(request: DNSRecord, *, ra: bool = True) -> DNSRecord:
    """An empty reply to `request`: RA set when the server recurses; the query's TC and AD
    not echoed (a resolver that does not validate never sets AD, RFC 6840 5.8); no
    additional records."""
    r = request.reply()
    r.header.ra = int(ra)
    r.header.aa = 0  # dnslib's reply() claims authority; only local data may
    r.header.tc = 0
    r.header.ad = 0
    r.ar = []
    return r
