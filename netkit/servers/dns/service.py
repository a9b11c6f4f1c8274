"""The DNS server: a recursive resolver, and an authoritative server.

    python -m netkit.servers.dns [--config FILE]

Listens on UDP and TCP (127.0.0.1:5300 by default), answers clients in
`allow` (loopback and private ranges by default; others get REFUSED: never an
open resolver), serves `[[dns.local]]` records, `[[dns.zone]]` zones and ``localhost``
itself, and resolves everything else from the root hints (the engine in
`proto/dns/recursion.py`, driven by `resolver.py`; messages by `proto/dns/message.py`;
who may ask and what is answered locally by `proto/dns/policy.py`, zones by
`proto/dns/zones.py`). With ``recursion = false`` it is an authoritative-only server,
as NSD: its zones, and REFUSED for every other name.

From Python: `create(config)` builds it, `serve(config)` runs it (see netkit/running.py).
Bad input gets FORMERR or NOTIMP, or is dropped, and is counted.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import struct
import sys
import time
from collections import deque
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.abc
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from netkit import running
from netkit.cli import server_main
from netkit.config import Address, Duration, Network, field
from netkit.contract import ServerSpec
from netkit.errors import ConfigError
from netkit.proto.addresses import PRIVATE
from netkit.proto.dns import message as dnsmsg
from netkit.proto.dns import rpz
from netkit.proto.dns.cache import Cache
from netkit.proto.dns.dnssec import IANA_ROOT_ANCHORS, parse_trust_anchors
from netkit.proto.dns.names import IANA_ROOT_HINTS, name_key
from netkit.proto.dns.policy import Policy, reply_to
from netkit.proto.dns.wire import AnswerCache, parse_question, wire_to_name
from netkit.proto.dns.zones import Zone, ZoneSet, parse_records, record
from netkit.servers.dns.resolver import EDNS_SIZE, Resolver, Result
from netkit.tlsconf import ListenerContext, ListenerTLS
from netkit.transport.connection import Counters, Handler, Limits
from netkit.transport.listeners import (
    DatagramEndpoint,
    DatagramHandler,
    DatagramServer,
    SocketPresets,
    StreamServer,
    bind_udp_tcp,
    listen_changes,
)

from .policies import EDE_BLOCKED, EDE_FILTERED, Hit, Policies, PolicyConfig

log = logging.getLogger("netkit.dns")

SECTION = "dns"
#: what binding an IPv6 address says on a host without IPv6 (or with it turned off)
_NO_IPV6 = (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalRecord:
    """A record served authoritatively, e.g. router.lan A 192.168.1.1."""

    name: str
    type: Literal["A", "AAAA", "CNAME", "PTR", "TXT", "MX"] = "A"
    value: str
    ttl: int = field(300, min=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardZone:
    """Names in `zone` are sent to `servers` (which recurse) instead of being iterated."""

    zone: str
    servers: tuple[Address, ...]

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("a forward zone needs at least one server")


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneConfig:
    """A zone served authoritatively (``[[dns.zone]]``)."""

    name: str
    """The zone's apex, e.g. "example.test" ("." for a root)."""
    file: Path | None = None
    """A zone file (RFC 1035 master format; $ORIGIN starts as `name`); it must hold the
    SOA, as NSD requires."""
    records: tuple[str, ...] = ()
    """Zone-file lines instead of a file, names relative to `name`, e.g.
    "www 300 A 192.0.2.1"; an SOA is made when none is given."""

    def __post_init__(self) -> None:
        if self.file is not None and self.records:
            raise ValueError("a zone has a file or records, not both")


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    max_entries: int = field(100_000, min=0)
    """RRsets kept at most; the least recently used go first."""
    max_ttl: Duration = Duration(86400)
    """Nothing is cached longer than this (Unbound: cache-max-ttl, 1 day)."""
    min_ttl: Duration = Duration(0)
    """Nothing is cached shorter than this."""
    file: Path | None = None
    """Saved here on shutdown and loaded on start, so a restart does not start cold."""
    serve_stale: Duration = Duration(0)
    """RFC 8767: for this long past expiry, an answer whose refresh fails is still given
    (TTL 30, EDE 3 "Stale Answer"); 0 turns it off. Unbound: serve-expired-ttl."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The ``[dns]`` section."""

    listen: tuple[Address, ...] = (Address("127.0.0.1", 5300), Address("::1", 5300))
    """UDP and TCP on each address (both loopbacks by default, as Unbound; an IPv6
    address on a host without IPv6 is skipped with a warning when others remain)."""
    allow: tuple[Network, ...] = PRIVATE
    """Clients allowed to query; others get REFUSED."""
    root_hints: Path | None = None
    """named.root file; default: IANA's root servers."""
    query_private_authorities: bool = False
    """Ask authorities on loopback/private addresses (tests turn it on; Unbound:
    do-not-query-localhost)."""
    server_timeout: Duration = field(Duration(0.8), min=0.01)
    """Seconds to wait for one authority before trying the next."""
    total_timeout: Duration = field(Duration(5), min=0.05)
    """Seconds for a whole resolution; then SERVFAIL with a reason (EDE)."""
    qname_minimisation: bool = True
    """RFC 9156: each authority sees only the labels it needs."""
    cache: CacheConfig = CacheConfig()
    local: tuple[LocalRecord, ...] = ()
    """Records answered authoritatively without recursion."""
    zone: tuple[ZoneConfig, ...] = ()
    """Zones answered authoritatively (referrals at their delegations, with glue)."""
    recursion: bool = True
    """false: authoritative only (NSD): the zones, and REFUSED for every other name."""
    rate_limit: float = field(0.0, min=0)
    """Queries a second one client address may send (0: no limit); beyond it, queries are
    dropped and counted (Unbound: ip-ratelimit)."""
    rate_burst: int = field(20, min=1)
    """Queries a client may send at once before `rate_limit` applies."""
    use_caps_for_id: bool = False
    """0x20: random letter case in upstream questions; answers must echo it exactly."""
    forward: tuple[ForwardZone, ...] = ()
    """Zones answered by forwarding, e.g. a corporate domain to its own servers."""
    identity: str = ""
    """Answer for id.server / hostname.bind (class CH TXT); empty: refused (hidden)."""
    version: str = ""
    """Answer for version.bind / version.server (class CH TXT); empty: refused (hidden)."""
    shared_cache: str = ""
    """A Redis URL ("redis://127.0.0.1:6379/0"): answers shared between resolvers (asked
    on a local miss before recursing; what is resolved is stored there). Empty: off."""
    shared_cache_timeout: Duration = field(Duration(0.05), min=0.001, max=5)
    """How long a question waits for the shared cache before recursing anyway."""
    nodefault: tuple[str, ...] = ()
    """Locally-served zones (RFC 6761/6303: test., invalid., the private reverse zones
    ...) to resolve like any other name instead of answering NXDOMAIN here, as Unbound's
    `local-zone: "test." nodefault` (a lab whose own root serves test.)."""
    dhcp_domain: str = ""
    """Answer NAME.<this domain> (and its PTR) for every lease with a host name that the
    DHCP server of the same process gives (`netkit run`, servers/home-router.toml), as
    dnsmasq does; empty: off."""
    dnssec: Literal["validate", "off"] = "validate"
    """DNSSEC (RFC 4033-4035): answers from signed zones are validated from the root's
    trust anchor; secure ones carry AD (to clients that set DO or AD), bogus ones become
    SERVFAIL with the Extended DNS Error that says why. CD=1 gets the data unchecked."""
    trust_anchor: Path | None = None
    """The root's DS or DNSKEY records (zone-file form, as /usr/share/dns/root.key);
    default: IANA's, built in, which goes with IANA's root: with `root_hints` of your own,
    set this too to validate."""
    accept_proxy: bool = False
    """TCP: every connection starts with a PROXY v1/v2 header (a load balancer in front),
    whose source address the ACL, rate limit and logs use (UDP cannot carry one)."""
    tcp: Limits = Limits(idle_timeout=Duration(10), max_connections=256)
    """TCP limits (RFC 7766 suggests idle timeouts of seconds); DNS over TLS and HTTPS
    connections have the same."""
    tls_listen: tuple[Address, ...] = ()
    """DNS over TLS (RFC 7858) on these addresses (853 is its port); needs ``[dns.tls]``."""
    https_listen: tuple[Address, ...] = ()
    """DNS over HTTPS (RFC 8484) at /dns-query on these addresses; needs ``[dns.tls]``."""
    tls: ListenerTLS | None = None
    """``[dns.tls]``: the certificate and key of the DoT and DoH listeners (the shared TLS
    table; files watched and reloaded)."""
    policy: tuple[PolicyConfig, ...] = ()
    """``[[dns.policy]]``: RPZ zones and blocklists (servers/dns/policies.py)."""
    policy_watch: Duration = field(Duration(2), min=0.1)
    """How often the policy files are looked at for changes."""
    shutdown_timeout: Duration = Duration(5)

    def __post_init__(self) -> None:
        if self.forward and not self.recursion:
            raise ValueError("forward zones need recursion = true")
        if (self.tls_listen or self.https_listen) and self.tls is None:
            raise ValueError("tls_listen and https_listen need [dns.tls] (cert and key)")


