"""The DNS server's policy, without sockets or clocks: who may ask (the ACL), how fast
(a token bucket per client, fed the time), and what is answered locally instead of
being resolved (ANY per RFC 8482, localhost, configured local records).

The server asks `Policy` before anything else; a reload builds a new one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from dnslib import QTYPE, RD, RR, DNSRecord

from ...errors import ConfigError
from .message import ANY
from .names import in_bailiwick, name_key

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_VERDICTS = 10_000  # client addresses whose ACL verdict is remembered
MAX_BUCKETS = 100_000  # clients with a rate bucket: a flood of spoofed sources cannot grow it


def local_records(records: Iterable[Any]) -> dict[tuple[str, int], list[RR]]:
    """Configured local records (name, type, value, ttl) by (name, type); ConfigError names
    the first one that does not parse."""
    local: dict[tuple[str, int], list[RR]] = {}
    for i, rec in enumerate(records):
        text = f"{rec.name} {rec.ttl} IN {rec.type} {rec.value}"
        if rec.type == "TXT" and not rec.value.startswith('"'):
            text = f'{rec.name} {rec.ttl} IN TXT "{rec.value}"'
        try:
            rr = RR.fromZone(text)[0]
        except Exception as exc:  # dnslib's parse errors have no common base
            raise ConfigError([f"dns.local[{i}]: cannot parse {rec.type} {rec.value!r}: "
                               f"{exc}"]) from None
        local.setdefault((name_key(rr.rname), rr.rtype), []).append(rr)
    return local


class Policy:
    """ACL, rate limit and local answers for one configuration."""

    def __init__(self, *, allow: Iterable[Network], rate_limit: float = 0.0,
                 rate_burst: int = 20, local: Iterable[Any] = ()) -> None:
        self.allow = tuple(allow)
        self.rate_limit = rate_limit
        self.rate_burst = float(rate_burst)
        self.local = local_records(local)
        self.local_names = {n for n, _ in self.local}
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last time)
        self._verdicts: dict[str, bool] = {}

    def allowed(self, host: str) -> bool:
        """`host` (an address, possibly with a %scope) is in `allow`."""
        try:
            addr = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.allow)

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
        return qtype == ANY or qname.endswith(b"\x09localhost\x00") or \
            name in self.local_names

    def answer_locally(self, request: DNSRecord) -> DNSRecord | None:
        """The local answer to `request`, or None when it is to be resolved."""
        q = request.q
        qn = name_key(q.qname)
        if q.qtype == QTYPE.ANY:
            # RFC 8482: a small answer instead of everything we hold
            r = reply_to(request)
            r.add_answer(RR(q.qname, QTYPE.HINFO, ttl=3600, rdata=_hinfo()))
            return r
        if in_bailiwick(qn, "localhost."):  # RFC 6761 6.3
            r = reply_to(request)
            r.header.aa = 1
            if q.qtype == QTYPE.A:
                r.add_answer(*RR.fromZone(f"{qn} 86400 IN A 127.0.0.1"))
            elif q.qtype == QTYPE.AAAA:
                r.add_answer(*RR.fromZone(f"{qn} 86400 IN AAAA ::1"))
            return r
        if qn in self.local_names:
            r = reply_to(request)
            r.header.aa = 1
            rrs = self.local.get((qn, q.qtype)) or self.local.get((qn, QTYPE.CNAME), [])
            r.add_answer(*rrs)
            return r
        return None


def _hinfo() -> RD:
    # dnslib has no HINFO type: the rdata is two character-strings, "RFC8482" and ""
    return RD(b"\x07RFC8482\x00")


def reply_to(request: DNSRecord) -> DNSRecord:
    """An empty recursive-server reply to `request` (RA set, no additional records)."""
    r = request.reply()
    r.header.ra = 1
    r.ar = []
    return r
