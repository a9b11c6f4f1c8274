"""The NAT/firewall relay: `python -m netkit.servers.relay` (config and the contract).

    python -m netkit.servers.relay --config conf/relay.toml
    netkit ctl table          # the connection table, as the textbook draws NAT
    netkit ctl rules          # the firewall rules with their counters
    netkit ctl faults forward=web latency=0.2     # a fault changed at run time
    python -m netkit.servers.relay route-get 10.1.2.3 --config conf/relay.toml

Port forwards (DNAT) for TCP and UDP from `[[relay.forward]]`, each connection or
UDP flow first asked of the firewall (`[[relay.rule]]`, netkit/proto/relay/rules.py),
then entered in the connection table (conntrack.py) within its limits; the source
address towards a target comes from `[[relay.route]]` (longest prefix). Nothing is
forwarded unless configured: with no forwards it refuses to start.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.abc

from netkit import running
from netkit.cli import server_main
from netkit.config import Address, Duration, Network, Size, field
from netkit.contract import ServerSpec
from netkit.errors import ConfigError
from netkit.proto.relay.addresses import NetSet
from netkit.proto.relay.conntrack import ConnectionTable
from netkit.proto.relay.faults import Faults
from netkit.proto.relay.routes import Route, RouteTable
from netkit.proto.relay.rules import Firewall, Rule, parse_ports
from netkit.transport.connection import Counters, Limits
from netkit.transport.listeners import SocketPresets, bind_socket

log = logging.getLogger("netkit.relay")
SECTION = "relay"


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultsConfig:
    """``[relay.forward.faults]``: what this forward does to traffic (tests of
    applications against bad networks); changeable at run time (`netkit ctl faults`)."""

    latency: Duration = Duration(0)
    jitter: Duration = Duration(0)
    bandwidth: Size = Size(0)
    """Bytes a second each way; 0: unlimited."""
    loss: float = field(0.0, min=0, max=1)
    """Share of UDP datagrams dropped."""
    reset_after: Size = Size(0)
    """Reset a TCP connection after this many bytes (both ways); 0: never."""
    blackhole: bool = False
    """Accept and read, never forward, never answer."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardConfig:
    """``[[relay.forward]]``: DNAT from `listen` to `to` (one target or several)."""

    listen: Address
    to: tuple[Address, ...]
    proto: Literal["tcp", "udp"] = "tcp"
    name: str = ""
    balance: Literal["round-robin", "first-healthy"] = "round-robin"
    health_interval: Duration = field(Duration(5), min=0.1)
    """Seconds between TCP connect checks of each target (several targets, TCP)."""
    send_proxy: Literal["off", "v1", "v2"] = "off"
    """A PROXY header to the target (TCP) so it sees the real client address."""
    connect_timeout: Duration = field(Duration(10), min=0.1)
    faults: FaultsConfig = FaultsConfig()


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleConfig:
    """``[[relay.rule]]``: first match wins."""

    action: Literal["allow", "deny", "reject"]
    proto: Literal["tcp", "udp", "icmp", "any"] = "any"
    src: tuple[Network, ...] = ()
    dst: tuple[Network, ...] = ()
    dport: int | str | None = None
    """A port (80) or a range ("8000-8010")."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteConfig:
    """``[[relay.route]]``: flows towards `dst` leave from the address `via`."""

    dst: Network
    via: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketConfig:
    """``[relay.packet]``: the packet mode, a router between two TUN devices (root).
    The relay opens (makes) both devices; their addresses and routes are set by whoever
    builds the network (a test, `netkit lab`), after moving them where they belong."""

    tun: str
    """The inside TUN device: the inside network's hosts route through it."""
    outside_tun: str
    """The outside TUN device: the outside network is behind it."""
    outside: str
    """The address every packet leaves with (masquerade)."""
    inside_router: str
    """The router's own address on the inside (ICMP errors come from it; it answers
    pings)."""
    outside_mtu: int = field(1500, min=576, max=65535)
    port_min: int = field(20000, min=1024, max=65535)
    port_max: int = field(59999, min=1024, max=65535)
    tcp_established_timeout: Duration = field(Duration(7440), min=1)
    tcp_transitory_timeout: Duration = field(Duration(240), min=1)
    icmp_timeout: Duration = field(Duration(30), min=1)

    def __post_init__(self) -> None:
        for name in ("outside", "inside_router"):
            try:
                if ipaddress.ip_address(getattr(self, name)).version != 4:
                    raise ValueError
            except ValueError:
                raise ValueError(f"{name}: an IPv4 address is needed, got "
                                 f"{getattr(self, name)!r}") from None
        if self.port_min > self.port_max:
            raise ValueError("port_min is above port_max")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The ``[relay]`` section."""

    forward: tuple[ForwardConfig, ...] = ()
    packet: PacketConfig | None = None
    rule: tuple[RuleConfig, ...] = ()
    default_policy: Literal["allow", "deny", "reject"] = "deny"
    """After the rules (with no rules at all: private and loopback sources allowed)."""
    route: tuple[RouteConfig, ...] = ()
    udp_idle_timeout: Duration = field(Duration(30), min=0.1)
    max_entries: int = field(10_000, min=1)
    """Flows in the connection table at once; more are refused (RST, or dropped)."""
    max_per_source: int = field(256, min=1)
    """Flows one client address may hold at once."""
    tcp: Limits = Limits(idle_timeout=Duration(600))
    shutdown_timeout: Duration = Duration(10)


def build_rules(config: Config) -> Firewall:
    rules, problems = [], []
    for i, rc in enumerate(config.rule):
        try:
            dport = parse_ports(rc.dport) if rc.dport is not None else None
        except ValueError as exc:
            problems.append(f"relay.rule[{i}].dport: {exc}")
            continue
        rules.append(Rule(rc.action, rc.proto, NetSet(rc.src), NetSet(rc.dst), dport))
    if problems:
        raise ConfigError(problems)
    return Firewall(rules, config.default_policy)


def build_routes(config: Config) -> RouteTable:
    problems = []
    routes = []
    for i, rc in enumerate(config.route):
        try:
            via = ipaddress.ip_address(rc.via)
        except ValueError:
            problems.append(f"relay.route[{i}].via: {rc.via!r} is not an address")
            continue
        if via.version != rc.dst.version:
            problems.append(f"relay.route[{i}]: via {rc.via} and dst {rc.dst} are of "
                            f"different IP versions")
            continue
        routes.append(Route(rc.dst, str(via)))
    if problems:
        raise ConfigError(problems)
    return RouteTable(routes)


def _faults(fc: FaultsConfig) -> Faults:
    return Faults(latency=fc.latency, jitter=fc.jitter, bandwidth=int(fc.bandwidth),
                  loss=fc.loss, reset_after=int(fc.reset_after), blackhole=fc.blackhole)


class Forward:
    """One `[[relay.forward]]` at run time: its targets' health, the next pick, faults."""

    def __init__(self, service: RelayService, config: ForwardConfig, index: int) -> None:
        self.service = service
        self.config = config
        self.name = config.name or f"{config.proto}/{config.listen}"
        self.faults = _faults(config.faults)
        self.healthy = {str(t): True for t in config.to}
        self.next = 0
        self.index = index
        self.handler: Any = None

    def pick(self) -> Address:
        targets = self.config.to
        if self.config.balance == "first-healthy":
            for t in targets:
                if self.healthy.get(str(t), True):
                    return t
            return targets[0]
        for _ in range(len(targets)):
            t = targets[self.next % len(targets)]
            self.next += 1
            if self.healthy.get(str(t), True):
                return t
        return targets[self.next % len(targets)]

    def health_failed(self, target: Address) -> None:
        if len(self.config.to) > 1 and self.healthy.get(str(target)):
            self.healthy[str(target)] = False
            log.warning("relay %s: target %s is down", self.name, target)

    async def check_health(self) -> None:
        """A TCP connect to each target every `health_interval` (several TCP targets)."""
        while True:
            for target in self.config.to:
                up = await _connects(target, min(2.0, self.config.health_interval))
                was = self.healthy.get(str(target), True)
                if up != was:
                    self.healthy[str(target)] = up
                    log.warning("relay %s: target %s is %s", self.name, target,
                                "up again" if up else "down")
            await anyio.sleep(self.config.health_interval)


