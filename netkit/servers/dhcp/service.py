"""The DHCPv4 server: `python -m netkit.servers.dhcp` (config, sockets, the contract).

    python -m netkit.servers.dhcp --config conf/dhcp.toml
    python -m netkit.servers.dhcp leases --config conf/dhcp.toml     # the lease table

It answers only on the interface it is given, for the subnet it is given: started
without both it refuses (exit 2), since a DHCP server that answers by default is a
rogue one. The rules (which address, which reply) are netkit/proto/dhcp/leases.py;
this module receives, commits the leases a loop turn changed (store.py) and only then
sends their ACKs, and routes each reply the way RFC 2131 4.1 says.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import random
import socket
import sys
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from netkit import events, running
from netkit.cli import server_main
from netkit.config import Address, Duration, Location, Network
from netkit.config import field as cfield
from netkit.contract import ServerSpec
from netkit.errors import ConfigError
from netkit.proto.dhcp import options as o
from netkit.proto.dhcp.leases import Event, Lease, Leases, Outcome, Reservation, Subnet
from netkit.proto.dhcp.packet import BOOTREQUEST, ZERO, MalformedPacket, Message, build, parse
from netkit.transport.connection import Counters
from netkit.transport.icmp import Pinger
from netkit.transport.interfaces import bind_on_interface, interface_address, set_arp_entry
from netkit.transport.listeners import DatagramEndpoint, DatagramHandler, SocketPresets

from .store import LeaseStore, Saved, StoreUnavailable, open_store

log = logging.getLogger("netkit.dhcp")
SECTION = "dhcp"
BROADCAST = "255.255.255.255"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationConfig:
    """``[[dhcp.reservation]]``: this client (by MAC, or by client identifier in hex)
    always gets `address`, and nobody else does."""

    address: str
    mac: str = ""
    client_id: str = ""
    hostname: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubnetConfig:
    """``[[dhcp.subnet]]`` (or the flat keys of ``[dhcp]`` for a single subnet)."""

    subnet: Network | None = None
    interface: str = ""
    """Where its clients are (for relayed clients: giaddr picks the subnet)."""
    pool: tuple[str, ...] = ()
    """Ranges handed out: ["10.0.0.100-10.0.0.199"] or single addresses."""
    router: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    domain: str = ""
    lease_time: Duration = cfield(Duration(3600), min=10)
    reservation: tuple[ReservationConfig, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    """Further options by name or code: {"ntp-servers" = ["10.0.0.1"], "121" = [...]}."""
    circuit_id: str = ""
    """Only relayed requests whose option 82 circuit id is this (text) pick this subnet."""
    server_id: str = ""
    """The server identifier (option 54); default: the interface's own address."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The ``[dhcp]`` section."""

    interface: str = ""
    subnet: Network | tuple[SubnetConfig, ...] | None = None
    """The network (the flat keys describe it), or ``[[dhcp.subnet]]`` tables, one per
    subnet, each with the keys of a subnet."""
    pool: tuple[str, ...] = ()
    router: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    domain: str = ""
    lease_time: Duration = cfield(Duration(3600), min=10)
    reservation: tuple[ReservationConfig, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    circuit_id: str = ""
    server_id: str = ""
    lease_db: Location = Location("netkit-leases.db")
    """Where the leases are kept across restarts: a SQLite file, or
    "postgresql://user@host/db" for a database several servers share (docs/servers/dhcp.md)."""
    db_timeout: Duration = cfield(Duration(2), min=0.1, max=60)
    """PostgreSQL: how long a query may take before the database counts as gone."""
    db_grace: Duration = cfield(Duration(3600), min=0)
    """PostgreSQL: how long after losing the database renewals of known leases are still
    answered (with the time the database already grants them); nothing new meanwhile."""
    port: int = cfield(67, min=0, max=65535)
    client_port: int = cfield(68, min=1, max=65535)
    offer_timeout: Duration = cfield(Duration(10), min=1)
    """How long an offered address is held for the client's REQUEST."""
    max_offers: int = cfield(256, min=1)
    """Offers outstanding at once; DISCOVERs beyond are dropped (a flood of random MACs
    cannot take the pool)."""
    decline_time: Duration = cfield(Duration(86400), min=1)
    """How long an address a client DECLINEd (or that answered a ping) stays out of the
    pool."""
    ping_check: bool = False
    """Ping an address before offering it to a client that did not hold it (root); one
    that answers is in use by someone the server does not know: it is skipped."""
    ping_timeout: Duration = cfield(Duration(0.5), min=0.05, max=5)
    shutdown_timeout: Duration = Duration(5)


def _subnet_configs(config: Config) -> list[tuple[str, SubnetConfig]]:
    if isinstance(config.subnet, tuple):
        return [(f"dhcp.subnet[{i}]", sc) for i, sc in enumerate(config.subnet)]
    # the flat keys of [dhcp] are a subnet's keys: the shorthand for a single subnet
    flat = SubnetConfig(**{f.name: getattr(config, f.name)
                           for f in dataclasses.fields(SubnetConfig)})
    return [("dhcp", flat)] if config.subnet is not None else []


def _ranges(where: str, sc: SubnetConfig, network: ipaddress.IPv4Network,
            problems: list[str]) -> list[tuple[int, int]]:
    ranges = []
    for text in sc.pool:
        lo_text, _, hi_text = text.partition("-")
        try:
            lo = ipaddress.IPv4Address(lo_text.strip())
            hi = ipaddress.IPv4Address((hi_text or lo_text).strip())
        except ValueError:
            problems.append(f"{where}.pool: {text!r} is not A.B.C.D-A.B.C.D")
            continue
        if lo > hi or lo not in network or hi not in network:
            problems.append(f"{where}.pool: {text!r} is not a range inside {network}")
            continue
        if lo == network.network_address or hi == network.broadcast_address:
            problems.append(f"{where}.pool: {text!r} takes the network's own or broadcast "
                            f"address")
            continue
        ranges.append((int(lo), int(hi)))
    return ranges


def build_subnets(config: Config, *, resolve_interfaces: bool = True) -> list[Subnet]:
    """The engine's subnets from the config; ConfigError lists every problem."""
    problems: list[str] = []
    subnets = []
    configs = _subnet_configs(config)
    if not configs or not (config.interface or all(sc.interface for _, sc in configs)):
        missing = [k for k, v in (("dhcp.interface", config.interface or
                                   any(sc.interface for _, sc in configs)),
                                  ("dhcp.subnet", configs)) if not v]
        raise ConfigError([f"dhcp: {' and '.join(missing) or 'an interface per subnet'} "
                           f"not set: a DHCP server answers only on the interface and for "
                           f"the subnet it is given"])
    for where, sc in configs:
        if sc.subnet is None or sc.subnet.version != 4:
            problems.append(f"{where}.subnet: an IPv4 network is needed")
            continue
        network = sc.subnet
        ranges = _ranges(where, sc, network, problems)
        if not ranges and not sc.reservation:
            problems.append(f"{where}.pool: no addresses to hand out")
        interface = sc.interface or config.interface
        server_id = sc.server_id or (interface_address(interface) if resolve_interfaces
                                     else "0.0.0.0") or ""
        if not server_id:
            problems.append(f"{where}: interface {interface!r} has no IPv4 address (set "
                            f"server_id, or give the interface an address)")
            continue
        opts: dict[int, bytes] = {}
        try:
            if sc.router:
                opts[3] = o.encode(3, list(sc.router))
            if sc.dns:
                opts[6] = o.encode(6, list(sc.dns))
            if sc.domain:
                opts[15] = o.encode(15, sc.domain)
            opts[28] = network.broadcast_address.packed
            for key, value in sc.options.items():
                code = o.code_of(key)
                opts[code] = o.encode(code, value)
        except ValueError as exc:
            problems.append(f"{where}.options: {exc}")
        reservations = []
        for j, r in enumerate(sc.reservation):
            try:
                ip = ipaddress.IPv4Address(r.address)
            except ValueError:
                problems.append(f"{where}.reservation[{j}].address: {r.address!r}")
                continue
            if ip not in network or not (r.mac or r.client_id):
                problems.append(f"{where}.reservation[{j}]: an address in {network} and a "
                                f"mac or client_id are needed")
                continue
            reservations.append(Reservation(str(ip), r.mac.lower(), r.client_id.lower(),
                                            r.hostname))
        subnets.append(Subnet(network=network, ranges=ranges, server_id=server_id,
                              lease_time=int(sc.lease_time), options=opts,
                              reservations=reservations, interface=interface,
                              circuit_id=sc.circuit_id.encode(), name=str(network)))
    if problems:
        raise ConfigError(problems)
    return subnets


@dataclass(slots=True)
class _Held:
    """A reply waiting for its leases to be saved."""

    iface: _Interface
    msg: Message
    reply: Message
    addr: tuple[str, int]
    tries: int = 0  # answered again after another server took the address


def _agrees(held: _Held, lease: Lease | None) -> bool:
    """The saved lease is the one the reply announces (an OFFER: offered or bound to
    that client; an ACK: bound to it); replies naming no lease always agree."""
    kind = held.reply.type
    if kind not in (o.OFFER, o.ACK) or held.reply.yiaddr == ZERO or lease is None:
        return True  # nothing of it was in this batch (its lease did not change)
    if lease.client != held.msg.client_key:
        return False
    return lease.state == "bound" or (kind == o.OFFER and lease.state == "offered")


class _Interface(DatagramHandler):
    """The datagrams of one interface's socket."""

    def __init__(self, service: DHCPService, name: str, address: str) -> None:
        self.service = service
        self.name = name
        self.address = address
        self.endpoint: DatagramEndpoint | None = None
        self.pinger: Pinger | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int],
                          endpoint: DatagramEndpoint) -> None:
        self.service.received(self, data, addr)


