"""The SSH port forwarder: `python -m netkit.servers.sshfwd` (ssh -L/-R/-D that stays up).

    python -m netkit.servers.sshfwd -L 8080:10.0.1.2:80 -D 1080 gw      # reads like ssh
    python -m netkit.servers.sshfwd --config conf/sshfwd.toml

The destination and its options come as `ssh` would take them: `-F FILE` (default
~/.ssh/config) read by asyncssh (Host and Match blocks, HostName, Port, User,
IdentityFile, IdentitiesOnly, ProxyJump, ServerAliveInterval/CountMax,
UserKnownHostsFile), plus what asyncssh leaves to its caller: StrictHostKeyChecking,
LocalForward, RemoteForward, DynamicForward and ExitOnForwardFailure, read here from
the same blocks. `[[sshfwd.forward]]` tables and -L/-R/-D flags add forwards.
"""

from __future__ import annotations

import getpass
import logging
import sys
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import anyio.abc
import asyncssh
from asyncssh.config import SSHClientConfig, SSHConfig

from netkit import running
from netkit.cli import server_main
from netkit.config import Address, Duration, field
from netkit.contract import ServerSpec
from netkit.errors import ConfigError
from netkit.transport.connection import Limits
from netkit.transport.listeners import SocketPresets

from . import fastchacha
from .client import SSHForwarder, Target
from .forwards import Forward, parse_forward

fastchacha.install()  # both modes, every connection of this process

SECTION = "sshfwd"
log = logging.getLogger("netkit.sshfwd")
_CIPHER_PREFERENCE = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                      "chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The ``[sshfwd]`` section."""

    mode: Literal["client", "server"] = "client"
    """client: forward through an SSH server; server: be a forwarding-only SSH server."""
    destination: str = ""
    """``[user@]host[:port]`` or a Host alias of the ssh config, as for `ssh`."""
    ssh_config: Path | None = None
    """OpenSSH client config (default ~/.ssh/config when it exists)."""
    user: str = ""
    port: int = field(0, min=0, max=65535)
    identity_file: tuple[Path, ...] = ()
    passphrase_file: Path | None = None
    """The identity files' passphrase (else ssh-agent through SSH_AUTH_SOCK)."""
    known_hosts: Path | None = None
    """Default: the config's UserKnownHostsFile, else ~/.ssh/known_hosts."""
    strict_host_key_checking: Literal["", "yes", "accept-new", "no"] = ""
    """"": the ssh config's StrictHostKeyChecking, else yes. "no" only when set."""
    forward: tuple[Forward, ...] = ()
    keepalive_interval: Duration = field(Duration(15), min=0)
    """Seconds between keepalives (the config's ServerAliveInterval wins); 0: none."""
    keepalive_count_max: int = field(3, min=1)
    connect_timeout: Duration = field(Duration(15), min=0.1)
    tunnel_wait: Duration = field(Duration(10), min=0)
    """How long a new local client waits for a tunnel that is down before it is closed."""
    backoff_min: Duration = field(Duration(1), min=0.01)
    backoff_max: Duration = field(Duration(60), min=0.01)
    exit_on_forward_failure: bool = False
    listen: tuple[Address, ...] = (Address("127.0.0.1", 2222),)
    """Server mode: where to accept SSH."""
    host_key: Path | None = None
    """Server mode: the host key (made on first start; default
    ~/.local/state/netkit/sshfwd_host_ed25519)."""
    authorized_keys: Path | None = None
    """Server mode: public keys allowed in (OpenSSH's format and options)."""
    permit: tuple[str, ...] = ()
    """Server mode: "HOST:PORT" patterns (`*` wildcards) that direct-tcpip may reach and
    tcpip-forward may listen on; none by default."""
    limits: Limits = Limits(idle_timeout=Duration(7200))
    """Local connections of -L and -D forwards (idle: two hours, as a shell might sit)."""
    shutdown_timeout: Duration = Duration(5)


class _Config(SSHClientConfig):
    """asyncssh's config reader, plus the options it leaves to its caller."""

    def _append_joined(self, option: str, args: list[str]) -> None:
        value = " ".join(args)
        args.clear()
        self._options.setdefault(option, []).append(value)  # type: ignore[union-attr]

    _handlers = {**SSHClientConfig._handlers, **{
        name.lower(): (name, handler) for name, handler in (
            ("StrictHostKeyChecking", SSHConfig._set_string),
            ("ExitOnForwardFailure", SSHConfig._set_bool),
            ("LocalForward", _append_joined),
            ("RemoteForward", _append_joined),
            ("DynamicForward", _append_joined))}}


