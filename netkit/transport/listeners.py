"""Listening sockets: TCP accept loops (`StreamServer`) and UDP endpoints (`DatagramServer`).

Each accepted TCP socket becomes a `Connection` (connection.py) in front of a server's
`Handler`; each UDP datagram goes to a `DatagramHandler`. Workers inherit their bound
sockets as `SocketPresets` (see workers.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Iterable

import anyio

from ..config import Address
from .connection import Connection, Counters, Handler, Limits, fmt_peer, peer_tuple

log = logging.getLogger("netkit.transport")

def bind_socket(kind: str, address: Address, *, reuse_port: bool = False) -> socket.socket:
    """A bound (not yet listening) TCP or UDP socket for `address`."""
    infos = socket.getaddrinfo(address.host, address.port, type=(
        socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM), flags=socket.AI_PASSIVE)
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        if kind == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def bind_udp_tcp(address: Address, *, reuse_port: bool = False,
                 attempts: int = 20) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same port (DNS serves both on one); with port 0 a
    port free for both is searched, since a port free for UDP may be taken for TCP."""
    for _ in range(attempts if address.port == 0 else 1):
        udp = bind_socket("udp", address, reuse_port=reuse_port)
        port = udp.getsockname()[1]
        try:
            return udp, bind_socket("tcp", Address(address.host, port), reuse_port=reuse_port)
        except OSError:
            udp.close()
            if address.port != 0:
                raise
    raise OSError(f"no port free for both UDP and TCP on {address.host}")


SocketPresets = dict[tuple[str, str], socket.socket]
"""Sockets a worker inherited from its supervisor, by (kind, configured address)."""


class StreamServer:
    """Accepts TCP (optionally PROXY, optionally TLS) on any number of addresses."""

    def __init__(self, label: str, handler_factory: Callable[[], Handler], *,
                 limits: Limits, tls: Callable[[], ssl.SSLContext | None] | None = None,
                 accept_proxy: bool = False, counters: Counters | None = None) -> None:
        self.label = label
        self.handler_factory = handler_factory
        self.limits = limits
        self.tls = tls
        self.accept_proxy = accept_proxy
        self.counters = counters or Counters()
        self.connections: set[Connection] = set()
        self.addresses: list[Address] = []
        self._servers: list[asyncio.Server] = []
        self._by_config: dict[str, tuple[asyncio.Server, Address]] = {}

    def _protocol(self) -> Connection:
        return Connection(self.handler_factory(), limits=self.limits, counters=self.counters,
                          label=self.label, accept_proxy=self.accept_proxy,
                          tls=self.tls() if self.tls else None, owner=self)

    async def listen(self, addresses: Iterable[Address], *,
                     presets: SocketPresets | None = None, backlog: int = 1024) -> list[Address]:
        """Bind and start accepting; returns (and logs) the bound addresses."""
        loop = asyncio.get_running_loop()
        for address in addresses:
            sock = (presets or {}).pop(("tcp", str(address)), None)
            if sock is None:
                sock = bind_socket("tcp", address)
            server = await loop.create_server(self._protocol, sock=sock, backlog=backlog)
            self._servers.append(server)
            bound = Address(*peer_tuple(sock.getsockname()))
            self.addresses.append(bound)
            self._by_config[str(address)] = (server, bound)
            log.info("%s: listening on %s (tcp%s%s)", self.label, bound,
                     ", tls" if self.tls else "", ", proxy protocol" if self.accept_proxy else "")
        return self.addresses

    @property
    def configured(self) -> list[str]:
        """The addresses listened on, as configured (port 0 stays 0)."""
        return list(self._by_config)

    async def relisten(self, addresses: Iterable[Address], presets: SocketPresets) -> None:
        """Listen on exactly `addresses` (a reload): the ones listened on already are kept
        with their connections, the ones no longer wanted close (their open connections
        go on), the new ones open with the sockets bound for them in `presets`."""
        wanted = {str(a): a for a in addresses}
        for key in [k for k in self._by_config if k not in wanted]:
            server, bound = self._by_config.pop(key)
            server.close()
            self._servers.remove(server)
            self.addresses.remove(bound)
            log.info("%s: stopped listening on %s", self.label, bound)
        await self.listen([a for k, a in wanted.items() if k not in self._by_config],
                          presets=presets)

    def view(self, limit: int = 1000) -> list[dict[str, object]]:
        """The open connections (the oldest first, `limit` at most): who, to which
        listener, for how long, bytes each way, idle for how long: for an operator's
        `netkit ctl connections`."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        conns = sorted((c for c in self.connections if c.is_open),
                       key=lambda c: c._started)[:limit]
        return [{"peer": fmt_peer(c.peer), "local": fmt_peer(c.local),
                 "age": round(now - c._started, 1), "idle": round(now - c.last_io, 1),
                 "bytes_in": c.bytes_in, "bytes_out": c.bytes_out,
                 "tls": c.tls_info.version if c.tls_info else ""} for c in conns]

    def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            if conn.is_open:
                conn.handler.shutdown_requested()

    async def drain(self, timeout: float) -> None:
        """Stop accepting, let connections finish for up to `timeout` s, then abort the rest."""
        self.stop_accepting()
        with anyio.move_on_after(timeout):
            while self.connections:
                await anyio.sleep(0.05)
        if self.connections:
            log.info("%s: drain deadline reached, aborting %d connections", self.label,
                     len(self.connections))
            for conn in list(self.connections):
                conn.abort()
            await anyio.sleep(0)

    def close(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.abort()


class DatagramHandler:
    """A UDP server's logic: one call per datagram; answer with `endpoint.send`."""

    def datagram_received(self, data: bytes, addr: tuple[str, int],
                          endpoint: DatagramEndpoint) -> None:
        pass