class DHCPService:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.subnets = build_subnets(config)
        self.engine = Leases(self.subnets, offer_timeout=config.offer_timeout,
                             max_offers=config.max_offers, decline_time=config.decline_time)
        self.store: LeaseStore | None = None
        self.interfaces: list[_Interface] = []
        self.transport_counters = Counters()
        self.stats: dict[str, int] = dict.fromkeys(
            ("malformed", "dropped", "offers", "acks", "naks", "informs", "releases",
             "declines", "ping_conflicts", "claims_refused", "db_outages", "db_past_grace"),
            0)
        self._tasks: set[asyncio.Task[None]] = set()
        self.drops: dict[str, int] = {}
        self._uncommitted: list[Lease] = []
        self._held_replies: list[_Held] = []
        # (client, xid, message type) of the replies held: a retransmission of one of
        # them is not answered twice (under load it would only add work and writes)
        self._answering: set[tuple[str, int, int]] = set()
        self._events: list[Event] = []
        self._flush_scheduled = False
        self._committing: asyncio.Task[None] | None = None
        self._in_flight: frozenset[str] = frozenset()  # addresses of the commit under way
        self._last_full_log = 0.0
        self.db_lost_at: float | None = None  # monotonic; a shared store that went away
        self.port = config.port

    # --- the contract ---

    async def start(self, tg: anyio.abc.TaskGroup, presets: SocketPresets) -> None:
        self.store = await anyio.to_thread.run_sync(
            lambda: open_store(self.config.lease_db, timeout=self.config.db_timeout,
                               name=f"{socket.gethostname()}:{os.getpid()}/"
                                    f"{self.subnets[0].server_id}"))
        try:
            leases = await self.store.load()
        except StoreUnavailable as exc:
            raise ConfigError([f"dhcp.lease_db: {self.store!r}: {exc}"]) from exc
        for lease in leases:
            lease.durable = lease.expires if lease.state == "bound" else 0.0
        self.engine.load(leases)
        log.info("dhcp: %d lease(s) from %s", len(leases), self.store)
        if self.store.shared:
            # other servers take addresses from the same pools: offers are claimed in
            # the database too, and each server starts its search somewhere else
            self.engine.persist_offers = True
            self._spread_searches()
            tg.start_soon(self._follow_store)
        loop = asyncio.get_running_loop()
        names = sorted({s.interface for s in self.subnets})
        for name in names:
            sock = bind_on_interface(name, self.config.port)
            address = interface_address(name) or ZERO
            handler = _Interface(self, name, address)
            _, endpoint = await loop.create_datagram_endpoint(
                lambda h=handler: DatagramEndpoint(h, self.transport_counters, "dhcp"),
                sock=sock)
            handler.endpoint = endpoint
            if self.config.ping_check:
                handler.pinger = Pinger.open(name)
                if handler.pinger is None:
                    log.warning("dhcp: ping_check needs a raw socket (root); offers on %s "
                                "go out without it", name)
            self.interfaces.append(handler)
            self.port = sock.getsockname()[1]
            log.info("dhcp: listening on %s:%d (udp, interface %s)", address, self.port, name)
        tg.start_soon(self._expiry_loop)

    def reload(self, config: Config) -> None:
        """Pools, reservations and options change; interfaces, ports and the lease
        database need a restart."""
        old = self.config
        if (config.port, config.lease_db) != (old.port, old.lease_db) or \
                {s.interface for s in build_subnets(config)} != \
                {s.interface for s in self.subnets}:
            raise ConfigError(["dhcp: interfaces, port or lease_db changed; restart to "
                               "apply"])
        subnets = build_subnets(config)
        self.engine.reconfigure(subnets)
        if self.store is not None and self.store.shared:
            self._spread_searches()
        self.engine.offer_timeout = config.offer_timeout
        self.engine.max_offers = config.max_offers
        self.engine.decline_time = config.decline_time
        self.subnets, self.config = subnets, config
        log.info("dhcp: reloaded: %d subnet(s), %d reservation(s)", len(subnets),
                 sum(len(s.reservations) for s in subnets))

    async def drain(self, timeout: float) -> None:
        for task in list(self._tasks):
            task.cancel()
        for iface in self.interfaces:
            if iface.pinger is not None:
                iface.pinger.close()
            if iface.endpoint is not None and iface.endpoint.transport is not None:
                iface.endpoint.transport.close()
        self._flush()
        with anyio.move_on_after(timeout):  # what was answered is committed first
            while self._committing or self._uncommitted:
                await anyio.sleep(0.01)
        if self._committing is not None:
            self._committing.cancel()
        if self.store is not None:
            await self.store.close()
            self.store = None

    def addresses(self) -> list[Address]:
        return [Address(i.address, self.port) for i in self.interfaces]

    def counters(self) -> dict[str, int]:
        return {"datagrams_in": self.transport_counters.datagrams_in,
                "datagrams_out": self.transport_counters.datagrams_out, **self.stats,
                **{f"leases_{k}": v for k, v in self.engine.count().items()},
                "db_available": int(self.db_lost_at is None)}

    def status(self) -> dict[str, Any]:
        return {"interfaces": [{"name": i.name, "address": i.address} for i in self.interfaces],
                "port": self.port, "drops": dict(self.drops), "lease_db": repr(self.store),
                **self.counters()}

    # --- a shared store ---

    def _spread_searches(self) -> None:
        for subnet in self.subnets:
            subnet.cursor = random.randrange(max(subnet.size, 1))

    def _pending(self) -> set[str]:
        return {x.address for x in self._uncommitted} | set(self._in_flight)

    async def _follow_store(self) -> None:
        """Every second: what other servers wrote; and, once the database is gone,
        reconnect until it is back (then read everything again)."""
        assert self.store is not None
        while True:
            await anyio.sleep(1.0)
            store = self.store
            if store is None:
                return
            try:
                if self.db_lost_at is None:
                    self.engine.merge(await store.changes(), skip=self._pending())
                    continue
                rows = await store.load()
            except StoreUnavailable as exc:
                self._lost(exc)
                continue
            self.engine.merge(rows, skip=self._pending())
            log.warning("dhcp: lease database %r is back after %.0f s: new leases again",
                        store, time.monotonic() - self.db_lost_at)
            self.db_lost_at = None
            self.stats["db_past_grace"] = 0
            self.engine.new_leases = True

    def _lost(self, exc: Exception) -> None:
        if self.db_lost_at is None:
            self.db_lost_at = time.monotonic()
            self.engine.new_leases = False
            self.stats["db_outages"] += 1
            log.error("dhcp: lease database %r unreachable (%s): renewals of known leases "
                      "only, for %.0f s (db_grace)", self.store, exc, self.config.db_grace)
        elif time.monotonic() - self.db_lost_at > self.config.db_grace and \
                self.stats.get("db_past_grace") == 0:
            self.stats["db_past_grace"] = 1
            log.error("dhcp: lease database still unreachable past db_grace: no answers")

    def _past_grace(self) -> bool:
        return self.db_lost_at is not None and \
            time.monotonic() - self.db_lost_at > self.config.db_grace

    # --- receiving ---

    def received(self, iface: _Interface, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = parse(data)
        except MalformedPacket as exc:
            self.stats["malformed"] += 1
            log.debug("dhcp: %s: malformed: %s", addr[0], exc)
            return
        if msg.op != BOOTREQUEST:
            return self._drop("a BOOTREPLY (another server's answer)")
        if self.db_lost_at is not None and self._past_grace():
            return self._drop("the lease database is unreachable past db_grace")
        if self._answering and (msg.client_key, msg.xid, msg.type) in self._answering:
            return self._drop("a retransmission: its answer is on its way")
        if self.config.ping_check and msg.type == o.DISCOVER and iface.pinger is not None:
            self._spawn(self._discover_with_ping(iface, msg, addr))
            return
        outcome = self.engine.handle(msg, time.time(), interface=iface.name,
                                     interface_address=iface.address)
        self._handled(iface, msg, outcome, addr)

    def _handled(self, iface: _Interface, msg: Message, outcome: Outcome,
                 addr: tuple[str, int], tries: int = 0) -> None:
        self._account(msg, outcome)
        if outcome.changed or outcome.events:
            self._keep(outcome.changed)
            self._events.extend(outcome.events)
            if outcome.reply is not None:  # an ACK goes out once its lease is on disk
                self._held_replies.append(_Held(iface, msg, outcome.reply, addr, tries))
                self._answering.add((msg.client_key, msg.xid, msg.type))
            self._schedule_flush()
        elif outcome.reply is not None:
            self._send(iface, msg, outcome.reply, addr)

    def _keep(self, changed: list[Lease]) -> None:
        """Changes to commit, as the engine made them now: a copy, since the engine goes
        on changing its own leases (a later change in memory only, such as an offer
        withdrawn because the client took another server's, must never be written)."""
        self._uncommitted.extend(dataclasses.replace(x) for x in changed)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _discover_with_ping(self, iface: _Interface, msg: Message,
                                  addr: tuple[str, int]) -> None:
        """The offer waits for a ping of the address it names (unless the client holds
        it already); an address that answers is set aside and another is picked (three
        tries)."""
        assert iface.pinger is not None
        for _ in range(3):
            held = self.engine.by_client.get(msg.client_key)
            outcome = self.engine.handle(msg, time.time(), interface=iface.name,
                                         interface_address=iface.address)
            reply = outcome.reply
            if reply is None or reply.type != o.OFFER or (
                    held is not None and held.address == reply.yiaddr and
                    held.state in ("bound", "offered")):
                break
            if not await iface.pinger.alive(reply.yiaddr, self.config.ping_timeout):
                break
            log.warning("dhcp: %s answered a ping but nobody holds a lease for it: not "
                        "offered, set aside", reply.yiaddr)
            self.stats["ping_conflicts"] += 1
            self._keep([self.engine.conflict(reply.yiaddr, time.time())])
            self._schedule_flush()
        else:
            return  # three addresses in use: the client asks again
        self._handled(iface, msg, outcome, addr)

    def _account(self, msg: Message, outcome: Outcome) -> None:
        if outcome.dropped and outcome.reply is None:
            kind = msg.type
            if kind == o.RELEASE and outcome.changed:
                self.stats["releases"] += 1
            elif kind == o.DECLINE and outcome.changed:
                self.stats["declines"] += 1
                log.warning("dhcp: %s declined %s (in use by someone else): quarantined",
                            msg.mac, msg.ip_option(50))
            else:
                self._drop(outcome.dropped)
            return
        reply = outcome.reply
        if reply is None:
            return
        kind = reply.type
        if kind == o.OFFER:
            self.stats["offers"] += 1
        elif kind == o.NAK:
            self.stats["naks"] += 1
            log.info("dhcp: NAK to %s: %s", msg.mac, reply.options.get(56, b"").decode())
        elif kind == o.ACK:
            self.stats["acks" if reply.yiaddr != ZERO else "informs"] += 1

    def _drop(self, why: str) -> None:
        self.stats["dropped"] += 1
        self.drops[why] = self.drops.get(why, 0) + 1
        if why == "pool full":
            now = time.monotonic()
            if now - self._last_full_log > 60:
                self._last_full_log = now
                log.warning("dhcp: pool full: DISCOVERs go unanswered (said once a minute)")

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """The lease changes waiting, in one commit, then their replies and events. While
        a commit is on its way the next batch gathers (group commit): the loop goes on
        receiving instead of waiting for the disk or the database."""
        self._flush_scheduled = False
        if self._committing is not None:
            return  # `_commit` starts the next one
        leases, self._uncommitted = self._uncommitted, []
        replies, self._held_replies = self._held_replies, []
        happened, self._events = self._events, []
        if not leases or self.store is None:
            self._answered(replies)
            self._deliver(replies, happened)
            return
        batch = leases
        self._in_flight = frozenset(x.address for x in batch)
        self._committing = asyncio.get_running_loop().create_task(
            self._commit(self.store, batch, replies, happened))

    async def _commit(self, store: LeaseStore, batch: list[Lease], replies: list[_Held],
                      happened: list[Event]) -> None:
        try:
            saved = await store.save(batch)
        except StoreUnavailable as exc:
            self._answered(replies)  # no ACK for what is not saved: clients ask again
            self._lost(exc)
            log.warning("dhcp: %d lease(s) not saved: their replies are not sent",
                        len(batch))
        except Exception as exc:
            self._answered(replies)
            log.error("dhcp: cannot save %d lease(s): %s; their ACKs are not sent",
                      len(batch), exc)
        else:
            self._answered(replies)
            self._saved(batch, saved, replies, happened)
        finally:
            self._committing = None
            self._in_flight = frozenset()
        if self._uncommitted or self._held_replies or self._events:
            self._flush()

    def _answered(self, replies: list[_Held]) -> None:
        for held in replies:
            self._answering.discard((held.msg.client_key, held.msg.xid, held.msg.type))

    def _saved(self, batch: list[Lease], saved: Saved, replies: list[_Held],
               happened: list[Event]) -> None:
        # an answer goes out only if what was saved says the same (a lease the engine
        # changed again before its commit, say): else the client asks again
        written = {x.address: x for x in batch}
        replies = [r for r in replies if _agrees(r, written.get(r.reply.yiaddr))]
        for lease in batch:  # this view is now the database's, at those versions
            version = saved.versions.get(lease.address)
            current = self.engine.by_address.get(lease.address)
            if version is not None and current is not None and \
                    current.client == lease.client:
                current.version = version
                if lease.state == "bound":
                    current.durable = lease.expires
        if not saved.refused:
            self._deliver(replies, happened)
            return
        # another server holds these addresses: learn who, then answer again from that
        # (another address for a DISCOVER, a NAK for a REQUEST)
        self.stats["claims_refused"] += len(saved.refused)
        self.engine.merge([x for x in saved.refused.values() if x is not None])
        # the other server is most likely walking the pool from near here: search on
        # somewhere else rather than one address behind it
        self._spread_searches()
        self._deliver([r for r in replies if r.reply.yiaddr not in saved.refused],
                      [e for e in happened if e.lease.address not in saved.refused])
        now = time.time()
        for held in replies:
            if held.reply.yiaddr not in saved.refused:
                continue
            if held.tries >= 3:
                self._drop("another server took each address picked")
                continue
            outcome = self.engine.handle(held.msg, now, interface=held.iface.name,
                                         interface_address=held.iface.address)
            self._handled(held.iface, held.msg, outcome, held.addr, held.tries + 1)

    def _deliver(self, replies: list[_Held], happened: list[Event]) -> None:
        for held in replies:
            self._send(held.iface, held.msg, held.reply, held.addr)
        for event in happened:
            lease = event.lease
            log.info("dhcp: %s %s %s%s", event.kind, lease.address, lease.mac or "-",
                     f" ({lease.hostname})" if lease.hostname else "")
            events.publish("dhcp.lease", event)

    def _send(self, iface: _Interface, msg: Message, reply: Message,
              source: tuple[str, int]) -> None:
        """RFC 2131 4.1: to the relay agent; NAK broadcast; to ciaddr; broadcast when the
        client asks; else unicast to the new address through an ARP entry made for it."""
        endpoint = iface.endpoint
        if endpoint is None:
            return
        client_port = self.config.client_port
        if msg.giaddr != ZERO:
            # relay agents send from port 67; answering the port it came from also lets a
            # test's relay-style client use a port of its own
            dest = (msg.giaddr, source[1])
        elif reply.type == o.NAK or msg.broadcast:
            dest = (BROADCAST, client_port)
        elif msg.ciaddr != ZERO:
            dest = (msg.ciaddr, client_port)
        elif reply.yiaddr != ZERO and endpoint.transport is not None and set_arp_entry(
                endpoint.transport.get_extra_info("socket"), iface.name, reply.yiaddr,
                msg.mac):
            dest = (reply.yiaddr, client_port)
        else:
            dest = (BROADCAST, client_port)
        try:
            data = build(reply, msg.max_reply_size())
        except ValueError as exc:
            log.warning("dhcp: cannot build a reply to %s: %s", msg.mac, exc)
            return
        endpoint.send(data, dest)

    async def _expiry_loop(self) -> None:
        while True:
            await anyio.sleep(1.0)
            outcome = self.engine.expire(time.time())
            if outcome.changed:
                if self.store is None or not self.store.shared:
                    self._keep(outcome.changed)
                # else: a row past its expiry is free as it is; writing "expired" from
                # every server's clock would only race with a renewal on another server
                self._events.extend(outcome.events)
                self._schedule_flush()


def lease_rows(config: Config) -> list[dict[str, Any]]:
    """What `python -m netkit.servers.dhcp leases` prints: from the database, running or
    not."""
    if not config.lease_db.is_url and not config.lease_db.path.exists():
        return []

    async def read() -> list[Lease]:
        store = open_store(config.lease_db, readonly=True, timeout=config.db_timeout)
        try:
            return await store.load()
        finally:
            await store.close()
    leases = asyncio.run(read())
    now = time.time()
    return [{"address": x.address, "mac": x.mac, "hostname": x.hostname,
             "state": "expired" if x.state == "bound" and x.expires <= now else x.state,
             "expires": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(x.expires)),
             "client": x.client} for x in leases]