def _build_zones(config: Config) -> ZoneSet:
    zones = []
    for i, zc in enumerate(config.zone):
        where = f"dns.zone[{i}]"
        try:
            origin = name_key(zc.name)
            if zc.file is not None:
                where += f": {zc.file}"
                text = zc.file.read_text()
            else:
                text = "\n".join(zc.records)
            zones.append(Zone.from_records(origin, parse_records(text, origin),
                                           need_soa=zc.file is not None))
        except OSError as exc:
            raise ConfigError([f"{where}: {exc.strerror}"]) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{where}: {exc}"]) from None
    origins = [z.origin for z in zones]
    if len(set(origins)) != len(origins):
        raise ConfigError(["dns.zone: a zone is named twice"])
    return ZoneSet(zones)


def _trust_anchors(config: Config) -> list[Any] | None:
    """The root's anchors; None when not validating. IANA's anchor goes with IANA's
    root: with root hints of one's own (a lab, the tests' hierarchy) and no trust_anchor
    nothing is validated (answers are insecure, never bogus)."""
    if config.dnssec == "off" or (config.root_hints is not None and
                                  config.trust_anchor is None):
        return None
    try:
        text = config.trust_anchor.read_text() if config.trust_anchor else IANA_ROOT_ANCHORS
        return parse_trust_anchors(text)
    except OSError as exc:
        raise ConfigError([f"dns.trust_anchor: {config.trust_anchor}: {exc.strerror}"]) \
            from None
    except ValueError as exc:
        raise ConfigError([f"dns.trust_anchor: {config.trust_anchor}: {exc}"]) from None


def _build_resolver(config: Config, cache: Cache, *, validating: bool = True) -> Resolver:
    anchors = _trust_anchors(config) if validating else None
    try:
        hints = config.root_hints.read_text() if config.root_hints else IANA_ROOT_HINTS
        return Resolver(
            root_hints=hints, cache=cache, trust_anchors=anchors,
            server_timeout=config.server_timeout, total_timeout=config.total_timeout,
            query_private_authorities=config.query_private_authorities,
            qname_minimisation=config.qname_minimisation,
            use_caps_for_id=config.use_caps_for_id,
            forwards={f.zone: [(a.host, a.port) for a in f.servers] for f in config.forward})
    except OSError as exc:
        raise ConfigError([f"dns.root_hints: {config.root_hints}: {exc.strerror}"]) from None
    except ValueError as exc:
        raise ConfigError([f"dns.root_hints: {exc}"]) from None