class DatagramEndpoint(asyncio.DatagramProtocol):
    """One bound UDP socket: counts, hands datagrams to the handler, sends answers."""

    def __init__(self, handler: DatagramHandler, counters: Counters, label: str) -> None:
        self.handler = handler
        self.counters = counters
        self.label = label
        self.transport: asyncio.DatagramTransport | None = None
        self._outbox: list[tuple[bytes, tuple[str, int]]] = []
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        counters = self.counters
        counters.datagrams_in += 1
        counters.bytes_in += len(data)
        try:
            self.handler.datagram_received(data, addr, self)
        except Exception:
            # one bad datagram never takes the listener down
            log.exception("%s: handler failed on a datagram from %s", self.label, fmt_peer(addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("%s: %s", self.label, exc)  # ICMP errors for earlier sends: nothing to do

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send at the end of this loop turn, with the turn's other answers: back-to-back
        sends find the client awake, where each lone send pays for waking it (measured on
        the DNS resolver: the dearest part of its system time)."""
        if self.transport is not None and not self.transport.is_closing():
            self.counters.datagrams_out += 1
            self.counters.bytes_out += len(data)
            if not self._outbox:
                self._loop.call_soon(self._flush)
            self._outbox.append((data, addr))

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, []
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        for data, addr in outbox:
            transport.sendto(data, addr)


class DatagramServer:
    """Receives UDP on any number of addresses."""

    def __init__(self, label: str, handler: DatagramHandler, *,
                 counters: Counters | None = None) -> None:
        self.label = label
        self.handler = handler
        self.counters = counters or Counters()
        self.addresses: list[Address] = []
        self.endpoints: list[DatagramEndpoint] = []
        self._by_config: dict[str, tuple[DatagramEndpoint, Address]] = {}

    async def listen(self, addresses: Iterable[Address], *,
                     presets: SocketPresets | None = None) -> list[Address]:
        loop = asyncio.get_running_loop()
        for address in addresses:
            sock = (presets or {}).pop(("udp", str(address)), None)
            if sock is None:
                sock = bind_socket("udp", address)
            _, endpoint = await loop.create_datagram_endpoint(
                lambda: DatagramEndpoint(self.handler, self.counters, self.label), sock=sock)
            self.endpoints.append(endpoint)
            bound = Address(*peer_tuple(sock.getsockname()))
            self.addresses.append(bound)
            self._by_config[str(address)] = (endpoint, bound)
            log.info("%s: listening on %s (udp)", self.label, bound)
        return self.addresses

    @property
    def configured(self) -> list[str]:
        return list(self._by_config)

    async def relisten(self, addresses: Iterable[Address], presets: SocketPresets) -> None:
        """As `StreamServer.relisten`, for UDP."""
        wanted = {str(a): a for a in addresses}
        for key in [k for k in self._by_config if k not in wanted]:
            endpoint, bound = self._by_config.pop(key)
            if endpoint.transport is not None:
                endpoint.transport.close()
            self.endpoints.remove(endpoint)
            self.addresses.remove(bound)
            log.info("%s: stopped listening on %s (udp)", self.label, bound)
        await self.listen([a for k, a in wanted.items() if k not in self._by_config],
                          presets=presets)

    def close(self) -> None:
        for endpoint in self.endpoints:
            if endpoint.transport is not None:
                endpoint.transport.close()




def prebind(configured: Iterable[str], addresses: Iterable[Address], *, label: str,
            udp_too: bool = False) -> SocketPresets:
    """For a reload: bind now (so a failure can still keep the old config) the addresses
    that are not listened on yet; `relisten` takes the sockets. Raises ConfigError naming
    the address that cannot be bound; nothing stays bound then."""
    from ..errors import ConfigError

    have = set(configured)
    presets: SocketPresets = {}
    try:
        for address in addresses:
            if str(address) in have:
                continue
            if udp_too:
                udp, tcp = bind_udp_tcp(address)
                presets[("udp", str(address))] = udp
            else:
                tcp = bind_socket("tcp", address)
            presets[("tcp", str(address))] = tcp
    except OSError as exc:
        for sock in presets.values():
            sock.close()
        raise ConfigError([f"{label}.listen: cannot listen on {address}: "
                           f"{exc.strerror or exc}"]) from None
    return presets


def listen_changes(server: StreamServer | DatagramServer, previous: Iterable[Address],
                   addresses: Iterable[Address], label: str, worker: bool, *,
                   udp_too: bool = False) -> SocketPresets | None:
    """A reload's new listen addresses: None when they are the configured ones still, or
    when this process is a --workers worker (the parent bound its sockets: a warning says
    a restart is needed); else the newly bound sockets for `relisten` (ConfigError if one
    cannot be bound)."""
    addresses = list(addresses)
    if {str(a) for a in addresses} == {str(a) for a in previous}:
        return None
    if worker:
        log.warning("%s: listen addresses changed to %s: restart to apply them (with "
                    "--workers the parent binds every socket)", label,
                    ", ".join(map(str, addresses)))
        return None
    return prebind(server.configured, addresses, label=label, udp_too=udp_too)