async def _connects(target: Address, timeout: float) -> bool:
    try:
        with anyio.fail_after(timeout):
            stream = await anyio.connect_tcp(target.host, target.port)
    except (OSError, TimeoutError):
        return False
    await stream.aclose()
    return True


class RelayService:
    def __init__(self, config: Config) -> None:
        if not config.forward and config.packet is None:
            raise ConfigError(["relay.forward: nothing to forward (a relay forwards only "
                               "what it is told to), and no relay.packet"])
        self.config = config
        self.firewall = build_rules(config)
        self.routes = build_routes(config)
        self.table = ConnectionTable(max_entries=config.max_entries,
                                     max_per_source=config.max_per_source)
        self.transport_counters = Counters()
        self.stats = dict.fromkeys(("denied", "rejected", "table_full", "faults_dropped",
                                    "udp_expired"), 0)
        self.forwards = [Forward(self, fc, i) for i, fc in enumerate(config.forward)]
        self.tasks: set[asyncio.Task[Any]] = set()
        self._last_full_log = 0.0
        self.bound: list[Address] = []
        self.router: Any = None

    def source_for(self, host: str) -> str | None:
        try:
            route = self.routes.lookup(host)
        except ValueError:
            return None
        return route.via if route is not None else None

    def log_table_full(self) -> None:
        now = time.monotonic()
        if now - self._last_full_log > 10:
            self._last_full_log = now
            log.warning("relay: connection table full (%d flows, %d per source at most): "
                        "new flows refused (said once in 10 s)", self.config.max_entries,
                        self.config.max_per_source)

    async def start(self, tg: anyio.abc.TaskGroup, presets: SocketPresets) -> None:
        from .tcp import TCPForward
        from .udp import UDPForward
        for f in self.forwards:
            sock = presets.pop((f.config.proto, str(f.config.listen)), None) or \
                bind_socket(f.config.proto, f.config.listen)
            if f.config.proto == "tcp":
                f.handler = TCPForward(f)
                self.bound += await f.handler.server.listen(
                    [f.config.listen], presets={("tcp", str(f.config.listen)): sock})
                if len(f.config.to) > 1:
                    tg.start_soon(f.check_health)
            else:
                f.handler = UDPForward(f)
                self.bound += await f.handler.server.listen(
                    [f.config.listen], presets={("udp", str(f.config.listen)): sock})
            log.info("relay %s: %s %s -> %s", f.name, f.config.proto, self.bound[-1],
                     ", ".join(map(str, f.config.to)))
        if self.config.packet is not None:
            from .packets import PacketRouter
            self.router = PacketRouter(self, self.config.packet)
            self.router.open()
        tg.start_soon(self._expiry_loop)

    async def _expiry_loop(self) -> None:
        while True:
            await anyio.sleep(min(1.0, self.config.udp_idle_timeout / 2))
            now = time.time()
            if self.router is not None:
                self.router.expire(now)
            for f in self.forwards:
                if f.config.proto == "udp" and f.handler is not None:
                    self.stats["udp_expired"] += f.handler.expire(now,
                                                                  self.config.udp_idle_timeout)

    def reload(self, config: Config) -> None:
        """Rules, routes, limits and faults change at once; forwards need a restart."""
        if config.forward != self.config.forward:
            same = [(f.listen, f.proto, f.to) for f in config.forward] == \
                [(f.listen, f.proto, f.to) for f in self.config.forward]
            if not same:
                raise ConfigError(["relay.forward: forwards changed; restart to apply"])
        if config.packet != self.config.packet:
            raise ConfigError(["relay.packet: changed; restart to apply"])
        firewall, routes = build_rules(config), build_routes(config)
        for f, fc in zip(self.forwards, config.forward, strict=True):
            f.config, f.faults = fc, _faults(fc.faults)
        self.firewall, self.routes, self.config = firewall, routes, config
        if self.router is not None:
            self.router.nat.firewall = firewall
        self.table.max_entries = config.max_entries
        self.table.max_per_source = config.max_per_source

    async def drain(self, timeout: float) -> None:
        for f in self.forwards:
            if f.config.proto == "tcp" and f.handler is not None:
                f.handler.server.stop_accepting()
            elif f.handler is not None:
                f.handler.close()
        for f in self.forwards:
            if f.config.proto == "tcp" and f.handler is not None:
                await f.handler.server.drain(timeout)
        for task in list(self.tasks):
            task.cancel()
        if self.router is not None:
            self.router.close()

    def addresses(self) -> list[Address]:
        return list(self.bound)

    def counters(self) -> dict[str, int]:
        return {**self.transport_counters.snapshot(), **self.stats,
                "flows": len(self.table), "refused_table_full": self.table.refused_full,
                "refused_per_source": self.table.refused_source,
                **(self.router.counters() if self.router is not None else {})}

    def status(self) -> dict[str, Any]:
        return {"listen": [str(a) for a in self.bound], **self.counters(),
                "targets": {f.name: f.healthy for f in self.forwards}}