def _split_destination(dest: str) -> tuple[str, str, int]:
    user, _, host = dest.rpartition("@")
    port = 0
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 0
    elif host.count(":") == 1:
        host, p = host.split(":")
        port = int(p)
    return user, host, port


def resolve(config: Config) -> tuple[Target, list[Forward], bool]:
    """The target, the forwards and ExitOnForwardFailure, from the section and the ssh
    config, as `ssh DESTINATION` would pick them. ConfigError names every problem."""
    if not config.destination:
        raise ConfigError(["sshfwd.destination: no SSH server given (sshfwd [options] HOST)"])
    user, host, port = _split_destination(config.destination)
    user = config.user or user
    port = config.port or port
    ssh_config = config.ssh_config
    if ssh_config is None:
        default = Path.home() / ".ssh" / "config"
        ssh_config = default if default.exists() else None
    problems: list[str] = []
    extra: Any = None
    if ssh_config is not None:
        try:
            extra = _Config.load(None, [ssh_config], False, False, False, getpass.getuser(),
                                 user or (), host, port or ())
        except (OSError, asyncssh.ConfigParseError) as exc:
            problems.append(f"sshfwd.ssh_config: {ssh_config}: {exc}")

    def opt(name: str, default: Any = None) -> Any:
        return extra.get(name, default) if extra is not None else default

    forwards = list(config.forward)
    for kind, name in (("local", "LocalForward"), ("remote", "RemoteForward"),
                       ("dynamic", "DynamicForward")):
        for spec in opt(name, []) or []:
            try:
                forwards.append(parse_forward(kind, spec))  # type: ignore[arg-type]
            except ValueError as exc:
                problems.append(f"{ssh_config}: {name} {spec}: {exc}")
    strict = config.strict_host_key_checking or (opt("StrictHostKeyChecking") or "yes")
    strict = {"true": "yes", "false": "no", "off": "no", "on": "yes"}.get(strict.lower(),
                                                                          strict.lower())
    if strict not in ("yes", "accept-new", "no"):
        problems.append(f"StrictHostKeyChecking {strict!r}: yes, accept-new or no")
    known_files = opt("UserKnownHostsFile") or []
    known = config.known_hosts or (Path(known_files[0]).expanduser() if known_files else
                                   Path.home() / ".ssh" / "known_hosts")
    if not forwards:
        problems.append("sshfwd: no forwards (-L, -R, -D, [[sshfwd.forward]] or the ssh "
                        "config's LocalForward/RemoteForward/DynamicForward)")
    if problems:
        raise ConfigError(problems)
    passphrase = None
    if config.passphrase_file is not None:
        try:
            passphrase = config.passphrase_file.read_text().rstrip("\n")
        except OSError as exc:
            raise ConfigError([f"sshfwd.passphrase_file: {exc.strerror}"]) from None
    kwargs: dict[str, Any] = {
        "config": [str(ssh_config)] if ssh_config is not None else None,
        "known_hosts": None if strict == "no" else str(known) if known.exists() else (),
        "connect_timeout": config.connect_timeout,
        "keepalive_count_max": opt("ServerAliveCountMax") or config.keepalive_count_max,
        "keepalive_interval": opt("ServerAliveInterval") or config.keepalive_interval,
    }
    if opt("Ciphers") is None:
        # AES-GCM first (OpenSSH puts chacha20 first): with AES-NI it is the faster one
        # here even with fastchacha (bench/ssh.py); a Ciphers line wins
        kwargs["encryption_algs"] = _CIPHER_PREFERENCE
    if config.identity_file:
        kwargs["client_keys"] = [str(p) for p in config.identity_file]
    if passphrase is not None:
        kwargs["passphrase"] = passphrase
    if strict != "no" and not known.exists():
        kwargs["known_hosts"] = ([], [], [])  # nothing known: every key is unknown
    try:  # checked now; asyncssh applies the config's Host blocks again at connect
        asyncssh.SSHClientConnectionOptions(host=host, **kwargs)
    except (OSError, ValueError, asyncssh.Error) as exc:
        raise ConfigError([f"sshfwd: {exc}"]) from None
    options = kwargs
    real_host = opt("Hostname") or host
    real_port = port or opt("Port") or 22
    target = Target(host, real_host, int(real_port), user or opt("User") or None, options,
                    None if strict == "no" else known, strict, config.connect_timeout)
    return target, forwards, bool(config.exit_on_forward_failure or
                                  opt("ExitOnForwardFailure"))