def leases_view(service: DHCPService, args: dict[str, Any]) -> list[dict[str, Any]]:
    """`netkit ctl leases`: the running server's table (offers included)."""
    now = time.time()
    return [{"address": x.address, "mac": x.mac, "hostname": x.hostname, "state": x.state,
             "expires_in": round(x.expires - now)}
            for x in sorted(service.engine.by_address.values(),
                            key=lambda x: ipaddress.IPv4Address(x.address))]


def release_view(service: DHCPService, args: dict[str, Any]) -> dict[str, Any]:
    """`netkit ctl release address=A` (POST /dhcp/release?address=): end a lease now, as
    if its client had released it (the address may go to another client)."""
    address = str(args.get("address", ""))
    lease = service.engine.by_address.get(address)
    if lease is None or lease.state not in ("bound", "offered"):
        raise ValueError(f"no lease held on {address!r}")
    lease.state = "released"
    lease.expires = time.time()
    service._keep([lease])
    service._events.append(Event("released", lease))
    service._schedule_flush()
    log.warning("dhcp: %s released by the operator (%s)", address, lease.mac)
    return {"address": address, "released": True}


def create(config: Config | Mapping[str, Any] | str | None = None) -> DHCPService:
    return DHCPService(running.load(SPEC, config))


def check(config: Config) -> None:
    """--check-config: everything but the interfaces' addresses (an interface may come
    later, made by whatever sets the network up)."""
    build_subnets(config, resolve_interfaces=False)