def table_view(service: RelayService, args: dict[str, Any]) -> list[dict[str, Any]]:
    return service.table.view(time.time())


def rules_view(service: RelayService, args: dict[str, Any]) -> list[dict[str, Any]]:
    return service.firewall.view()


def faults_view(service: RelayService, args: dict[str, Any]) -> dict[str, Any]:
    """`netkit ctl faults [forward=NAME] [latency=0.2 loss=0.1 ...]`: show, or change."""
    name = args.pop("forward", None)
    chosen = [f for f in service.forwards if name in (None, f.name)]
    if not chosen:
        raise ValueError(f"no forward named {name!r}: "
                         f"{', '.join(f.name for f in service.forwards)}")
    if args:
        if name is None and len(service.forwards) > 1:
            raise ValueError("forward=NAME: which forward's faults to change")
        for f in chosen:
            f.faults = f.faults.changed(args)
            log.warning("relay %s: faults now %s", f.name, f.faults)
    return {f.name: {k: getattr(f.faults, k) for k in Faults.__dataclass_fields__}
            for f in chosen}


def listen_specs(config: Config) -> list[tuple[str, Address]]:
    return [(f.proto, f.listen) for f in config.forward]


def create(config: Config | Mapping[str, Any] | str | None = None) -> RelayService:
    return RelayService(running.load(SPEC, config))