def _build_policy(config: Config) -> Policy:
    return Policy(allow=config.allow, rate_limit=config.rate_limit,
                  rate_burst=config.rate_burst, local=config.local,
                  forward_zones=[f.zone for f in config.forward],
                  identity=config.identity, version=config.version,
                  zones=_build_zones(config), recursion=config.recursion,
                  nodefault=config.nodefault)


class DNSService:
    def __init__(self, config: Config) -> None:
        self.config = config
        cache = Cache(max_entries=config.cache.max_entries, max_ttl=int(config.cache.max_ttl),
                      min_ttl=int(config.cache.min_ttl),
                      stale_for=float(config.cache.serve_stale))
        self.resolver = _build_resolver(config, cache)
        # CD=1 (RFC 4035 3.2.2): the data without validation, from a cache of its own so
        # that nothing unchecked ever reaches a client who did not ask for that
        self.unchecked = _build_resolver(config, Cache(max_entries=min(
            config.cache.max_entries, 10_000)), validating=False) \
            if config.dnssec == "validate" else None
        self.policy = _build_policy(config)
        self.answers = AnswerCache(config.cache.max_entries)
        self.policies = Policies(config.policy)
        self.policies.on_change = self.answers.entries.clear
        self.transport_counters = Counters()
        self.stats = {"formerr": 0, "notimp": 0, "acl_refused": 0, "dropped": 0, "servfail": 0,
                      "ratelimited": 0}
        self.udp = DatagramServer("dns", _UDP(self), counters=self.transport_counters)
        self.tcp = StreamServer("dns", lambda: _TCP(self), limits=config.tcp,
                                counters=self.transport_counters,
                                accept_proxy=config.accept_proxy)
        self.tls = ListenerContext(_with_alpn(config.tls, ("dot",)), SECTION) \
            if config.tls is not None else None
        self.dot = StreamServer("dns-tls", lambda: _TCP(self), limits=config.tcp,
                                counters=self.transport_counters,
                                tls=self.tls.get if self.tls else None)
        self.doh: Any = None
        if config.https_listen:
            from netkit.servers.http.server import HTTPService

            from .doh import DoH, http_config
            self.doh_app = DoH(self)
            self.doh = HTTPService(http_config(config), app=self.doh_app)
        self.tasks: set[asyncio.Task[None]] = set()
        self.debug = log.isEnabledFor(logging.DEBUG)  # read once: checked per cache hit
        self.questions: deque[Question] | None = None  # `record_questions` turns it on
        self.rcodes = [0] * 16  # answers sent, by RCODE (the header's low nibble)
        self.cache_hits = 0  # answered from the answer cache (the fast path)
        self.cache_misses = 0  # handed to the resolver
        self.dhcp_names: dict[str, str] = {}  # host name -> address, from DHCP leases
        self._unsubscribe: Any = None
        self.shared: Any = None
        if config.shared_cache:
            from .shared_cache import SharedCache
            self.shared = SharedCache(config.shared_cache, float(config.shared_cache_timeout))

    def _on_lease(self, event: Any) -> None:
        """A DHCP lease event: NAME.dhcp_domain answers the client's address while its
        lease is held."""
        lease = event.lease
        if not lease.hostname or not self.config.dhcp_domain:
            return
        name = f"{lease.hostname}.{self.config.dhcp_domain.strip('.')}."
        if event.kind in ("new", "renewed"):
            if self.dhcp_names.get(name) == lease.address:
                return
            self._forget_dhcp_name(name)
            self.dhcp_names[name] = lease.address
            self._serve_dhcp_name(name, lease.address)
        elif self.dhcp_names.get(name) == lease.address:
            self._forget_dhcp_name(name)

    def _serve_dhcp_name(self, name: str, address: str) -> None:
        reverse = ".".join(reversed(address.split("."))) + ".in-addr.arpa."
        self.add_record(name, "A", address, ttl=60)
        self.add_record(reverse, "PTR", name, ttl=60)

    def _forget_dhcp_name(self, name: str) -> None:
        address = self.dhcp_names.pop(name, None)
        if address is None:
            return
        reverse = ".".join(reversed(address.split("."))) + ".in-addr.arpa."
        self.remove_records(name, "A", address)
        self.remove_records(reverse, "PTR")
        self.answers.entries.clear()

    def record_questions(self, keep: int = 10_000) -> deque[Question]:
        """From now on keep the last `keep` questions received (tests read them)."""
        self.questions = deque(maxlen=keep)
        return self.questions

    def add_record(self, name: str, rtype: str, value: str, ttl: int = 300) -> None:
        """Serve one more record (ValueError if it cannot be); a name outside every zone
        gets a zone at its parent. Kept until the next reload."""
        self.policy.zones.add(record(name, rtype, value, ttl))
        self.answers.entries.clear()  # a cached resolution may now be a zone's answer

    def remove_records(self, name: str, rtype: str | None = None,
                       value: str | None = None) -> int:
        """Stop serving `name`'s records (of one type, with one value); how many went."""
        zone = self.policy.zones.find(name_key(name))
        if zone is None:
            return 0
        qtype = getattr(QTYPE, rtype.upper()) if rtype is not None else None
        return zone.remove(name, qtype, value)

    def _record_question(self, data: bytes, client: str) -> None:
        assert self.questions is not None
        try:
            q = DNSRecord.parse(data).q
        except Exception:  # a malformed query is recorded as such
            self.questions.append(Question("", "", client))
            return
        self.questions.append(Question(str(q.qname).rstrip(".") or ".",
                                       QTYPE.get(q.qtype), client))

    def load_cache(self) -> None:
        path = self.config.cache.file
        if path is None or not path.exists():
            return
        try:
            items = [json.loads(line) for line in path.read_text().splitlines() if line]
            n = self.resolver.cache.load(items, time.monotonic(), time.time())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("dns: cache file %s unreadable, starting cold: %s", path, exc)
            return
        log.info("dns: loaded %d cache entries from %s", n, path)

    def save_cache(self) -> None:
        path = self.config.cache.file
        if path is None:
            return
        items = self.resolver.cache.dump(time.monotonic(), time.time())
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "w") as f:
                f.writelines(json.dumps(item) + "\n" for item in items)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # a crash mid-write leaves the old file, never half of one
        except OSError as exc:
            log.error("dns: cannot save the cache to %s: %s", path, exc)
            return
        log.info("dns: saved %d cache entries to %s", len(items), path)

    async def start(self, tg: anyio.abc.TaskGroup, presets: SocketPresets) -> None:
        self.worker = bool(presets)  # sockets bound by a --workers parent
        self.tg = tg
        if self.config.dhcp_domain:
            from netkit import events
            self._unsubscribe = events.subscribe("dhcp.lease", self._on_lease)
        self.load_cache()
        addresses = list(self.config.listen)
        if not presets:  # one port for UDP and TCP, as clients expect, even with port 0
            presets = {}
            for address in self.config.listen:
                try:
                    udp, tcp = bind_udp_tcp(address)
                except OSError as exc:
                    if ":" not in address.host or exc.errno not in _NO_IPV6 or \
                            len(addresses) == 1:
                        raise
                    log.warning("dns: not listening on %s: %s (no IPv6 on this host?)",
                                address, exc.strerror)
                    addresses.remove(address)
                    continue
                presets[("udp", str(address))], presets[("tcp", str(address))] = udp, tcp
        await self.udp.listen(addresses, presets=presets)
        await self.tcp.listen(addresses, presets=presets)
        if self.config.tls_listen:
            await self.dot.listen(self.config.tls_listen, presets=presets)
        if self.tls is not None:
            tg.start_soon(self.tls.watch_files)
        if self.doh is not None:
            await self.doh.start(tg, presets)
        tg.start_soon(self._follow_policies)

    async def _follow_policies(self) -> None:
        while True:
            if self.policies:
                await self.policies.tick()
            await anyio.sleep(float(self.config.policy_watch))

    def reload(self, config: Config) -> None:
        """SIGHUP: rules, local records, forward zones, timeouts, limits and listen
        addresses change (new ones bound first, removed ones closed); the cache is kept,
        its sizes need a restart."""
        if (config.tls is None) != (self.tls is None) or \
                bool(config.https_listen) != (self.doh is not None):
            raise ConfigError(["dns: [dns.tls] or https_listen turned on or off; restart "
                               "to apply"])
        presets = listen_changes(self.tcp, self.config.listen, config.listen, SECTION,
                                 self.worker, udp_too=True)
        tls_presets = None
        try:
            resolver = _build_resolver(config, self.resolver.cache)
            unchecked = _build_resolver(config, self.unchecked.cache if self.unchecked else
                                        Cache(max_entries=10_000), validating=False) \
                if config.dnssec == "validate" else None
            policy = _build_policy(config)
            policies = Policies(config.policy, self.policies)
            tls_presets = listen_changes(self.dot, self.config.tls_listen, config.tls_listen,
                                         "dns-tls", self.worker)
            # what changes the running server in place comes last, after all that can fail
            # without changing anything
            if self.tls is not None and config.tls is not None:
                self.tls.replace(_with_alpn(config.tls, ("dot",)))
            if self.doh is not None:
                from .doh import http_config
                self.doh.reload(http_config(config))
        except ConfigError:
            for sock in [*(presets or {}).values(), *(tls_presets or {}).values()]:
                sock.close()
            raise
        if tls_presets is not None:
            self.tg.start_soon(self.dot.relisten, config.tls_listen, tls_presets)
        self.dot.limits = config.tcp
        if config.dnssec != self.config.dnssec or config.trust_anchor != \
                self.config.trust_anchor:
            resolver.cache.entries.clear()  # what was (not) validated must be again
        else:
            resolver.engine.zone_keys = self.resolver.engine.zone_keys
        self.unchecked = unchecked
        resolver.exchange = self.resolver.exchange  # questions in flight finish on it
        resolver.latency = self.resolver.latency  # the histogram goes on across reloads
        resolver.upstream_queries = self.resolver.upstream_queries
        if config.cache != self.config.cache:
            log.warning("dns: cache settings changed; restart to apply them")
        if config.shared_cache != self.config.shared_cache:
            log.warning("dns: shared_cache changed; restart to apply it")
        if presets is not None:
            self.tg.start_soon(self.udp.relisten, config.listen, presets)
            self.tg.start_soon(self.tcp.relisten, config.listen, presets)
        self.config, self.resolver, self.policy = config, resolver, policy
        self.policies = policies
        policies.on_change = self.answers.entries.clear
        for name, address in self.dhcp_names.items():  # the leases outlive a reload
            self._serve_dhcp_name(name, address)
        self.answers.entries.clear()  # answers may differ now (local records, forwards)
        self.tcp.limits = config.tcp
        self.tcp.accept_proxy = config.accept_proxy

    @property
    def tls_addresses(self) -> list[Address]:
        """Where DNS over TLS listens."""
        return list(self.dot.addresses)

    @property
    def https_addresses(self) -> list[Address]:
        """Where DNS over HTTPS listens (at /dns-query)."""
        return self.doh.addresses() if self.doh is not None else []

    def status(self) -> dict[str, Any]:
        return {"listen": [str(a) for a in self.tcp.addresses],
                "tls_listen": [str(a) for a in self.tls_addresses],
                "https_listen": [str(a) for a in self.https_addresses], **self.counters(),
                "cached_rrsets": len(self.resolver.cache.entries),
                "cached_answers": len(self.answers.entries),
                "zone_records": len(self.policy.zones),
                "policies": [{"name": p.name, "entries": len(p.lists), "hits": p.hits,
                              "skipped_lines": p.lists.skipped,
                              "unsupported_triggers": p.lists.unsupported}
                             for p in self.policies.all]}

    def addresses(self) -> list[Address]:
        return list(self.tcp.addresses)  # UDP listens on the same ports

    def counters(self) -> dict[str, int]:
        return {**self.transport_counters.snapshot(), **self.stats,
                "upstream_queries": self.resolver.upstream_queries,
                "cache_hits": self.cache_hits, "cache_misses": self.cache_misses,
                **(self.shared.stats if self.shared is not None else {}),
                **({"doh_queries": self.doh_app.queries,
                    "doh_bad_requests": self.doh_app.bad_requests} if self.doh else {}),
                "cache_rrsets": len(self.resolver.cache.entries),
                "cache_answers": len(self.answers.entries)}

    def labelled(self) -> dict[str, tuple[str, dict[str, int]]]:  # counters
        """For the admin endpoint: answers by RCODE (netkit_dns_queries_total{rcode=})."""
        names = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED")
        by = {name: self.rcodes[i] for i, name in enumerate(names)}
        by.update({f"RCODE{i}": n for i, n in enumerate(self.rcodes) if i >= 6 and n})
        out = {"queries": ("rcode", by)}
        if self.policies:
            out["policy_hits"] = ("policy", self.policies.counts())
        return out

    def histograms(self) -> dict[str, Any]:
        """For the admin endpoint: the upstream answers' latency, in seconds."""
        return {"upstream_latency_seconds": self.resolver.latency}

    async def drain(self, timeout: float) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.udp.close()
        await self.tcp.drain(timeout)
        await self.dot.drain(timeout)
        if self.doh is not None:
            await self.doh.drain(timeout)
        self.resolver.exchange.close()  # resolutions still asking upstream: dropped
        if self.unchecked is not None:
            self.unchecked.exchange.close()
        if self.shared is not None:
            await self.shared.close()
        self.save_cache()
        log.info("dns: %s", self.stats)

    # --- one query ---

    def fast_answer(self, data: bytes, client: str) -> tuple[bytes | None, tuple | None]:
        """(answer from the wire cache or None, the plain query's parsed question or None
        when the query is not plain or the client not allowed: the slow path decides)."""
        if self.questions is not None:
            self._record_question(data, client)
        q = parse_question(data)
        if q is None or not self.policy.allowed_cached(client):
            return None, None
        qname, qtype, qend, has_opt = q
        out = self.answers.answer(data, (qname, qtype, has_opt), qend, time.monotonic())
        if self.answers.due:
            self._prefetch()
        return out, q

    def _prefetch(self) -> None:
        loop = asyncio.get_running_loop()
        while self.answers.due:
            key = self.answers.due.pop()
            task = loop.create_task(self._refresh(key))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _refresh(self, key: tuple[bytes, int, int]) -> None:
        qname, qtype, has_opt = key
        name = wire_to_name(qname)
        # the resolver's own copy is near expiry too: drop it so the refresh asks upstream
        self.resolver.cache.entries.pop((name_key(name), qtype), None)
        result = await self.resolver.resolve(name, qtype)
        if result.rcode in (RCODE.NOERROR, RCODE.NXDOMAIN) and result.ede is None:
            question = qname + struct.pack("!HH", qtype, 1)
            ttls: list[tuple[int, int]] = []
            data = dnsmsg.encode_reply(0, 0x0100, question, result.rcode,
                                       *_sections(result, has_opt == 2), edns=bool(has_opt),
                                       ttls=ttls)
            if not data[2] & 0x02:
                self.answers.store(key, data, 12 + len(question), time.monotonic(), ttls,
                                   secure=result.secure)
                log.debug("dns: prefetched %s %s", name, QTYPE.get(qtype))

    def handle(self, data: bytes, client: str, reply: Any, max_size: int | None,
               plain: tuple[bytes, int, int, int] | None = None) -> None:
        """Answer `data` (reply(bytes) sends); max_size None means TCP. `plain` is the
        question of a plain query from an allowed client (`fast_answer`): unless a local
        answer applies, it goes to the resolver without dnslib seeing it."""
        if plain is not None:
            qname, qtype, qend, has_opt = plain
            name = wire_to_name(qname)
            if not self.policy.maybe_local(qname, name, qtype):
                edns_size = struct.unpack_from("!H", data, qend + 3)[0] if has_opt else 0
                self._recurse(_Query(
                    reply, struct.unpack_from("!H", data)[0], data[2] << 8 | data[3],
                    data[12:qend], name, qtype, edns_size, has_opt, max_size,
                    (qname, qtype, has_opt), has_opt == 2, client))
                return
        try:
            request = DNSRecord.parse(data)
        except Exception:
            if len(data) >= 12 and not data[2] & 0x80:
                self.stats["formerr"] += 1
                reply(_bare_error(data, RCODE.FORMERR))
            else:
                self.stats["dropped"] += 1
            return
        if request.header.qr:
            self.stats["dropped"] += 1  # a response sent to us: never answer those
            return
        if request.header.opcode != 0:
            self.stats["notimp"] += 1
            reply(_error(request, RCODE.NOTIMP, data, self.policy.recursion))
            return
        if len(request.questions) != 1:
            self.stats["formerr"] += 1
            reply(_error(request, RCODE.FORMERR, data, self.policy.recursion))
            return
        if not self.policy.allowed(client):
            self.stats["acl_refused"] += 1
            reply(_error(request, RCODE.REFUSED, data, self.policy.recursion))
            return
        q = request.q
        opt = next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)
        if opt is not None and (opt.ttl >> 16) & 0xFF:  # RFC 6891 6.1.3: only version 0
            self.stats["formerr"] += 1
            reply(_badvers(request, data))
            return
        # the name as sent, octet for octet (dnslib's text form of odd octets is its own)
        labels = q.qname.label
        wire = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
        if any(not 0 < len(label) <= 63 for label in labels) or len(wire) > 255:
            self.stats["formerr"] += 1  # a label over 63 octets, a name over 255
            reply(_bare_error(data, RCODE.FORMERR))
            return
        question = wire + struct.pack("!HH", q.qtype, q.qclass)
        local = self.policy.answer_locally(request)
        if local is not None:
            reply(_pack(local, request, max_size))
            return
        self._recurse(_Query(
            reply, request.header.id, data[2] << 8 | data[3], question,
            wire_to_name(wire.lower()),
            q.qtype, opt.rclass if opt is not None else 0, opt is not None, max_size, None,
            opt is not None and bool(opt.ttl & 0x8000), client))  # (no key: not cached)

    def _recurse(self, query: _Query) -> None:
        self.cache_misses += 1  # not in the answer cache: the resolver (its cache, or out)
        if self.policies:
            hit = self.policies.match(query.client, query.qname)
            if hit is not None:
                self._apply_policy(query, hit)
                return
            if query.key is not None and self.policies.touches(query.qname, []):
                query.key = None  # a name some client's policy names: never shared
        if query.flags & 0x0010 and self.unchecked is not None:  # CD: checking disabled
            query.key = None  # never into the answer cache
            self.unchecked.start(query.qname, query.qtype,
                                 lambda result: self._answer(query, result))
            return
        if self.shared is not None and query.key is not None:
            task = asyncio.get_running_loop().create_task(self._shared_first(query))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        self.resolver.start(query.qname, query.qtype,
                            lambda result: self._answer(query, result))

    def _apply_policy(self, query: _Query, hit: Hit) -> None:
        """Answer as the policy says: NXDOMAIN, NODATA, its own records, a CNAME to
        follow, or nothing at all (DROP); with the Extended DNS Error naming it."""
        policy, rule = hit.policy, hit.rule
        if policy.level:
            log.log(policy.level, "dns: policy %s: %s asked %s %s -> %s (%s)", policy.name,
                    query.client, query.qname, QTYPE.get(query.qtype), rule.action,
                    hit.trigger)
        query.key = None  # a policy's answer is for this client: never shared
        query.policy_done = True
        ede = (EDE_FILTERED if policy.config.ede == "filtered" else EDE_BLOCKED,
               f"blocked by policy {policy.name}")
        if rule.action == rpz.DROP:
            if query.max_size is None:
                query.reply(b"")  # a stream: nothing sent, the query's slot freed
            return
        owner = hit.chain[-1].target if hit.chain else query.qname  # the name that matched
        if rule.action == rpz.REDIRECT:
            cname = rpz.cname_record(owner, rule.target)
            if query.qtype == dnsmsg.CNAME:
                self._answer(query, Result(dnsmsg.NOERROR, [*hit.chain, cname], ede=ede))
                return
            self.resolver.start(rule.target, query.qtype, lambda result: self._answer(
                query, Result(result.rcode, [*hit.chain, cname, *result.answer],
                              result.authority, result.ede or ede)))
            return
        if rule.action == rpz.LOCAL:
            result = Result(dnsmsg.NOERROR,
                            [*hit.chain, *rpz.local_answer(rule, owner, query.qtype)], ede=ede)
        elif rule.action == rpz.NODATA:
            result = Result(dnsmsg.NOERROR, list(hit.chain), ede=ede)
        else:
            result = Result(dnsmsg.NXDOMAIN, list(hit.chain), ede=ede)
        self._answer(query, result)

    async def _shared_first(self, query: _Query) -> None:
        """The shared cache before recursion; what it has becomes a local entry too."""
        key = query.key
        assert key is not None and self.shared is not None
        blob = await self.shared.get(key)
        now = time.monotonic()
        if blob is not None and self.answers.adopt(key, blob, time.time(), now):
            fake = struct.pack("!HH", query.ident, query.flags) + bytes(8) + query.question
            data = self.answers.answer(fake, key, 12 + len(query.question), now)
            if data is not None and (query.max_size is None or len(data) <= (
                    min(max(query.edns_size, 512), EDNS_SIZE) if query.edns else 512)):
                self.rcodes[data[3] & 15] += 1
                query.reply(data)
                return
        self.resolver.start(query.qname, query.qtype,
                            lambda result: self._answer(query, result))

    def _answer(self, query: _Query, result: Result) -> None:
        if self.policies and not query.policy_done and result.answer:
            hit = self.policies.match_answer(query.client, result.answer)
            if hit is not None:
                self._apply_policy(query, hit)
                return
            if query.key is not None and self.policies.touches(query.qname, result.answer):
                query.key = None
        if result.rcode == dnsmsg.SERVFAIL:
            self.stats["servfail"] += 1
            log.info("dns: SERVFAIL for %s %s: %s", query.qname, QTYPE.get(query.qtype),
                     result.ede[1] if result.ede else "")
        if self.debug:
            log.debug("dns: %s %s -> %s", query.qname, QTYPE.get(query.qtype),
                      RCODE.get(result.rcode))
        if query.max_size is None:
            limit = 65535
        elif query.edns:
            limit = min(max(query.edns_size, 512), EDNS_SIZE)
        else:
            limit = 512
        ttls: list[tuple[int, int]] = []
        data = dnsmsg.encode_reply(query.ident, query.flags, query.question, result.rcode,
                                   *_sections(result, query.dnssec_ok), edns=query.edns,
                                   ede=result.ede, max_size=limit, ttls=ttls,
                                   ad=result.secure and bool(query.flags & 0x0020 or
                                                             query.dnssec_ok))
        if query.key is not None and result.rcode in (dnsmsg.NOERROR, dnsmsg.NXDOMAIN) \
                and not data[2] & 0x02:  # never a truncated answer
            now = time.monotonic()
            self.answers.store(query.key, data, 12 + len(query.question), now, ttls,
                               secure=result.secure)
            if self.shared is not None:
                exported = self.answers.export(query.key, time.time(), now)
                if exported is not None:
                    task = asyncio.get_running_loop().create_task(
                        self.shared.put(query.key, *exported))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
        query.reply(data)


