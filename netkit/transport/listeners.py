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
            bound = peer_tuple(sock.getsockname())
            self.addresses.append(Address(*bound))
            log.info("%s: listening on %s (tcp%s%s)", self.label, self.addresses[-1],
                     ", tls" if self.tls else "", ", proxy protocol" if self.accept_proxy else "")
        return self.addresses

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
            self.addresses.append(Address(*peer_tuple(sock.getsockname())))
            log.info("%s: listening on %s (udp)", self.label, self.addresses[-1])
        return self.addresses

    def close(self) -> None:
        for endpoint in self.endpoints:
            if endpoint.transport is not None:
                endpoint.transport.close()