def serve(config: Config | Mapping[str, Any] | str | None = None
          ) -> AbstractAsyncContextManager[running.Server]:
    return running.serve(SPEC, config)


def _loopback_defaults(doc: dict[str, Any], address: str) -> None:
    """Under serve(): forwards without a listen address get 127.0.0.1 port 0."""
    for f in doc.setdefault(SECTION, {}).get("forward", []):
        f.setdefault("listen", address)


SPEC = ServerSpec(
    name=SECTION, summary="NAT/firewall relay: port forwards, rules, a connection table",
    config=Config, create=create, listen_specs=listen_specs,
    loopback_defaults=_loopback_defaults,
    commands={"table": table_view, "rules": rules_view, "faults": faults_view},
    single_process="one connection table per relay",
    gauges=frozenset({"active", "flows"}), actions=frozenset({"faults"}))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["route-get"]:
        return _route_get(argv[1:])
    return server_main(SECTION, argv)


def _route_get(argv: list[str]) -> int:
    import argparse


    p = argparse.ArgumentParser(prog="python -m netkit.servers.relay route-get",
                                description="Which route, and which source address, the "
                                            "relay uses towards ADDR (as `ip route get`).")
    p.add_argument("address")
    p.add_argument("--config", type=Path)
    p.add_argument("--set", action="append", default=[])
    args = p.parse_args(argv)
    from netkit.cli import subcommand_config
    try:
        config = subcommand_config(SPEC, args.config, args.set)
        table = build_routes(config)
        route = table.lookup(args.address)
    except (ConfigError, ValueError) as exc:
        print(f"route-get: {exc}", file=sys.stderr)
        return 2
    if route is None:
        print(f"{args.address}: no route in relay.route: the system's routing table "
              f"chooses the source")
        return 1
    print(f"{args.address} via {route.via} (route {route.dst})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