@dataclass(frozen=True, slots=True)
class Question:
    """A question the server received (`DNSService.record_questions`)."""

    name: str
    """As asked, without the final dot ("" for a message that did not parse)."""
    type: str
    """"A", "AAAA", "MX" ..."""
    client: str
    """The client's address."""


@dataclass(slots=True)
class _Query:
    """A query on its way to the resolver: what its reply needs."""

    reply: Any
    ident: int
    flags: int
    question: bytes  # as the client sent it (its letter case kept)
    qname: str
    qtype: int
    edns_size: int
    edns: bool
    max_size: int | None  # None: TCP
    key: tuple[bytes, int, int] | None  # where the answer cache keeps the answer
    dnssec_ok: bool = False  # the DO bit of the client's OPT record
    client: str = ""
    policy_done: bool = False  # a policy already decided this answer


def _sections(result: Result, dnssec_ok: bool) -> tuple[list[Any], list[Any]]:
    """The answer and authority sections; with DO, the RRSIGs and denial proofs too
    (RFC 4035 3.2.1)."""
    if not dnssec_ok or not (result.signatures or result.proofs):
        return result.answer, result.authority
    return result.answer + result.signatures, result.authority + result.proofs


def _error(request: DNSRecord, rcode: int, data: bytes, ra: bool = True) -> bytes:
    """An error reply echoing the question; the bare header when the question cannot be
    written back (a label over 63 octets, say)."""
    r = reply_to(request, ra=ra)
    r.header.rcode = rcode
    try:
        return r.pack()
    except Exception:  # dnslib's packing errors have no common base
        return _bare_error(data, rcode)