def _host_key_path(config: Config) -> Path:
    return config.host_key or Path.home() / ".local/state/netkit/sshfwd_host_ed25519"


def _check_server(config: Config) -> None:
    problems = []
    if config.authorized_keys is None:
        problems.append("sshfwd.authorized_keys: server mode needs the keys allowed in")
    else:
        try:
            asyncssh.read_authorized_keys(str(config.authorized_keys))
        except (OSError, ValueError, asyncssh.KeyImportError) as exc:
            problems.append(f"sshfwd.authorized_keys: {config.authorized_keys}: {exc}")
    key = _host_key_path(config)
    if key.exists():
        try:
            asyncssh.read_private_key(str(key))
        except (OSError, ValueError, asyncssh.KeyImportError) as exc:
            problems.append(f"sshfwd.host_key: {key}: {exc}")
    if problems:
        raise ConfigError(problems)


class SSHForwardService:
    """The server contract's face of the forwarder (or of the forwarding-only server)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.fatal: str | None = None
        self.acceptors: list[Any] = []
        self.live: set[Any] = set()  # server mode: the SSH connections in
        self.server_stats = dict.fromkeys(("connections", "channels", "listeners",
                                           "refused"), 0)
        if config.mode == "server":
            _check_server(config)
            self.forwarder = None
            return
        target, forwards, exit_on_failure = resolve(config)
        self.forwarder = SSHForwarder(
            target, forwards, tunnel_wait=config.tunnel_wait,
            backoff_min=config.backoff_min, backoff_max=config.backoff_max,
            exit_on_forward_failure=exit_on_failure, on_fatal=self._fatal,
            limits=config.limits)

    def _fatal(self, why: str) -> None:
        """A refused host key, or a forward failing under ExitOnForwardFailure: stop."""
        self.fatal = why
        self.tg.cancel_scope.cancel()

    async def start(self, tg: anyio.abc.TaskGroup, presets: SocketPresets) -> None:
        self.tg = tg
        if self.forwarder is None:
            from .server import start_server
            c = self.config
            assert c.authorized_keys is not None
            self.acceptors = await start_server(list(c.listen), _host_key_path(c),
                                                c.authorized_keys, c.permit,
                                                self.server_stats, self.live)
            for a in self.addresses():
                log.info("sshfwd server: listening on %s (tcp, ssh)", a)
            return
        await self.forwarder.start(tg, presets)

    def reload(self, config: Config) -> None:
        if config.mode != self.config.mode:
            raise ConfigError(["sshfwd.mode changed; restart to apply"])
        if config.mode == "server":
            _check_server(config)
            if config != self.config:
                raise ConfigError(["sshfwd: server settings changed; restart to apply"])
            return
        resolve(config)  # ConfigError keeps the running one
        if replace(config, shutdown_timeout=self.config.shutdown_timeout) != self.config:
            raise ConfigError(["sshfwd: the destination or forwards changed; restart to "
                               "apply them"])

    async def drain(self, timeout: float) -> None:
        for acceptor in self.acceptors:
            acceptor.close()
        for server in list(self.live):  # forwarding sessions end with the server
            if server.conn is not None:
                server.conn.close()
        with anyio.move_on_after(timeout):
            for acceptor in self.acceptors:
                await acceptor.wait_closed()
        if self.forwarder is not None:
            await self.forwarder.drain(timeout)

    def status(self) -> dict[str, Any]:
        if self.forwarder is None:
            return {"mode": "server", "listen": [str(a) for a in self.addresses()],
                    **self.server_stats}
        return self.forwarder.status()

    def addresses(self) -> list[Address]:
        if self.forwarder is None:
            return [Address(*sock.getsockname()[:2]) for acceptor in self.acceptors
                    for sock in acceptor.sockets]
        return [a for st in self.forwarder.states if st.server
                for a in st.server.addresses]

    def labelled(self) -> dict[str, tuple[str, dict[str, int], str]]:
        """For the admin endpoint: forwards by state (up, listening, failed...; a gauge)."""
        if self.forwarder is None:
            return {}
        by: dict[str, int] = {}
        for st in self.forwarder.states:
            by[st.state] = by.get(st.state, 0) + 1
        return {"forwards": ("state", by, "gauge")}

    def counters(self) -> dict[str, int]:
        if self.forwarder is None:
            return dict(self.server_stats)
        states = self.forwarder.states
        return {"reconnects": self.forwarder.reconnects,
                "connections": sum(s.connections for s in states),
                "failures": sum(s.failures for s in states),
                "bytes_in": sum(s.bytes_in for s in states),
                "bytes_out": sum(s.bytes_out for s in states),
                "up": int(self.forwarder.up.is_set())}


def listen_specs(config: Config) -> list[tuple[str, Address]]:
    if config.mode == "server":
        return [("tcp", a) for a in config.listen]
    return [("tcp", f.listen) for f in config.forward if f.kind != "remote"]


def add_arguments(parser: Any) -> None:
    parser.add_argument("destination", nargs="?", help="[user@]host[:port] or a Host alias")
    parser.add_argument("-L", dest="local", action="append", default=[],
                        metavar="[bind:]port:host:hostport")
    parser.add_argument("-R", dest="remote", action="append", default=[],
                        metavar="[bind:]port:host:hostport")
    parser.add_argument("-D", dest="dynamic", action="append", default=[],
                        metavar="[bind:]port", help="SOCKS5/4a dynamic forwarding")
    parser.add_argument("-F", dest="ssh_config", metavar="FILE", help="ssh client config")
    parser.add_argument("-i", dest="identity", action="append", default=[], metavar="FILE")
    parser.add_argument("-p", dest="port", type=int, metavar="PORT")
    parser.add_argument("-l", dest="user", metavar="USER")
    parser.add_argument("-N", action="store_true", help="accepted; always implied")
    parser.add_argument("-o", dest="options", action="append", default=[],
                        metavar="Option=value", help="StrictHostKeyChecking=accept-new ...")


def apply_arguments(doc: dict[str, Any], args: Any) -> None:
    section = doc.setdefault(SECTION, {})
    if args.destination:
        section["destination"] = args.destination
    for key, value in (("ssh_config", args.ssh_config), ("port", args.port),
                       ("user", args.user)):
        if value:
            section[key] = value
    if args.identity:
        section["identity_file"] = args.identity
    forwards = section.setdefault("forward", [])
    for kind, specs in (("local", args.local), ("remote", args.remote),
                        ("dynamic", args.dynamic)):
        for spec in specs:
            f = parse_forward(kind, spec)  # type: ignore[arg-type]
            forwards.append({"kind": kind, "listen": str(f.listen),
                             **({"to": str(f.to)} if f.to else {})})
    for option in args.options:
        name, _, value = option.partition("=")
        if name.lower() == "stricthostkeychecking":
            section["strict_host_key_checking"] = value.lower()
        elif name.lower() == "exitonforwardfailure":
            section["exit_on_forward_failure"] = value.lower() in ("yes", "true")


def forwards_view(service: SSHForwardService, args: dict[str, Any]) -> list[dict[str, Any]]:
    """`netkit ctl forwards`: each forward, its state, connections and bytes."""
    return [s.view() for s in service.forwarder.states] if service.forwarder else []


def check(config: Config) -> None:
    if config.mode == "server":
        _check_server(config)
    else:
        resolve(config)


def create(config: Config | Mapping[str, Any] | str | None = None) -> SSHForwardService:
    return SSHForwardService(running.load(SPEC, config))


def serve(config: Config | Mapping[str, Any] | str | None = None
          ) -> AbstractAsyncContextManager[running.Server]:
    return running.serve(SPEC, config)


SPEC = ServerSpec(
    name=SECTION, summary="SSH port forwarder: -L, -R and -D over one connection, kept up",
    config=Config, create=create, check=check, listen_specs=listen_specs,
    add_arguments=add_arguments, apply_arguments=apply_arguments,
    commands={"forwards": forwards_view}, single_process="one SSH connection per forwarder")


def main(argv: list[str] | None = None) -> int:
    return server_main(SECTION, argv)


if __name__ == "__main__":
    sys.exit(main())
