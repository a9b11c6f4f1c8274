"""The server contract: what a server declares once, and every tool reads.

A server is one module that ends in

    SPEC = ServerSpec(name="dns", config=Config, create=DNSService,
                      listen_specs=listen_specs, commands={"cache": cache_view})

plus one line in `netkit.servers.REGISTRY` naming that module. From the spec alone
the CLI builds `python -m netkit.servers.NAME` and `netkit NAME`, the config loader
knows the TOML section, `--check-config` builds the service without binding,
`--workers` knows whether the server may run in several processes, `netkit run`
starts several servers in one process, and the control channel (`netkit ctl`)
offers the server's views and actions.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio.abc

from .config import Address
from .transport.listeners import SocketPresets


class Service(Protocol):
    """What `ServerSpec.create(config)` returns: one server, running in one process."""

    async def start(self, tg: anyio.abc.TaskGroup, presets: SocketPresets) -> None:
        """Bind (or take the inherited sockets in `presets`) and serve in `tg`."""

    def reload(self, config: Any) -> None:
        """SIGHUP: take the new config, or raise ConfigError and keep the running one."""

    async def drain(self, timeout: float) -> None:
        """Stop accepting, let in-flight work finish for `timeout` s, save state."""

    def status(self) -> dict[str, Any]:
        """Counters and addresses, as JSON-able values (`netkit ctl status`)."""

    def addresses(self) -> list[Address]:
        """Where it listens now, as bound (port 0 resolved)."""

    def counters(self) -> dict[str, int]:
        """Connections, datagrams, bytes and the server's own counts, summed over its
        listeners."""


#: A control-channel command: (the service, the arguments the caller sent) -> JSON-able.
Command = Callable[[Any, dict[str, Any]], Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSpec:
    """Everything the shared machinery needs to know about one server."""

    name: str
    """The TOML section, `netkit NAME` and `python -m netkit.servers.NAME`."""
    summary: str
    """One line for `netkit --help`."""
    config: type
    """The section's frozen dataclass; must have `shutdown_timeout`."""
    create: Callable[..., Service]
    """Builds the service from a config (its dataclass, a document or TOML text), loading
    every file it names (certificates, root hints, applications) and raising ConfigError
    for what is wrong; binds nothing. The module's public `create`."""
    check: Callable[[Any], object] | None = None
    """What `--check-config` runs instead of `create` when creating has side effects
    (writing a development certificate): the same checks, nothing left behind."""
    listen_specs: Callable[[Any], list[tuple[str, Address]]]
    """("tcp" | "udp", address) for every socket the config listens on (workers bind
    these in the parent)."""
    override_listen: Callable[[dict[str, Any], list[str]], None] | None = None
    """How `--listen` applies when the addresses are not `NAME.listen` (the TLS
    wrapper's live in its tunnels)."""
    loopback_defaults: Callable[[dict[str, Any], str], None] | None = None
    """How `serve()` puts unset listeners on an address (default: `NAME.listen`)."""
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    """Flags of the server's own (the HTTP server's `--app`)."""
    apply_arguments: Callable[[dict[str, Any], argparse.Namespace], None] | None = None
    """Writes those flags into the raw config document before it is checked."""
    commands: dict[str, Command] = field(default_factory=dict)
    """Views and actions on the control channel, beside the shared `status` and `reload`."""
    single_process: str = ""
    """Why `--workers N` (N > 1) is refused, for a server whose state must stay in one
    process (a DHCP pool, a mail queue, a connection table); empty when it is not."""
    gauges: frozenset[str] = frozenset({"active"})
    """Which of `counters()` go up and down (exported as Prometheus gauges); the others
    only grow (counters, `_total`)."""
    actions: frozenset[str] = frozenset()
    """Which `commands` change something (over the admin endpoint's HTTP: POST only)."""


def spec_of(name: str) -> ServerSpec:
    """The spec of a registered server (its module is imported now, not before)."""
    from .servers import REGISTRY
    return importlib.import_module(REGISTRY[name]).SPEC