def _badvers(request: DNSRecord, data: bytes) -> bytes:
    """RFC 6891 6.1.3: an EDNS version we do not speak: BADVERS (16: extended RCODE 1 in
    our OPT, header RCODE 0), answered with version 0."""
    r = reply_to(request)
    r.add_ar(EDNS0(udp_len=EDNS_SIZE, ext_rcode=1, version=0))
    try:
        return r.pack()
    except Exception:
        return _bare_error(data, RCODE.FORMERR)


def _bare_error(data: bytes, rcode: int) -> bytes:
    # the header alone: ID and opcode from the request, QR set, no sections
    ident, flags = struct.unpack_from("!HH", data)
    flags = 0x8000 | (flags & 0x7800) | 0x0080 | rcode
    return struct.pack("!HHHHHH", ident, flags, 0, 0, 0, 0)


def _pack(response: DNSRecord, request: DNSRecord, max_size: int | None) -> bytes:
    edns = next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)
    if edns is not None and not any(rr.rtype == QTYPE.OPT for rr in response.ar):
        response.add_ar(EDNS0(udp_len=EDNS_SIZE))
    data = response.pack()
    if max_size is not None:
        limit = min(max(edns.rclass, 512), EDNS_SIZE) if edns is not None else 512
        if len(data) > limit:
            # too big for UDP: an empty answer with TC set sends the client to TCP
            response.rr, response.auth = [], []
            response.ar = [rr for rr in response.ar if rr.rtype == QTYPE.OPT]
            response.header.tc = 1
            data = response.pack()
    return data