def serve(config: Config | Mapping[str, Any] | str | None = None
          ) -> AbstractAsyncContextManager[running.Server]:
    return running.serve(SPEC, config)


def _loopback_defaults(doc: dict[str, Any], address: str) -> None:
    """Under serve(): on the loopback interface, a port of its own (tests)."""
    section = doc.setdefault(SECTION, {})
    section.setdefault("interface", "lo")
    section.setdefault("port", 0)


SPEC = ServerSpec(
    name=SECTION, summary="DHCPv4 server: leases on one interface, kept in SQLite",
    config=Config, create=create, check=check, listen_specs=lambda config: [],
    loopback_defaults=_loopback_defaults,
    commands={"leases": leases_view, "release": release_view},
    single_process="one lease database per server",
    gauges=frozenset({"leases_offered", "leases_bound", "leases_released", "leases_expired",
                      "leases_declined"}), actions=frozenset({"release"}))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["leases"]:
        return _leases_command(argv[1:])
    return server_main(SECTION, argv)


def _leases_command(argv: list[str]) -> int:
    import argparse
    import json


    p = argparse.ArgumentParser(prog="python -m netkit.servers.dhcp leases",
                                description="The lease table, from the lease database.")
    p.add_argument("--config", type=Path)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from netkit.cli import subcommand_config
    try:
        config = subcommand_config(SPEC, args.config, args.set)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    rows = lease_rows(config)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'address':<16} {'mac':<18} {'hostname':<20} {'state':<9} expires")
    for r in rows:
        print(f"{r['address']:<16} {r['mac']:<18} {r['hostname']:<20} {r['state']:<9} "
              f"{r['expires']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
