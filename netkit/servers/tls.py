"""The TLS wrapper: stunnel/ghostunnel in netkit's shape.

    python -m netkit.servers.tls --config conf/tls.toml

Each ``[[tls.tunnel]]`` is one listener. ``mode = "server"`` accepts TLS and
forwards the plaintext to ``forward``; ``mode = "client"`` accepts plaintext and
connects to ``forward`` with TLS, verifying its certificate. With no config
at all, one server tunnel listens on 127.0.0.1:8443 and forwards to
127.0.0.1:8080 with a development certificate made on first use.

Live changes: SIGHUP re-reads the file, and certificate files are polled
every ``watch_interval``; new connections use the new certificates, routes
and rules, running ones keep what they started with. A bad new certificate
or config is logged and the old one kept.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
import tempfile
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.abc

from netkit.transport.connect import open_connection
from netkit.transport.connection import Counters, Limits
from netkit.transport.listeners import SocketPresets, StreamServer, listen_changes
from netkit.transport.splice import Splice

from .. import certs, running
from ..cli import server_main
from ..config import Address, Duration, field
from ..contract import ServerSpec
from ..errors import ConfigError, NetkitError
from ..proto import proxy
from ..tlsconf import (
    MODERN_CIPHERS,
    FileWatch,
    SNISelector,
    client_context,
    name_matches,
    rebuild_if_changed,
    server_context,
)

log = logging.getLogger("netkit.tls")

SECTION = "tls"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """An SNI route: clients asking for `server_name` get this certificate and backend."""

    server_name: str
    """Exact name, or ``*.example.com`` for one more label."""
    cert: Path | None = None
    """PEM certificate chain for this name (default: the tunnel's)."""
    key: Path | None = None
    """PEM private key for `cert`."""
    forward: Address | None = None
    """Backend for this name (default: the tunnel's)."""

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")


@dataclass(frozen=True, slots=True, kw_only=True)
class Tunnel:
    """One listener and where its connections go."""

    name: str = ""
    """Label in logs (default: the tunnel's index)."""
    mode: Literal["server", "client"] = "server"
    """server: TLS in, plaintext out. client: plaintext in, TLS out."""
    listen: tuple[Address, ...] = (Address("127.0.0.1", 8443),)
    """Addresses to accept on; port 0 picks a free port (logged)."""
    forward: Address = Address("127.0.0.1", 8080)
    """Where connections are relayed to."""
    cert: Path | None = None
    """server: our certificate chain (PEM); unset with no routes: a dev certificate.
    client: the client certificate we present to the backend (optional)."""
    key: Path | None = None
    """Private key for `cert`."""
    route: tuple[Route, ...] = ()
    """server: certificates and backends chosen by SNI."""
    client_ca: Path | None = None
    """server: require client certificates signed by this CA bundle (mTLS)."""
    allow_cn: tuple[str, ...] = ()
    """server, mTLS: allowed client subject common names."""
    allow_dns: tuple[str, ...] = ()
    """server, mTLS: allowed DNS names in the client certificate (``*.x`` allowed)."""
    allow_uri: tuple[str, ...] = ()
    """server, mTLS: allowed URIs in the client certificate (e.g. SPIFFE IDs)."""
    alpn: tuple[str, ...] = ()
    """ALPN protocols offered (client) or accepted (server), in preference order."""
    min_version: Literal["1.2", "1.3"] = "1.2"
    """Lowest TLS version allowed."""
    ciphers: str = MODERN_CIPHERS
    """TLS 1.2 cipher suites (OpenSSL syntax); TLS 1.3 uses OpenSSL's defaults."""
    ca: Path | None = None
    """client: CA bundle to verify the backend with (default: the system store)."""
    server_name: str = ""
    """client: SNI and the name checked in the backend certificate (default: forward host)."""
    accept_proxy: bool = False
    """Expect a PROXY v1/v2 header from the client before anything else."""
    send_proxy: Literal["off", "v1", "v2"] = "off"
    """Send a PROXY header to the backend naming the real client."""
    connect_timeout: Duration = field(Duration(10), min=0.001)
    """Seconds to connect (and handshake, in client mode) to the backend."""
    limits: Limits = Limits()
    """Connection limits and timeouts for this listener."""

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together")
        if (self.allow_cn or self.allow_dns or self.allow_uri) and self.client_ca is None:
            raise ValueError("allow_cn/allow_dns/allow_uri need client_ca")
        if self.mode == "client" and (self.route or self.client_ca):
            raise ValueError("route and client_ca are for mode = \"server\"")
        if not self.listen:
            raise ValueError("listen needs at least one address")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The ``[tls]`` section."""

    tunnel: tuple[Tunnel, ...] = (Tunnel(),)
    """The tunnels, as ``[[tls.tunnel]]`` tables."""
    watch_interval: Duration = Duration(2)
    """Seconds between checks of the certificate files for changes; 0 turns it off."""
    shutdown_timeout: Duration = Duration(30)
    """On SIGTERM, seconds to let open connections finish before cutting them."""
    dev_cert_dir: Path | None = None
    """Where the development CA and certificate go (default ~/.local/share/netkit/dev-ca)."""

    def __post_init__(self) -> None:
        names = [t.name for t in self.tunnel if t.name]
        if len(names) != len(set(names)):
            raise ValueError("tunnel names must be unique")


def client_allowed(cert: dict[str, Any] | None, tunnel: Tunnel) -> bool:
    """ghostunnel's rule: with no allow_* lists, any certificate the CA signed; else any match."""
    if not (tunnel.allow_cn or tunnel.allow_dns or tunnel.allow_uri):
        return True
    if not cert:
        return False
    cns = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    sans = cert.get("subjectAltName", ())
    return (any(cn in tunnel.allow_cn for cn in cns)
            or any(k == "DNS" and any(name_matches(p, v) for p in tunnel.allow_dns)
                   for k, v in sans)
            or any(k == "URI" and v in tunnel.allow_uri for k, v in sans))


def describe_cert(cert: dict[str, Any] | None) -> str:
    if not cert:
        return "(none)"
    cns = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    sans = [f"{k}:{v}" for k, v in cert.get("subjectAltName", ())]
    return f"CN={','.join(cns) or '-'} SAN={','.join(sans) or '-'}"


@dataclass(slots=True)
class _Prepared:
    """Everything a tunnel builds from its config, swapped in at once."""

    tunnel: Tunnel
    server_ctx: ssl.SSLContext | None
    selector: SNISelector | None
    client_ctx: ssl.SSLContext | None
    watch: FileWatch


class TunnelRuntime:
    """One tunnel: its listener, its current contexts, and the relays it runs."""

    def __init__(self, tunnel: Tunnel, index: int, dev_dir: Path | None,
                 scratch: Path | None = None) -> None:
        self.label = f"tls[{tunnel.name or index}]"
        self.dev_dir = dev_dir
        self.scratch = scratch  # checking only: a missing dev certificate is made here
        self.current = self.prepare(tunnel)
        self.backend_counters = Counters()
        self.denied = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.server = StreamServer(
            self.label, self._new_relay, limits=tunnel.limits,
            tls=(lambda: self.current.server_ctx) if tunnel.mode == "server" else None,
            accept_proxy=tunnel.accept_proxy)

    @property
    def tunnel(self) -> Tunnel:
        return self.current.tunnel

    def prepare(self, tunnel: Tunnel) -> _Prepared:
        """Load every file the tunnel names; raises ConfigError and changes nothing."""
        what = self.label
        files = [tunnel.cert, tunnel.key, tunnel.client_ca, tunnel.ca]
        if tunnel.mode == "client":
            ctx = client_context(ca=tunnel.ca, cert=tunnel.cert, key=tunnel.key,
                                 alpn=tunnel.alpn, min_version=tunnel.min_version,
                                 ciphers=tunnel.ciphers, what=what)
            return _Prepared(tunnel, None, None, ctx, FileWatch(files))
        if tunnel.cert is None and not any(r.cert for r in tunnel.route):
            tunnel = self._with_dev_cert(tunnel)
            files += [tunnel.cert, tunnel.key]

        def make(cert: Path | None, key: Path | None) -> ssl.SSLContext:
            return server_context(cert, key, client_ca=tunnel.client_ca, alpn=tunnel.alpn,
                                  min_version=tunnel.min_version, ciphers=tunnel.ciphers,
                                  what=what)

        default = make(tunnel.cert, tunnel.key)
        routes = []
        for route in tunnel.route:
            routes.append((route.server_name,
                           make(route.cert, route.key) if route.cert else default))
            files += [route.cert, route.key]
        selector = SNISelector(default, routes, has_default_cert=tunnel.cert is not None)
        return _Prepared(tunnel, default, selector, None, FileWatch(files))

    def _with_dev_cert(self, tunnel: Tunnel) -> Tunnel:
        directory = self.dev_dir or certs.default_dir()
        cert, key = directory / "localhost.pem", directory / "localhost-key.pem"
        if not (cert.exists() and key.exists()):
            # --check-config writes nothing of its own: a scratch certificate will do
            cert, key = certs.issue(self.scratch or directory,
                                    ["localhost", "127.0.0.1", "::1"])
            if self.scratch is not None:
                return replace(tunnel, cert=cert, key=key)
        log.warning("%s: no cert configured: using the development certificate %s "
                    "(trust its CA with: curl --cacert %s https://localhost:PORT/)",
                    self.label, cert, directory / certs.CA_CERT)
        return replace(tunnel, cert=cert, key=key)

    def commit(self, prepared: _Prepared) -> None:
        self.current = prepared
        self.server.limits = prepared.tunnel.limits
        self.server.accept_proxy = prepared.tunnel.accept_proxy

    def reload_files_if_changed(self) -> None:
        prepared = rebuild_if_changed(self.label, self.current.watch,
                                      lambda: self.prepare(self.tunnel))
        if prepared is not None:
            self.current = prepared

    # --- per connection ---

    def _new_relay(self) -> Any:
        splice = Splice(on_inbound=self._inbound_ready, on_done=self._relay_done)
        return splice.inbound

    def _inbound_ready(self, splice: Splice) -> None:
        conn = splice.inbound.conn
        conn.pause_reading()  # nothing is read until the backend is there
        current = self.current
        tunnel = current.tunnel
        forward = tunnel.forward
        # the handshake's details are looked at only when a rule needs them
        info = conn.tls_info if (tunnel.client_ca or tunnel.route) else None
        if info is not None:
            if tunnel.client_ca is not None and not client_allowed(info.peer_cert, tunnel):
                self.denied += 1
                log.warning("%s: %s: client certificate %s is not allowed by allow_cn/"
                            "allow_dns/allow_uri", self.label, _fmt(conn.peer),
                            describe_cert(info.peer_cert))
                conn.close()
                return
            for route in tunnel.route:
                if route.forward and info.server_name and name_matches(route.server_name,
                                                                       info.server_name):
                    forward = route.forward
                    break
        splice.forward = forward
        task = asyncio.get_running_loop().create_task(
            self._connect_backend(splice, forward, current))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect_backend(self, splice: Splice, forward: Address,
                               current: _Prepared) -> None:
        tunnel = current.tunnel
        inbound = splice.inbound.conn
        header = b""
        if tunnel.send_proxy != "off":
            encode = proxy.encode_v2 if tunnel.send_proxy == "v2" else proxy.encode_v1
            header = encode(inbound.peer, inbound.local)
        try:
            await open_connection(forward, splice.outbound, timeout=tunnel.connect_timeout,
                                  tls=current.client_ctx,
                                  server_hostname=tunnel.server_name or None,
                                  proxy_header=header, limits=tunnel.limits,
                                  counters=self.backend_counters,
                                  label=f"{self.label} backend")
        except NetkitError as exc:
            log.warning("%s: %s: backend %s: %s", self.label, _fmt(inbound.peer), forward, exc)
            splice.finish()
            return
        if splice.done:  # the client left while we were connecting
            splice.outbound.conn.close()
            return
        splice.attach()

    def _relay_done(self, splice: Splice) -> None:
        inbound = getattr(splice.inbound, "conn", None)
        if inbound is None or not log.isEnabledFor(logging.INFO):
            return
        info = inbound.tls_info
        tls = f" {info.version}" + (f" sni={info.server_name}" if info.server_name else "") \
            if info else ""
        log.info("%s: %s -> %s closed after %.3f s:%s %d bytes in, %d bytes out%s",
                 self.label, _fmt(inbound.peer), getattr(splice, "forward", "?"),
                 splice.elapsed(), tls, inbound.bytes_in, inbound.bytes_out,
                 f" ({splice.error})" if splice.error else "")


def _fmt(addr: tuple[str, int]) -> str:
    return str(Address(*addr)) if addr[0] else "?"


class TLSWrapper:
    """The service `cli` drives: all tunnels, the certificate watcher, reload and drain."""

    def __init__(self, config: Config, *, scratch: Path | None = None) -> None:
        self.config = config
        self.tunnels = [TunnelRuntime(t, i, config.dev_cert_dir, scratch)
                        for i, t in enumerate(config.tunnel)]

    async def start(self, tg: anyio.abc.TaskGroup, presets: SocketPresets) -> None:
        self.worker = bool(presets)  # sockets bound by a --workers parent
        self.tg = tg
        for rt in self.tunnels:
            await rt.server.listen(rt.tunnel.listen, presets=presets)
        if self.config.watch_interval > 0:
            tg.start_soon(self._watch)

    async def _watch(self) -> None:
        while True:
            await anyio.sleep(self.config.watch_interval)
            for rt in self.tunnels:
                rt.reload_files_if_changed()

    def reload(self, config: Config) -> None:
        if len(config.tunnel) != len(self.tunnels):
            raise ConfigError([f"{SECTION}: tunnels were added or removed; restart to apply"])
        prepared = [rt.prepare(t) for rt, t in zip(self.tunnels, config.tunnel, strict=True)]
        rebinds: list[SocketPresets | None] = []
        try:
            for rt, t in zip(self.tunnels, config.tunnel, strict=True):
                rebinds.append(listen_changes(rt.server, rt.tunnel.listen, t.listen,
                                              rt.label, self.worker))
        except ConfigError:
            for presets in rebinds:
                for sock in (presets or {}).values():
                    sock.close()
            raise
        for rt, p, presets in zip(self.tunnels, prepared, rebinds, strict=True):
            rt.commit(p)
            if presets is not None:
                self.tg.start_soon(rt.server.relisten, p.tunnel.listen, presets)
        self.config = replace(config, watch_interval=self.config.watch_interval)

    def status(self) -> dict[str, Any]:
        return {"tunnels": tunnels_view(self, {})}

    def addresses(self) -> list[Address]:
        return [a for rt in self.tunnels for a in rt.server.addresses]

    def counters(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for rt in self.tunnels:
            for key, value in {**rt.server.counters.snapshot(), "denied": rt.denied}.items():
                total[key] = total.get(key, 0) + value
        return total

    def labelled(self) -> dict[str, tuple[Any, ...]]:
        """For the admin endpoint: each tunnel's connections open now (a gauge), accepted,
        refused and TLS failures, by tunnel (its name, else its index in the config)."""
        names = [rt.tunnel.name or str(i) for i, rt in enumerate(self.tunnels)]
        snaps = [rt.server.counters for rt in self.tunnels]

        def by(key: str) -> dict[str, int]:
            return {n: getattr(c, key) for n, c in zip(names, snaps, strict=True)}
        return {"tunnel_connections": ("tunnel", by("active"), "gauge"),
                "tunnel_accepted": ("tunnel", by("accepted")),
                "tunnel_refused": ("tunnel", by("refused")),
                "tunnel_tls_failures": ("tunnel", by("tls_failures"))}

    async def drain(self, timeout: float) -> None:
        async with anyio.create_task_group() as tg:
            for rt in self.tunnels:
                tg.start_soon(rt.server.drain, timeout)
        for rt in self.tunnels:
            c = rt.server.counters
            log.info("%s: served %d connections (%d refused, %d TLS failures, %d denied by "
                     "rules, %d timeouts), %d bytes in, %d bytes out", rt.label, c.accepted,
                     c.refused, c.tls_failures, rt.denied, c.timeouts, c.bytes_in, c.bytes_out)


def listen_specs(config: Config) -> list[tuple[str, Address]]:
    return [("tcp", a) for t in config.tunnel for a in t.listen]


def override_listen(doc: dict[str, Any], addresses: list[str]) -> None:
    tunnels = doc.setdefault(SECTION, {}).setdefault("tunnel", [{}])
    if len(tunnels) != 1:
        raise ConfigError([f"--listen: the config has {len(tunnels)} tunnels; set each one's "
                           "addresses with --set tls.tunnel.N.listen=[...]"])
    tunnels[0]["listen"] = addresses


def loopback_defaults(doc: dict[str, Any], address: str) -> None:
    for tunnel in doc.setdefault(SECTION, {}).setdefault("tunnel", [{}]):
        if isinstance(tunnel, dict):
            tunnel.setdefault("listen", [address])


def tunnels_view(service: TLSWrapper, args: dict[str, Any]) -> list[dict[str, Any]]:
    """`netkit ctl tunnels`: each tunnel's mode, addresses, backend and counters."""
    return [{"label": rt.label, "mode": rt.tunnel.mode,
             "listen": [str(a) for a in rt.server.addresses],
             "forward": str(rt.tunnel.forward), "denied": rt.denied,
             **rt.server.counters.snapshot()} for rt in service.tunnels]


def check(config: Config) -> None:
    """--check-config: every file loaded and every context built, nothing written (a
    development certificate, when one is needed and missing, goes to a temp dir)."""
    with tempfile.TemporaryDirectory(prefix="netkit-check-") as scratch:
        TLSWrapper(config, scratch=Path(scratch))


def create(config: Config | Mapping[str, Any] | str | None = None) -> TLSWrapper:
    """The TLS wrapper for `config` (a `{"tls": {...}}` document, TOML text or `Config`),
    checked as the CLI does; binds nothing."""
    return TLSWrapper(running.load(SPEC, config))


def serve(config: Config | Mapping[str, Any] | str | None = None
          ) -> AbstractAsyncContextManager[running.Server]:
    """`async with serve(config) as server:` runs the tunnels on this event loop (each on
    127.0.0.1, port 0 unless the config says) and drains them at the end of the block."""
    return running.serve(SPEC, config)


def connections_view(service: Any, args: dict[str, Any]) -> list[dict[str, object]]:
    """`netkit ctl connections`: the open client connections of every tunnel."""
    return [{"tunnel": rt.label, **row} for rt in service.tunnels for row in rt.server.view()]


SPEC = ServerSpec(
    name=SECTION, summary="TLS wrapper: TLS in, plaintext out, or the other way round",
    config=Config, create=create, check=check, listen_specs=listen_specs,
    override_listen=override_listen, loopback_defaults=loopback_defaults,
    commands={"tunnels": tunnels_view, "connections": connections_view})


def main(argv: list[str] | None = None) -> int:
    return server_main(SECTION, argv)


if __name__ == "__main__":
    sys.exit(main())