class _UDP(DatagramHandler):
    def __init__(self, service: DNSService) -> None:
        self.service = service

    def datagram_received(self, data: bytes, addr: tuple[str, int],
                          endpoint: DatagramEndpoint) -> None:
        service = self.service
        if service.config.rate_limit and service.policy.over_rate(addr[0], time.monotonic()):
            service.stats["ratelimited"] += 1
            return
        out, plain = service.fast_answer(data, addr[0])
        if out is not None and plain is not None and len(out) <= (1232 if plain[3] else 512):
            service.rcodes[out[3] & 15] += 1
            service.cache_hits += 1
            endpoint.send(out, addr)
            if service.debug:
                log.debug("dns: %s %s %s -> from cache", addr[0], wire_to_name(plain[0]),
                          QTYPE.get(plain[1]))
            return
        rcodes = service.rcodes

        def reply(out: bytes) -> None:
            rcodes[out[3] & 15] += 1
            endpoint.send(out, addr)
        service.handle(data, addr[0], reply, 65535, plain)


class _TCP(Handler):
    """RFC 7766: two-byte length prefix, queries pipelined, answers in any order.

    Backpressure both ways: a client that does not read its answers is not read from,
    and at most MAX_IN_FLIGHT of its queries are being resolved at once (the rest wait in
    the socket, not in memory). A zero-length message is malformed: the connection
    closes."""

    MAX_IN_FLIGHT = 32  # queries of one connection being resolved (Unbound: 32 per conn)

    def __init__(self, service: DNSService) -> None:
        self.service = service
        self.buffer = bytearray()
        self.in_flight = 0
        self.write_paused = False
        self.reading_paused = False
        self.taking = False  # inside _take: an answer given at once must not re-enter it
        self.draining = False

    def shutdown_requested(self) -> None:
        # draining: an idle connection closes now; a busy one once its answers are out
        # (RFC 7766 6.2.3 lets a server close idle connections at any time)
        self.draining = True
        if not self.in_flight:
            self.conn.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._take()

    def _take(self) -> None:
        self.taking = True
        try:
            self._take_messages()
        finally:
            self.taking = False
        self._update_reading()

    def _take_messages(self) -> None:
        buffer = self.buffer
        at = 0
        service = self.service
        peer = self.conn.peer[0]
        while len(buffer) - at >= 2 and not self.write_paused and \
                self.in_flight < self.MAX_IN_FLIGHT:
            size = buffer[at] << 8 | buffer[at + 1]
            if size == 0:
                service.stats["formerr"] += 1
                log.info("dns: %s: zero-length message over TCP: closing", peer)
                del buffer[:]
                self.conn.close()
                return
            if len(buffer) - at < 2 + size:
                break
            message = bytes(buffer[at + 2:at + 2 + size])
            at += 2 + size
            out, plain = service.fast_answer(message, peer)
            if out is not None:
                self._send(out)
            else:
                self.in_flight += 1
                service.handle(message, peer, self._answered, None, plain)
        if at:
            del buffer[:at]

    def _answered(self, data: bytes) -> None:
        self.in_flight -= 1
        self._send(data)
        if self.draining:
            if not self.in_flight:
                self.conn.close()  # after the writes queued before it
            return
        if not self.taking:  # (inside _take its loop goes on by itself)
            if self.buffer and not self.conn.is_closing():
                self._take()  # queries that waited for a free slot
            else:
                self._update_reading()

    def _update_reading(self) -> None:
        pause = self.write_paused or self.in_flight >= self.MAX_IN_FLIGHT
        if pause != self.reading_paused:
            self.reading_paused = pause
            if pause:
                self.conn.pause_reading()
            else:
                self.conn.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._take()

    def _send(self, data: bytes) -> None:
        if not data:
            return  # dropped by a policy: no answer at all
        self.service.rcodes[data[3] & 15] += 1
        self.conn.write(struct.pack("!H", len(data)) + data)


