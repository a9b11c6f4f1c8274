"""The resolver's response policies (`[[dns.policy]]`): RPZ zones and blocklists from
files, watched and re-read when they change, optionally fetched from an https URL.

    [[dns.policy]]
    name = "ads"
    source = "lists/ads.txt"          # the file (where a fetched list is written, too)
    format = "hosts"                  # rpz | hosts | domains | adblock
    action = "nxdomain"               # nxdomain | nodata | drop | passthru (an allowlist)
    clients = ["10.0.0.0/8"]          # whom it applies to (default: everyone)
    url = "https://example.net/ads.txt"   # optional: fetched every `refresh`

Order: every allowlist (action "passthru") first, whatever its place; then the policies
in the order given, the first that matches wins. The lookups are `proto/dns/rpz.py`.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio

from netkit.config import Duration, Network, Size
from netkit.config import field as cfield
from netkit.errors import ConfigError
from netkit.proto.addresses import in_networks
from netkit.proto.dns.message import AAAA, CNAME, DNAME, A, Record
from netkit.proto.dns.names import name_key
from netkit.proto.dns.rpz import PASSTHRU, SIMPLE, Lists, PolicyError, Rule, parse_plain, parse_rpz
from netkit.tlsconf import FileWatch

log = logging.getLogger("netkit.dns")

EDE_BLOCKED, EDE_FILTERED = 15, 17


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyConfig:
    """One ``[[dns.policy]]``."""

    name: str
    source: Path
    """The list or zone file (a fetched list is written here, atomically)."""
    format: Literal["rpz", "hosts", "domains", "adblock"] = "domains"
    action: Literal["nxdomain", "nodata", "drop", "passthru"] = "nxdomain"
    """For the plain formats: what a listed name gets; "passthru" makes an allowlist,
    which wins over every other policy."""
    action_override: Literal["", "nxdomain", "nodata", "drop", "passthru", "disabled"] = ""
    """RPZ: one action for every trigger of the zone ("disabled": only counted, logged)."""
    zone: str = ""
    """RPZ: the zone's origin (owner names are relative to it); default: `name`."""
    clients: tuple[Network, ...] = ()
    """Client networks it applies to; empty: everyone."""
    allow: tuple[str, ...] = ()
    """Names this policy never blocks (each with what is below it)."""
    url: str = ""
    """An https URL to fetch the list from every `refresh` (verified TLS; If-None-Match,
    If-Modified-Since; at most `max_size`)."""
    ca: Path | None = None
    """The CA bundle the URL's certificate is checked with (default: the system's)."""
    refresh: Duration = cfield(Duration(86400), min=1)
    max_size: Size = cfield(Size(64 << 20), min=1)
    log: Literal["debug", "info", "warning", "none"] = "info"
    """The level a blocked question is logged at."""
    ede: Literal["blocked", "filtered"] = "blocked"
    """The Extended DNS Error of its answers: 15 Blocked or 17 Filtered."""


@dataclass(slots=True)
class Hit:
    policy: Policy
    rule: Rule
    trigger: str  # the name or address that matched
    chain: list[Record] = field(default_factory=list)
    """The answer's CNAMEs up to the name that matched (kept in the reply, as Unbound
    does): the action applies to that name, the target of the last of them."""


@dataclass(slots=True)
class Policy:
    config: PolicyConfig
    lists: Lists
    watch: FileWatch
    allow: frozenset[str]
    hits: int = 0
    disabled: bool = False
    level: int = logging.INFO
    loaded_at: float = field(default_factory=time.time)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def passthru(self) -> bool:
        return self.config.format != "rpz" and self.config.action == PASSTHRU

    def applies(self, client: str) -> bool:
        return not self.config.clients or in_networks(client, self.config.clients)

    def allowed(self, name: str) -> bool:
        if not self.allow:
            return False
        while True:
            if name in self.allow:
                return True
            i = name.find(".")
            if i < 0 or i == len(name) - 1:
                return False
            name = name[i + 1:]


def _load(config: PolicyConfig) -> Lists:
    """Parse the policy's file (ConfigError saying why it cannot be)."""
    try:
        text = config.source.read_bytes().decode("utf-8", "replace")
    except OSError as exc:
        raise ConfigError([f"dns.policy {config.name!r}: {config.source}: "
                           f"{exc.strerror}"]) from None
    try:
        if config.format == "rpz":
            override = "" if config.action_override == "disabled" else config.action_override
            return parse_rpz(text, config.zone or config.name, override)
        return parse_plain(text, config.format, SIMPLE[config.action])
    except PolicyError as exc:
        raise ConfigError([f"dns.policy {config.name!r}: {config.source}: {exc}"]) from None


