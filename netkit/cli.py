"""The command line every server shares, and the life cycle it drives.

    python -m netkit.servers.NAME [--config FILE] [--listen ADDR]... [--set KEY=VALUE]...
        [--log-level LEVEL] [--log-format text|json] [--check-config]
        [--workers N] [--loop uvloop|asyncio]
    netkit NAME ...            the same
    netkit cert NAME...        development certificates (see certs.py)

A server module provides: ``SECTION`` (its TOML table), ``Config`` (a frozen
dataclass with ``listen`` and ``shutdown_timeout``), ``listen_specs(config) ->
[(kind, Address)]`` and ``create(config) -> Service``; optionally
``override_listen(doc, addresses)`` when ``--listen`` is not ``SECTION.listen``,
and ``add_arguments``/``apply_arguments`` for flags of its own.
The life cycle: load and check the config, bind, serve until SIGINT/SIGTERM
(SIGHUP reloads the file: a broken new config is reported and the old one
kept), then stop accepting, drain for ``shutdown_timeout`` seconds, cancel,
exit 0.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import anyio
import anyio.abc

from netkit.transport.listeners import SocketPresets

from . import config as config_mod
from . import log as log_mod
from .config import Address
from .errors import ConfigError
from .tuning import calm_gc, keep_freed_memory

log = logging.getLogger("netkit")

SERVERS = ("dns", "http", "tls")


class Service(Protocol):
    """What `create(config)` returns."""

    async def start(self, tg: anyio.abc.TaskGroup, presets: SocketPresets) -> None: ...
    def reload(self, config: Any) -> None: ...
    async def drain(self, timeout: float) -> None: ...


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--config", type=Path, help="TOML file (may hold several servers' sections)")
    p.add_argument("--listen", action="append", default=[], metavar="HOST:PORT",
                   help="listen here instead of the file's addresses (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. tls.tunnel.0.forward=127.0.0.1:80")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration and exit (0 good, 2 with every problem)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="N processes sharing the listening ports (SO_REUSEPORT)")
    p.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"],
                   help="event loop (uvloop is faster; asyncio needs nothing compiled)")
    return p


def parser_for(module: ModuleType) -> argparse.ArgumentParser:
    p = build_parser(f"netkit {module.SECTION}")
    if hasattr(module, "add_arguments"):  # a server's own flags (http: --app)
        module.add_arguments(p)
    return p


def load_config(module: ModuleType, args: argparse.Namespace) -> Any:
    """The file, then --set, then --listen; raises ConfigError listing every problem."""
    doc = config_mod.read_document(args.config)
    for text in args.set:
        keys, value = config_mod.parse_override(text)
        if keys[0] != module.SECTION and keys[0] not in config_mod.SECTIONS:
            raise ConfigError([f"--set {text}: unknown section {keys[0]!r}"])
        config_mod.apply_override(doc, keys, value)
    if args.listen:
        problems = []
        for text in args.listen:
            try:
                Address.parse(text)
            except ValueError:
                problems.append(f"--listen {text}: expected {Address.describe}")
        if problems:
            raise ConfigError(problems)
        if hasattr(module, "override_listen"):  # servers whose addresses live deeper (tls)
            module.override_listen(doc, list(args.listen))
        else:
            doc.setdefault(module.SECTION, {})["listen"] = list(args.listen)
    if hasattr(module, "apply_arguments"):
        module.apply_arguments(doc, args)
    source = str(args.config) if args.config else "<command line>"
    base_dir = args.config.parent if args.config else Path.cwd()
    return config_mod.load_section(module.Config, doc, module.SECTION, source=source,
                                   base_dir=base_dir)


def run_server(module: ModuleType, argv: list[str] | None = None) -> int:
    name = module.SECTION
    args = parser_for(module).parse_args(argv)
    try:
        config = load_config(module, args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    log_mod.setup(args.log_level, args.log_format)
    if args.check_config:
        try:
            module.create(config)  # loads certificates and other files the config names
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 2
        print(f"{args.config or '<defaults>'}: {name}: configuration is valid")
        return 0
    if args.workers < 1:
        print("--workers: expected an integer >= 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        from .workers import supervise
        return supervise(args.workers, module.listen_specs(config),
                         lambda presets: _serve(module, args, config, presets),
                         config.shutdown_timeout)
    return _serve(module, args, config, {})


def _serve(module: ModuleType, args: argparse.Namespace, config: Any,
           presets: SocketPresets) -> int:
    keep_freed_memory()
    calm_gc()
    try:
        return anyio.run(_lifecycle, module, args, config, presets, backend="asyncio",
                         backend_options={"use_uvloop": args.loop == "uvloop"})
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        # binding failed (address in use, no permission): the operator's to fix
        log.error("%s: %s", module.SECTION, exc)
        return 1


async def _lifecycle(module: ModuleType, args: argparse.Namespace, config: Any,
                     presets: SocketPresets) -> int:
    try:
        service: Service = module.create(config)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        return 2
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with anyio.create_task_group() as tg:
            await service.start(tg, presets)
            async for signum in signals:
                if signum == signal.SIGHUP:
                    _reload(module, args, service)
                    continue
                log.info("%s: %s received, draining (up to %s s)", module.SECTION,
                         signal.Signals(signum).name, config.shutdown_timeout)
                break
            await service.drain(config.shutdown_timeout)
            tg.cancel_scope.cancel()
    log.info("%s: stopped", module.SECTION)
    return 0


def _reload(module: ModuleType, args: argparse.Namespace, service: Service) -> None:
    try:
        new = load_config(module, args)
    except ConfigError as exc:
        log.error("%s: reload failed, keeping the running configuration:\n  %s",
                  module.SECTION, "\n  ".join(exc.problems))
        return
    try:
        service.reload(new)
    except ConfigError as exc:
        log.error("%s: reload failed, keeping the running configuration:\n  %s",
                  module.SECTION, "\n  ".join(exc.problems))
        return
    log.info("%s: configuration reloaded", module.SECTION)


def netkit_main(argv: list[str] | None = None) -> int:
    """`netkit <server> ...` and `netkit cert ...`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: netkit {" + ",".join((*SERVERS, "cert")) + "} [options]\n"
              "       netkit SERVER --help for a server's options")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "cert":
        from .certs import main as cert_main
        return cert_main(rest)
    if command not in SERVERS:
        print(f"netkit: unknown command {command!r}; expected one of "
              f"{', '.join((*SERVERS, 'cert'))}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"netkit.servers.{command}")
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(netkit_main())
