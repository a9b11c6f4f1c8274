"""The resolver's RRset cache: positive and negative answers (RFC 2308) with TTLs counted
against a `now` the caller passes in, caps on TTLs, serve-stale (RFC 8767) and a bounded
LRU size. No sockets, no clock."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from dnslib import RCODE

from .message import Record
from .names import name_key


@dataclass(slots=True)
class CacheEntry:
    expires: float
    rrs: list[Record]
    rcode: int = RCODE.NOERROR  # NXDOMAIN/NOERROR for negative entries (rrs then hold the SOA)
    negative: bool = False
    hits: int = 0
    stored: float = 0.0
    secure: bool = False  # DNSSEC validated (a resolver that validates only)
    sigs: list[Record] = field(default_factory=list)  # RRSIGs, or a denial's proofs
    proofs: list[Record] = field(default_factory=list)  # a wildcard answer's NSEC(3)s


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

    def put(self, name: str, rtype: int, rrs: list[Record], now: float, *,
            secure: bool = False, sigs: list[Record] | None = None,
            proofs: list[Record] | None = None) -> None:
        if not rrs:
            return
        ttl = self._ttl(min(rr.ttl for rr in rrs))
        self._store((name_key(name), rtype), CacheEntry(now + ttl, rrs, stored=now,
                                                        secure=secure, sigs=sigs or [],
                                                        proofs=proofs or []))

    def put_negative(self, name: str, rtype: int, rcode: int, soa: Record | None,
                     now: float, *, secure: bool = False,
                     sigs: list[Record] | None = None) -> None:
        ttl = 0
        if soa is not None:
            ttl = min(soa.ttl, soa.soa_minimum, self.max_negative_ttl)
        ttl = self._ttl(ttl)
        # the SOA goes out (and into the answer cache) with the negative TTL, not its own
        rrs = [soa.with_ttl(ttl)] if soa else []
        self._store((name_key(name), rtype), CacheEntry(
            now + ttl, rrs, rcode, True, stored=now, secure=secure,
            sigs=[rr.with_ttl(min(rr.ttl, ttl)) for rr in sigs or []]))

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

    def sigs_with_ttls(self, entry: CacheEntry, now: float, *, proofs: bool = False
                       ) -> list[Record]:
        left = max(0, int(entry.expires - now))
        return [rr.with_ttl(min(rr.ttl, left))
                for rr in (entry.proofs if proofs else entry.sigs)]