def listen_specs(config: Config) -> list[tuple[str, Address]]:
    return [(kind, a) for a in config.listen for kind in ("udp", "tcp")] + \
        [("tcp", a) for a in (*config.tls_listen, *config.https_listen)]


def _with_alpn(tls: ListenerTLS | None, alpn: tuple[str, ...]) -> ListenerTLS:
    """The TLS table with the transport's ALPN token unless one is configured."""
    import dataclasses
    assert tls is not None
    return tls if tls.alpn else dataclasses.replace(tls, alpn=alpn)


def cache_view(service: DNSService, args: dict[str, Any]) -> dict[str, Any]:
    """`netkit ctl cache [name=NAME]`: how full the caches are, and one name's entries."""
    now = time.monotonic()
    view: dict[str, Any] = {"rrsets": len(service.resolver.cache.entries),
                            "answers": len(service.answers.entries)}
    if "name" in args:
        key = name_key(args["name"])
        view["entries"] = [
            {"type": QTYPE.get(qtype), "ttl": max(0, round(entry.expires - now)),
             "negative": entry.negative, "records": [str(rr) for rr in entry.rrs]}
            for (name, qtype), entry in service.resolver.cache.entries.items() if name == key]
    return view


def flush_view(service: DNSService, args: dict[str, Any]) -> dict[str, Any]:
    """`netkit ctl flush [name=NAME]` (POST /dns/flush?name=): forget one name's cached
    records (and every cached answer), or everything (unbound-control flush)."""
    cache = service.resolver.cache.entries
    if "name" in args:
        key = name_key(args["name"])
        gone = [k for k in cache if k[0] == key]
        for k in gone:
            del cache[k]
    else:
        gone = list(cache)
        cache.clear()
    answers = len(service.answers.entries)
    service.answers.entries.clear()  # an answer may have been built from those records
    return {"rrsets_removed": len(gone), "answers_removed": answers}


def create(config: Config | Mapping[str, Any] | str | None = None) -> DNSService:
    """The DNS server for `config` (a `{"dns": {...}}` document, TOML text or `Config`),
    loaded and checked as the CLI does (ConfigError lists every problem); binds nothing."""
    return DNSService(running.load(SPEC, config))


def serve(config: Config | Mapping[str, Any] | str | None = None
          ) -> AbstractAsyncContextManager[running.Server]:
    """`async with serve(config) as server:` runs the DNS server on this event loop
    (listeners default to 127.0.0.1 port 0) and drains it at the end of the block."""
    return running.serve(SPEC, config)


SPEC = ServerSpec(
    name=SECTION, summary="DNS server: recursive resolver and authoritative zones",
    config=Config, create=create, listen_specs=listen_specs,
    commands={"cache": cache_view, "flush": flush_view}, actions=frozenset({"flush"}),
    gauges=frozenset({"active", "cache_rrsets", "cache_answers"}))


def main(argv: list[str] | None = None) -> int:
    return server_main(SECTION, argv)


if __name__ == "__main__":
    sys.exit(main())