class Policies:
    """Every policy of one configuration, and the lookups the server makes."""

    def __init__(self, configs: tuple[PolicyConfig, ...],
                 previous: Policies | None = None) -> None:
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise ConfigError(["dns.policy: a name is used twice"])
        old = {p.name: p for p in (previous.all if previous else [])}
        self.all: list[Policy] = []
        for config in configs:
            kept = old.get(config.name)
            if kept is not None and kept.config == config and not _changed(kept.watch):
                self.all.append(kept)  # unchanged: not parsed again (a big list takes s)
                continue
            try:
                lists = _load(config)
            except ConfigError:
                if not (config.url and not config.source.exists()):
                    raise
                lists = Lists()  # to be fetched
            self.all.append(self._policy(config, lists))
        self.allowlists = [p for p in self.all if p.passthru]
        self.blocking = [p for p in self.all if not p.passthru]
        self.on_change: Any = None  # the server clears its answer cache
        self.due: dict[str, float] = dict(previous.due) if previous else {}  # next fetches

    @staticmethod
    def _policy(config: PolicyConfig, lists: Lists) -> Policy:
        level = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
                 "none": 0}[config.log]
        if lists.skipped or lists.unsupported:
            log.info("dns: policy %r: %d entries; %d lines skipped, %d triggers not acted "
                     "on", config.name, len(lists), lists.skipped, lists.unsupported)
        return Policy(config, lists, FileWatch([config.source]),
                      frozenset(name_key(a) for a in config.allow),
                      disabled=config.action_override == "disabled", level=level)

    def __bool__(self) -> bool:
        return bool(self.all)

    # --- lookups ---

    def match(self, client: str, name: str) -> Hit | None:
        """The policy hit for a question's name (None: resolve as usual)."""
        for p in self.allowlists:
            if p.applies(client) and p.lists.match(name) is not None:
                return None
        for p in self.blocking:
            if not p.applies(client) or p.allowed(name):
                continue
            rule = p.lists.match(name)
            if rule is not None:
                return self._hit(p, rule, name)
        return None

    def match_answer(self, client: str, answer: list[Record]) -> Hit | None:
        """A hit on an answer: a CNAME's target (each step of the chain), or an address
        (Response-IP triggers)."""
        # a chain that ends in no data gives nothing away: left alone, as Unbound does
        data = any(rr.rtype not in (CNAME, DNAME) for rr in answer)
        for i, rr in enumerate(answer):
            if rr.rtype == CNAME and data:
                hit = self.match(client, rr.target)
                if hit is not None:
                    hit.chain = answer[:i + 1]
                    return hit
        addresses = [rr.address for rr in answer if rr.rtype in (A, AAAA)]
        if not addresses:
            return None
        for p in self.blocking:
            if not p.lists.ips or not p.applies(client):
                continue
            for address in addresses:
                rule = p.lists.match_ip(address)
                if rule is not None:
                    return self._hit(p, rule, address)
        return None

    def touches(self, name: str, answer: list[Record]) -> bool:
        """Any policy (for any client) has something to say about this name or answer:
        such answers are not kept in the shared answer cache."""
        names = [name] + [rr.target for rr in answer if rr.rtype == CNAME]
        if any(p.lists.match(n) is not None for p in self.all for n in names):
            return True
        addresses = [rr.address for rr in answer if rr.rtype in (A, AAAA)]
        return any(p.lists.match_ip(a) is not None for p in self.all if p.lists.ips
                   for a in addresses)

    def _hit(self, p: Policy, rule: Rule, trigger: str) -> Hit | None:
        p.hits += 1
        if p.disabled:
            log.info("dns: policy %r (disabled) would have matched %s", p.name, trigger)
            return None
        if rule.action == PASSTHRU:
            return None
        return Hit(p, rule, trigger)

    def counts(self) -> dict[str, int]:
        return {p.name: p.hits for p in self.all}

    # --- keeping the lists current ---

    async def tick(self) -> None:
        """One look: fetch the URLs that are due, re-read the files that changed (a
        broken one keeps its old version)."""
        for p in list(self.all):
            if p.config.url and self.due.get(p.name, 0) <= time.monotonic():
                self.due[p.name] = time.monotonic() + float(p.config.refresh)
                await fetch(p.config)
            if p.watch.changed():
                await self._reread(p)

    async def _reread(self, p: Policy) -> None:
        try:
            lists = await anyio.to_thread.run_sync(_load, p.config)
        except ConfigError as exc:
            log.error("dns: %s; the previous version of the list stays", exc.problems[0])
            return
        fresh = self._policy(p.config, lists)
        fresh.hits = p.hits
        fresh.watch = p.watch
        self.all[self.all.index(p)] = fresh
        self.allowlists = [x for x in self.all if x.passthru]
        self.blocking = [x for x in self.all if not x.passthru]
        log.info("dns: policy %r re-read: %d entries", p.name, len(lists))
        if self.on_change is not None:
            self.on_change()


def _changed(watch: FileWatch) -> bool:
    return watch.changed()


async def fetch(config: PolicyConfig) -> bool:
    """GET the policy's URL into its source file (atomically), conditionally on what was
    fetched last (ETag, Last-Modified kept beside it); True when the file changed."""
    from netkit.clients.http.client import Client
    meta_path = config.source.with_name(config.source.name + ".meta")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        meta = {}
    headers = {}
    if config.source.exists():
        if meta.get("etag"):
            headers["if-none-match"] = meta["etag"]
        if meta.get("last_modified"):
            headers["if-modified-since"] = meta["last_modified"]
    tmp = config.source.with_name(f".{config.source.name}.{os.getpid()}.tmp")
    try:
        verify: bool | str = str(config.ca) if config.ca else True
        async with Client(timeout=60, follow_redirects=True, verify=verify) as client, \
                client.stream("GET", config.url, headers=headers) as r:
            if r.status_code == 304:
                return False
            if r.status_code != 200:
                log.warning("dns: policy %r: %s answered %d; the list stays as it was",
                            config.name, config.url, r.status_code)
                return False
            size = 0
            config.source.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                async for chunk in r.aiter_bytes():
                    size += len(chunk)
                    if size > config.max_size:
                        raise ValueError(f"over max_size ({config.max_size} bytes)")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, config.source)  # the watch sees a whole new file, never half
            meta = {"etag": r.headers.get("etag", ""),
                    "last_modified": r.headers.get("last-modified", "")}
            meta_path.write_text(json.dumps(meta))
            log.info("dns: policy %r: fetched %d bytes from %s", config.name, size, config.url)
            return True
    except Exception as exc:  # any failure keeps the list as it was
        log.warning("dns: policy %r: fetching %s failed (%s); the list stays as it was",
                    config.name, config.url, exc)
        tmp.unlink(missing_ok=True)
        return False


def is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True
