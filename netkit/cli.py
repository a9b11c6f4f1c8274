"""The command line every server shares, and the life cycle it drives.

    python -m netkit.servers.NAME [--config FILE] [--listen ADDR]... [--set KEY=VALUE]...
        [--log-level LEVEL] [--log-format text|json] [--check-config]
        [--workers N] [--loop uvloop|asyncio] [--control PATH]
    netkit NAME ...               the same
    netkit run --config FILE      every server section of FILE in one process
    netkit ctl [--socket PATH] COMMAND [KEY=VALUE]...   talk to a running process
    netkit cert NAME...           development certificates (see certs.py)

Everything about a server comes from its `ServerSpec` (contract.py). The life cycle:
load and check the config, bind, open the control socket, serve until SIGINT/SIGTERM
(SIGHUP, or `netkit ctl reload`, re-reads the file: a broken new config is reported and
the running one kept), then stop accepting, drain every server for its
``shutdown_timeout``, cancel, exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from . import config as config_mod
from . import log as log_mod
from .admin import AdminConfig
from .config import Address
from .contract import ServerSpec, spec_of
from .control import Controller
from .errors import ConfigError
from .running import Running, running
from .servers import REGISTRY
from .transport.listeners import SocketPresets
from .tuning import calm_gc, keep_freed_memory

log = logging.getLogger("netkit")


def build_parser(prog: str, *, one_server: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--config", type=Path, required=not one_server,
                   help="TOML file (may hold several servers' sections)")
    if one_server:
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
    p.add_argument("--control", type=Path, metavar="PATH",
                   help="the control socket (default: the runtime directory, named after "
                        "the servers and the PID; 'none' for no control socket)")
    return p


def _parser_for(spec: ServerSpec) -> argparse.ArgumentParser:
    p = build_parser(f"netkit {spec.name}")
    if spec.add_arguments is not None:
        spec.add_arguments(p)
    return p


def _document(args: argparse.Namespace) -> dict[str, Any]:
    """The file with every --set applied; raises ConfigError."""
    doc = config_mod.read_document(args.config)
    for text in getattr(args, "set", []):
        keys, value = config_mod.parse_override(text)
        if keys[0] not in config_mod.SECTIONS:
            raise ConfigError([f"--set {text}: unknown section {keys[0]!r}"])
        config_mod.apply_override(doc, keys, value)
    return doc


def load_config(spec: ServerSpec, args: argparse.Namespace,
                doc: dict[str, Any] | None = None, *, own_flags: bool = True) -> Any:
    """The file, then --set, then --listen and the server's own flags (not under `netkit
    run`, which has none); raises ConfigError listing every problem."""
    doc = _document(args) if doc is None else doc
    listen = getattr(args, "listen", [])
    if listen:
        problems = [f"--listen {text}: expected {Address.describe}" for text in listen
                    if not _is_address(text)]
        if problems:
            raise ConfigError(problems)
        if spec.override_listen is not None:
            spec.override_listen(doc, list(listen))
        else:
            doc.setdefault(spec.name, {})["listen"] = list(listen)
    if own_flags and spec.apply_arguments is not None:
        spec.apply_arguments(doc, args)
    if own_flags and args.config is not None and spec.name not in doc:
        raise ConfigError([f"{args.config}: no [{spec.name}] section"])
    source = str(args.config) if args.config else "<command line>"
    base_dir = args.config.parent if args.config else Path.cwd()
    return config_mod.load_section(spec.config, doc, spec.name, source=source,
                                   base_dir=base_dir)


def _is_address(text: str) -> bool:
    try:
        Address.parse(text)
    except ValueError:
        return False
    return True


def _print_problems(exc: ConfigError) -> int:
    for problem in exc.problems:
        print(problem, file=sys.stderr)
    return 2


def server_main(name: str, argv: list[str] | None = None) -> int:
    """`python -m netkit.servers.NAME` and `netkit NAME`."""
    spec = spec_of(name)
    args = _parser_for(spec).parse_args(argv)
    try:
        servers = [Running(spec, load_config(spec, args))]
    except ConfigError as exc:
        return _print_problems(exc)
    return _start(servers, args)


def run_main(argv: list[str] | None = None) -> int:
    """`netkit run --config FILE`: every server section of the file, in one process."""
    args = build_parser("netkit run", one_server=False).parse_args(argv)
    try:
        doc = _document(args)
        names = [name for name in REGISTRY if name in doc]
        if not names:
            raise ConfigError([f"{args.config}: no server section; expected one or more of "
                               f"{', '.join(REGISTRY)}"])
        servers, problems = [], []
        for name in names:
            spec = spec_of(name)
            try:
                servers.append(Running(spec, load_config(spec, args, doc, own_flags=False)))
            except ConfigError as exc:
                problems += exc.problems
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        return _print_problems(exc)
    return _start(servers, args)


def _start(servers: list[Running], args: argparse.Namespace) -> int:
    log_mod.setup(args.log_level, args.log_format)
    label = "+".join(s.spec.name for s in servers)
    try:
        args.admin_config = admin_config(args)
    except ConfigError as exc:
        return _print_problems(exc)
    if args.check_config:
        try:
            for s in servers:  # loads the certificates and files the config names
                (s.spec.check or s.spec.create)(s.config)
        except ConfigError as exc:
            return _print_problems(exc)
        print(f"{args.config or '<defaults>'}: {label}: configuration is valid")
        return 0
    if args.workers < 1:
        print("--workers: expected an integer >= 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        refusals = [f"--workers: {s.spec.name}: {s.spec.single_process}" for s in servers
                    if s.spec.single_process]
        if refusals:
            print("\n".join(refusals), file=sys.stderr)
            return 2
        from .workers import supervise
        specs = [item for s in servers for item in s.spec.listen_specs(s.config)]
        timeout = max(s.config.shutdown_timeout for s in servers)
        return supervise(args.workers, specs, lambda presets: _serve(servers, args, presets),
                         timeout)
    return _serve(servers, args, {})


def _serve(servers: list[Running], args: argparse.Namespace, presets: SocketPresets) -> int:
    keep_freed_memory()
    calm_gc()
    try:
        return anyio.run(_lifecycle, servers, args, presets, backend="asyncio",
                         backend_options={"use_uvloop": args.loop == "uvloop"})
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        # binding failed (address in use, no permission): the operator's to fix
        log.error("%s: %s", "+".join(s.spec.name for s in servers), exc)
        return 1


async def _lifecycle(servers: list[Running], args: argparse.Namespace,
                     presets: SocketPresets) -> int:
    try:
        for s in servers:
            s.service = s.spec.create(s.config)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        return 2
    admin = getattr(args, "admin_config", None) or AdminConfig()
    controller = Controller(servers, lambda: reload_all(servers, args),
                            args.control or admin.socket, config_file=args.config)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with running(servers, presets), contextlib.AsyncExitStack() as stack:
            await controller.start()
            if admin.listen is not None:
                await stack.enter_async_context(_admin_http(controller, admin))
            try:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        controller.reload_now()
                        continue
                    log.info("%s: %s received, draining", controller.label,
                             signal.Signals(signum).name)
                    break
            finally:
                controller.close()
    log.info("%s: stopped", controller.label)
    return 0


def _admin_http(controller: Controller, admin: AdminConfig) -> Any:
    """The admin endpoint on netkit's own HTTP server, in this process."""
    from .admin.endpoint import AdminEndpoint
    from .running import serve
    from .servers.http.server import Config as HTTPConfig
    assert admin.listen is not None
    config = HTTPConfig(listen=(admin.listen,), tls=admin.tls, app_type="native")
    return serve(spec_of("http"), config, app=AdminEndpoint(controller, admin.token))


def admin_config(args: argparse.Namespace) -> AdminConfig:
    """The ``[admin]`` section of the file and --set; ConfigError when wrong."""
    from .admin import load
    doc = _document(args)
    return load(doc, str(args.config) if args.config else "<command line>",
                args.config.parent if args.config else Path.cwd())


def subcommand_config(spec: ServerSpec, path: Path | None, sets: list[str]) -> Any:
    """The config a server's own subcommand reads (`smtp queue`, `dhcp leases`, `relay
    route-get`): the file, then each --set, checked as the server checks it, with paths
    relative to the file; ConfigError when wrong."""
    from . import running
    doc = config_mod.read_document(path) if path else {}
    for item in sets:
        config_mod.apply_override(doc, *config_mod.parse_override(item))
    return running.load(spec, doc, base_dir=path.parent if path else None,
                        source=str(path or "--set"))


def reload_all(servers: list[Running], args: argparse.Namespace) -> list[str]:
    """Re-read the config for every server; what fails keeps its running config and the
    problems are logged and returned (empty: all reloaded)."""
    try:
        doc = _document(args)
    except ConfigError as exc:
        return _reload_failed("+".join(s.spec.name for s in servers), exc.problems)
    problems: list[str] = []
    own_flags = len(servers) == 1 and hasattr(args, "listen")
    for s in servers:
        try:
            new = load_config(s.spec, args, copy.deepcopy(doc), own_flags=own_flags)
            assert s.service is not None
            s.service.reload(new)
        except ConfigError as exc:
            problems += _reload_failed(s.spec.name, exc.problems)
            continue
        except Exception as exc:  # a bug in a server's reload must not end the process
            log.exception("%s: reload failed", s.spec.name)
            problems += _reload_failed(s.spec.name, [f"{s.spec.name}: internal error: {exc}"])
            continue
        s.config = new
        log.info("%s: configuration reloaded", s.spec.name)
    return problems


def _reload_failed(name: str, problems: list[str]) -> list[str]:
    log.error("%s: reload failed, keeping the running configuration:\n  %s", name,
              "\n  ".join(problems))
    return problems


def netkit_main(argv: list[str] | None = None) -> int:
    """`netkit <server> ...`, `netkit run`, `netkit ctl` and `netkit cert`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = (*REGISTRY, "run", "ctl", "cert", "lab")
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: netkit {" + ",".join(commands) + "} [options]\n"
              "       netkit SERVER --help for a server's options\n"
              "       netkit run --config FILE   every server section of FILE, one process\n"
              "       netkit ctl [--socket PATH] status|reload|COMMAND [KEY=VALUE]...\n"
              "       netkit lab up|down|status|check|exec NODE -- CMD|shell NODE  (root)")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "cert":
        from .certs import main as cert_main
        return cert_main(rest)
    if command == "run":
        return run_main(rest)
    if command == "ctl":
        from .control import ctl_main
        return ctl_main(rest)
    if command == "lab":
        from .lab.cli import main as lab_main
        return lab_main(rest)
    if command not in REGISTRY:
        print(f"netkit: unknown command {command!r}; expected one of "
              f"{', '.join(commands)}", file=sys.stderr)
        return 2
    return server_main(command, rest)


if __name__ == "__main__":
    sys.exit(netkit_main())
