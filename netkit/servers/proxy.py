"""The HTTP forward proxy: `python -m netkit.servers.proxy` (tinyproxy/Squid's job).

    curl -x http://127.0.0.1:3128 http://example.com/       # absolute-form, forwarded
    curl -x http://127.0.0.1:3128 https://example.com/      # CONNECT, spliced

Each client connection runs the HTTP engine's server role; each origin connection its
client role (`proto/http/connection.py`), so both sides are parsed and framed by the
same strict codec: a smuggling attempt is a 400 here and never reaches an origin.
Bodies stream through with backpressure both ways (each side framed on its own:
chunked in may go out with a length and the other way round); hop-by-hop fields stay
behind (`proto/http/proxying.py`) and a Via goes on. Origin connections are pooled
per resolved address. CONNECT is answered 200 only once the origin connection is up,
then the two connections are spliced (`transport/splice.py`), half-close included.

Safety: clients outside `proxy.allow` get 403; destinations are resolved first and
the connection goes to exactly the address that passed `proxy.deny_destinations`
(loopback, link-local and the proxy's own addresses by default), so a name cannot
point elsewhere between check and connect; a request to the proxy itself, or one
already carrying our Via, is a loop (508).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import sys
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio.abc

from netkit import running
from netkit.cli import server_main
from netkit.config import Address, Duration, Network, Size, field
from netkit.contract import ServerSpec
from netkit.errors import ConnectError, ConnectTimeout, NetkitError, RemoteProtocolError
from netkit.proto.addresses import PRIVATE, in_networks, is_ip_literal
from netkit.proto.http import codec as h
from netkit.proto.http.connection import HeadLines, HTTPConnection, Role
from netkit.proto.http.proxying import (
    Refusal,
    Target,
    forwarded_fields,
    has_our_via,
    target_of,
    via_value,
)
from netkit.tasks import TaskSet
from netkit.transport.connect import open_connection
from netkit.transport.connection import Connection, Counters, Handler, Limits
from netkit.transport.listeners import SocketPresets, StreamServer, listen_changes
from netkit.transport.splice import Splice

from .proxyauth import Credentials

log = logging.getLogger("netkit.proxy")
access_log = logging.getLogger("netkit.proxy.access")

SECTION = "proxy"
#: never connected to unless the config says otherwise: loopback, "this network",
#: link-local (cloud metadata at 169.254.169.254 among them)
DENIED = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "::1/128", "0.0.0.0/8", "169.254.0.0/16", "fe80::/10", "::/128"))
_LOOPBACK = tuple(ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128"))
_ORIGIN_LIMITS = h.Limits(max_body=0)  # a response streams through: no size limit


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The ``[proxy]`` section."""

    listen: tuple[Address, ...] = (Address("127.0.0.1", 3128),)
    allow: tuple[Network, ...] = PRIVATE
    """Clients that may use the proxy; others get 403 (and a log line)."""
    connect_ports: tuple[int, ...] = (443,)
    """Ports CONNECT may open tunnels to; others get 403."""
    deny_destinations: tuple[Network, ...] = DENIED
    """Addresses never connected to, checked on the resolved address; the proxy's own
    listening addresses are always denied too. Set [] to reach loopback origins."""
    upstream: Address | None = None
    """Another proxy to send everything through (http:// absolute-form, CONNECT)."""
    resolver: tuple[Address, ...] = ()
    """DNS servers to resolve origin names with (netkit's DNS client); none: the system's."""
    accept_proxy: bool = False
    """Every client connection starts with a PROXY v1/v2 header (a load balancer in
    front): `allow`, the logs and X-Forwarded-For use its source address."""
    via: str = "netkit"
    """The name in the Via field; a request that already carries it is a loop (508)."""
    auth_file: Path | None = None
    """htpasswd-style users (bcrypt or SHA-256-crypt lines): then every request needs
    Proxy-Authorization: Basic (407 without)."""
    auth_realm: str = "netkit proxy"
    forwarded: Literal["off", "x-forwarded-for", "forwarded"] = "off"
    """Tell origins the client's address (X-Forwarded-For, or RFC 7239 Forwarded)."""
    connect_timeout: Duration = field(Duration(10), min=0.01)
    """Seconds to connect to an origin (504 after)."""
    origin_timeout: Duration = field(Duration(60), min=0.01)
    """Seconds for an origin to start its response once the request is sent (504)."""
    header_timeout: Duration = field(Duration(10), min=0.01)
    body_timeout: Duration = field(Duration(60), min=0.01)
    max_header_bytes: Size = field(Size(65536), min=1024)
    max_headers: int = field(100, min=1)
    max_request_line: Size = field(Size(8192), min=256)
    max_idle_per_origin: int = field(64, min=0)
    """Idle keep-alive connections kept per origin address."""
    limits: Limits = Limits(idle_timeout=Duration(75))
    """Client connections (and tunnels): idle_timeout is the keep-alive timeout."""
    origin_limits: Limits = Limits(idle_timeout=Duration(60))
    """Origin connections: idle_timeout also bounds a silent response body."""
    shutdown_timeout: Duration = Duration(10)


class ProxyService:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.server = StreamServer("proxy", lambda: _Client(self), limits=config.limits,
                                   accept_proxy=config.accept_proxy)
        self.origin_counters = Counters()
        self.idle: dict[tuple[str, int], list[_Origin]] = {}
        self.stats = dict.fromkeys(("requests", "tunnels", "refused_clients", "denied",
                                    "loops", "auth_required", "bad_gateway",
                                    "gateway_timeout"), 0)
        self.tasks = TaskSet()
        self.head_lines = HeadLines(b"")  # the origin's Date and Server pass through
        self._resolver: Any = None
        self._own: set[tuple[str, int]] = set()
        self.credentials = Credentials(config.auth_file) if config.auth_file else None

    async def start(self, tg: anyio.abc.TaskGroup, presets: SocketPresets) -> None:
        self.worker = bool(presets)
        self.tg = tg
        await self.server.listen(self.config.listen, presets=presets)
        self._own = {(a.host, a.port) for a in self.server.addresses}
        self._make_resolver()

    def _make_resolver(self) -> None:
        if self.config.resolver:
            from netkit.clients.dns import Resolver, StubCache
            self._resolver = Resolver(list(self.config.resolver), cache=StubCache(4096),
                                      timeout=2.0, attempts=2)
        else:
            self._resolver = None

    def reload(self, config: Config) -> None:
        credentials = Credentials(config.auth_file) if config.auth_file else None  # first
        presets = listen_changes(self.server, self.config.listen, config.listen, SECTION,
                                 self.worker)
        if presets is not None:
            self.tg.start_soon(self.server.relisten, config.listen, presets)
        self.config = config
        self.credentials = credentials
        self.server.limits = config.limits
        self.server.accept_proxy = config.accept_proxy
        self._make_resolver()

    def status(self) -> dict[str, Any]:
        return {"listen": [str(a) for a in self.server.addresses], **self.counters()}

    def addresses(self) -> list[Address]:
        return list(self.server.addresses)

    def counters(self) -> dict[str, int]:
        origin = self.origin_counters.snapshot()
        return {**self.server.counters.snapshot(), **self.stats,
                "origin_active": origin["active"], "origin_bytes_in": origin["bytes_in"],
                "origin_bytes_out": origin["bytes_out"]}

    @property
    def url(self) -> str:
        """The proxy as a URL for clients (`http://127.0.0.1:3128`)."""
        return f"http://{self.server.addresses[0]}"

    async def drain(self, timeout: float) -> None:
        await self.server.drain(timeout)
        for conns in self.idle.values():
            for origin in conns:
                origin.conn.close()
        self.idle.clear()
        self.tasks.cancel_all()

    def spawn(self, coro: Any) -> None:
        self.tasks.spawn(coro)

    # --- destinations ---

    def is_self(self, host: str, port: int) -> bool:
        """`host:port` is one of our listeners (a wildcard one: on any loopback address)."""
        for own_host, own_port in self._own:
            if port == own_port and (host == own_host or (
                    own_host in ("0.0.0.0", "::") and
                    (host == "localhost" or in_networks(host, _LOOPBACK)))):
                return True
        return host == "localhost" and any(p == port for _, p in self._own)

    async def addresses_of(self, host: str, port: int) -> list[str]:
        """The addresses `host` resolves to, in order; Refusal(502) when it does not."""
        if is_ip_literal(host):
            return [host]
        try:
            if self._resolver is not None:
                found = []
                for rdtype in ("A", "AAAA"):
                    try:
                        found += [r.address for r in await self._resolver.resolve(host,
                                                                                   rdtype)]
                    except NetkitError:
                        continue
                if not found:
                    raise OSError(f"no address for {host}")
                return found
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM)
            return list(dict.fromkeys(info[4][0] for info in infos))
        except OSError as exc:
            raise Refusal(502, f"cannot resolve {host}: {exc}") from None

    async def checked_address(self, target: Target) -> str:
        """The first address of the target that is not denied; Refusal(403) if none."""
        addresses = await self.addresses_of(target.host, target.port)
        denied = self.config.deny_destinations
        for address in addresses:
            if self.is_self(address, target.port):
                raise Refusal(508, "the request is for the proxy itself")
            if not in_networks(address, denied):
                return address
        self.stats["denied"] += 1
        raise Refusal(403, f"destination {target.host} ({', '.join(addresses)}) is denied")

    async def connect(self, address: str, port: int, handler: Handler,
                      limits: Limits) -> Connection:
        """A connection to exactly `address`; Refusal(502/504) naming the cause."""
        try:
            return await open_connection(Address(address, port), handler,
                                         timeout=self.config.connect_timeout, limits=limits,
                                         counters=self.origin_counters, label="proxy origin")
        except ConnectTimeout:
            self.stats["gateway_timeout"] += 1
            raise Refusal(504, f"connecting to {address}:{port} timed out") from None
        except (ConnectError, NetkitError) as exc:
            self.stats["bad_gateway"] += 1
            raise Refusal(502, f"cannot connect to {Address(address, port)}: "
                               f"{_reason(exc)}") from None

    async def origin_for(self, target: Target) -> _Origin:
        """A pooled or new connection to the target (or to the upstream proxy)."""
        upstream = self.config.upstream
        if upstream is not None:
            if is_ip_literal(target.host) and in_networks(target.host,
                                                          self.config.deny_destinations):
                self.stats["denied"] += 1
                raise Refusal(403, f"destination {target.host} is denied")
            address, port = upstream.host, upstream.port
        else:
            address, port = await self.checked_address(target), target.port
        key = (address, port)
        idle = self.idle.get(key)
        while idle:
            origin = idle.pop()
            if origin.usable:
                origin.reused = True
                return origin
            origin.conn.close()
        origin = _Origin(self, key)
        await self.connect(address, port, origin, self.config.origin_limits)
        return origin

    def release(self, origin: _Origin) -> None:
        idle = self.idle.setdefault(origin.key, [])
        if origin.usable and len(idle) < self.config.max_idle_per_origin:
            origin.exchange = None
            # a slow client may have paused it and the response ended before the client
            # caught up: a pooled connection must read again (its next answer, or a close)
            origin.conn.resume_reading()
            idle.append(origin)
        else:
            origin.conn.close()

    def forget(self, origin: _Origin) -> None:
        idle = self.idle.get(origin.key)
        if idle and origin in idle:
            idle.remove(origin)


def _reason(exc: BaseException) -> str:
    """Why a connect failed, without the address the message repeats."""
    attempts = getattr(exc, "attempts", None)
    if attempts:
        return "; ".join(dict.fromkeys(why for _, why in attempts))
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


class _Origin(Handler):
    """One connection to an origin (or the upstream proxy): the engine's client role."""

    def __init__(self, service: ProxyService, key: tuple[str, int]) -> None:
        self.service = service
        self.key = key
        self.http = HTTPConnection(Role.CLIENT, _ORIGIN_LIMITS)
        self.exchange: _Client | None = None
        self.reused = False
        self.lost = False
        self.eof = False

    @property
    def usable(self) -> bool:
        return not self.lost and not self.eof and self.conn.is_open

    def data_received(self, data: bytes) -> None:
        self.http.receive_data(data)
        self._pump()

    def eof_received(self) -> None:
        self.eof = True
        self.http.receive_eof()
        self._pump()

    def _pump(self) -> None:
        client = self.exchange
        if client is None:  # idle in the pool: a close (or anything) ends it
            self.service.forget(self)
            self.conn.close()
            return
        http = self.http
        while self.exchange is client:
            try:
                ev = http.next_event()
            except RemoteProtocolError as exc:
                client.origin_failed(502, f"bad response from the origin: {exc}")
                return
            cls = ev.__class__
            if cls is h.Response:
                if ev.status >= 200:  # type: ignore[attr-defined]
                    client.response_head(ev)  # type: ignore[arg-type]
            elif cls is h.Data:
                client.response_data(ev.data)  # type: ignore[attr-defined]
            elif cls is h.EndOfMessage:
                client.response_end()
                return
            elif ev is h.CLOSED:
                client.origin_failed(502, "the origin closed the connection without a "
                                          "complete response")
                return
            else:  # NEED_DATA
                return

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        self.service.forget(self)
        if self.exchange is not None:
            self.exchange.origin_failed(502, "the origin connection was lost")

    def timed_out(self, phase: str) -> None:
        if self.exchange is not None:
            self.exchange.origin_failed(504, "the origin went silent")
        self.conn.abort()

    def pause_writing(self) -> None:  # the origin reads our request body slowly
        if self.exchange is not None:
            self.exchange.conn.pause_reading()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.update_reading()


class _Client(Handler):
    """One client connection: requests in through the server role of the engine."""

    def __init__(self, service: ProxyService) -> None:
        self.service = service
        config = service.config
        self.http = HTTPConnection(
            Role.SERVER, h.Limits(max_request_line=config.max_request_line,
                                  max_headers=config.max_headers,
                                  max_header_bytes=config.max_header_bytes, max_body=0),
            head_timeout=config.header_timeout, body_timeout=config.body_timeout,
            head_lines=service.head_lines)
        self.origin: _Origin | None = None
        self.waiting = False  # an origin is being connected: events wait
        self.head_sent = False  # the response head went to the client
        self.write_paused = False
        self.closing = False
        self.lost = False
        self.allowed: bool | None = None
        self.deadline_timer: asyncio.TimerHandle | None = None
        self.origin_timer: asyncio.TimerHandle | None = None
        self.started = 0.0
        self.request: h.Request | None = None
        self.sent_bytes = 0
        self.received_bytes = 0

    # --- the client's bytes ---

    def data_received(self, data: bytes) -> None:
        self.http.receive_data(data)
        self._process()

    def eof_received(self) -> None:
        self.http.receive_eof()
        self._process()

    def _process(self) -> None:
        http = self.http
        while not self.closing and not self.waiting:
            try:
                event = http.next_event()
            except RemoteProtocolError as exc:
                status = exc.reply_hint or 400
                log.info("proxy: %s: %s (%d)", _peer(self.conn), exc, status)
                self.answer(status, str(exc), close=True)
                return
            cls = event.__class__
            if cls is h.Request:
                self._request(event)  # type: ignore[arg-type]
            elif cls is h.Data:
                if self.origin is not None:
                    self.received_bytes += len(event.data)  # type: ignore[attr-defined]
                    self.origin.conn.write(self.origin.http.send_data(event.data))  # type: ignore
            elif cls is h.EndOfMessage:
                if self.origin is not None:
                    self.origin.conn.write(self.origin.http.end_request())
            elif event is h.NEED_DATA:
                if http.deadline_due:
                    self._arm_deadline(http.start_deadline(self.conn.loop.time()))
                return
            elif event is h.PAUSED:
                return
            else:  # CLOSED
                self._end()
                return

    def _request(self, request: h.Request) -> None:
        service = self.service
        service.stats["requests"] += 1
        self.started = time.monotonic()
        self.request = request
        self.sent_bytes = self.received_bytes = 0
        self.head_sent = False
        if self.allowed is None:
            self.allowed = in_networks(self.conn.peer[0], service.config.allow)
        try:
            if not self.allowed:
                service.stats["refused_clients"] += 1
                log.warning("proxy: %s: client not in proxy.allow: refused", _peer(self.conn))
                raise Refusal(403, "this proxy does not serve your address")
            target = target_of(request)
            if has_our_via(request.headers, service.config.via) or \
                    service.is_self(target.host, target.port):
                service.stats["loops"] += 1
                raise Refusal(508, "the request would loop through this proxy")
            if target.connect and target.port not in service.config.connect_ports:
                raise Refusal(403, f"CONNECT to port {target.port} is not allowed")
        except Refusal as refusal:
            self.answer(refusal.status, str(refusal), close=request.method == b"CONNECT")
            return
        self.waiting = True
        self.conn.pause_reading()
        credentials = service.credentials
        header = request.headers.get(b"proxy-authorization")
        if credentials is not None and not credentials.known(header, time.monotonic()):
            service.spawn(self._authorize(request, target, credentials, header))
        elif target.connect:
            service.stats["tunnels"] += 1
            service.spawn(self._tunnel(request, target))
        else:
            service.spawn(self._forward(request, target))

    async def _authorize(self, request: h.Request, target: Target, credentials: Credentials,
                         header: bytes | None) -> None:
        if await credentials.check(header):
            if target.connect:
                self.service.stats["tunnels"] += 1
                await self._tunnel(request, target)
            else:
                await self._forward(request, target)
            return
        self.service.stats["auth_required"] += 1
        self.waiting = False
        if self.lost:
            return
        realm = self.service.config.auth_realm.replace('"', "'")
        self.answer(407, "proxy authentication required" if header is None else
                    "wrong proxy credentials", close=target.connect,
                    fields=[(b"Proxy-Authenticate", f'Basic realm="{realm}"'.encode())])
        self.update_reading()
        self._process()

    # --- forwarding a request ---

    async def _forward(self, request: h.Request, target: Target) -> None:
        service = self.service
        try:
            origin = await service.origin_for(target)
        except Refusal as refusal:
            self.waiting = False
            if not self.lost:
                self.answer(refusal.status, str(refusal))
                self.update_reading()
                self._process()
            return
        if self.lost:
            service.release(origin)
            return
        self._send_request(origin, request, target)

    def _send_request(self, origin: _Origin, request: h.Request, target: Target) -> None:
        config = self.service.config
        self.origin = origin
        origin.exchange = self
        fields = [(b"Host", target.authority),
                  *forwarded_fields(request.headers, drop=(b"host",)),
                  (b"Via", via_value(request.version, config.via))]
        if config.forwarded != "off":
            fields.append(_forwarded_field(config.forwarded, self.conn.peer[0]))
        length = request.headers.get(b"content-length")
        if length is not None:
            fields.append((b"Content-Length", length))
        elif request.headers.has(b"transfer-encoding"):
            fields.append((b"Transfer-Encoding", b"chunked"))
        path = target.path if config.upstream is None else request.target
        origin.conn.write(origin.http.send_request(request.method, path, fields))
        if self.http.request_complete:
            origin.conn.write(origin.http.end_request())
        self.origin_timer = self.conn.loop.call_later(config.origin_timeout,
                                                      self._origin_silent)
        self.waiting = False
        self.update_reading()
        self._process()  # the request body, as it comes

    def _origin_silent(self) -> None:
        self.origin_timer = None
        if self.origin is not None and not self.head_sent:
            self.origin_failed(504, f"the origin sent no response in "
                                    f"{self.service.config.origin_timeout} s")

    def response_head(self, response: h.Response) -> None:
        if self.origin_timer is not None:
            self.origin_timer.cancel()
            self.origin_timer = None
        fields = forwarded_fields(response.headers)
        fields.append((b"Via", via_value(response.version, self.service.config.via)))
        length = response.headers.get(b"content-length")
        framed = length is not None and not response.headers.has(b"transfer-encoding")
        self.head_sent = True
        self.status = response.status
        self.conn.write(self.http.start_response(
            response.status, fields, length=int(length) if framed else None,  # type: ignore
            trusted=True))

    def response_data(self, data: bytes) -> None:
        self.sent_bytes += len(data)
        self.conn.write(self.http.send_data(data))

    def response_end(self) -> None:
        origin = self.origin
        self.origin = None
        self.conn.write(self.http.end_response())
        if origin is not None:
            self.service.release(origin)
        self._log(self.status)
        self.update_reading()
        if self.http.must_close:
            self._end()
        else:
            self._process()  # a pipelined request may be waiting

    def origin_failed(self, status: int, reason: str) -> None:
        """The origin broke: before the head, the client gets `status`; after, the
        connection is cut (it cannot be told in a response that has begun)."""
        origin, self.origin = self.origin, None
        if self.origin_timer is not None:
            self.origin_timer.cancel()
            self.origin_timer = None
        if origin is not None:
            origin.exchange = None
            origin.conn.abort()
        if self.lost:
            return
        key = "gateway_timeout" if status == 504 else "bad_gateway"
        self.service.stats[key] += 1
        if self.head_sent:
            log.info("proxy: %s: %s mid-response; connection cut", _peer(self.conn), reason)
            self._log(self.status, note=reason)
            self.conn.abort()
            return
        self.answer(status, reason, close=not self.http.request_complete)
        self.update_reading()
        if not self.closing:
            self._process()

    # --- CONNECT ---

    async def _tunnel(self, request: h.Request, target: Target) -> None:
        service = self.service
        splice = Splice(on_done=self._tunnel_done)
        splice.forward = f"{target.host}:{target.port}"
        try:
            if service.config.upstream is not None:
                await self._tunnel_upstream(splice, target)
            else:
                address = await service.checked_address(target)
                await service.connect(address, target.port, splice.outbound,
                                      service.config.limits)
        except Refusal as refusal:
            if not self.lost:
                self.answer(refusal.status, str(refusal), close=True)
            return
        if self.lost:
            splice.outbound.conn.close()
            return
        conn = self.conn
        self.status = 200
        conn.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        leftover = self.http.take_upgraded_bytes()
        inbound = splice.inbound
        inbound.conn = conn
        conn.handler = inbound  # from here on the connection is a tunnel
        if leftover:
            inbound.pending.append(leftover)
        splice.attach()
        conn.resume_reading()
        splice.outbound.conn.resume_reading()  # paused while an upstream's answer was read

    async def _tunnel_upstream(self, splice: Splice, target: Target) -> None:
        service = self.service
        upstream = service.config.upstream
        assert upstream is not None
        opener = _UpstreamConnect(target)
        conn = await service.connect(upstream.host, upstream.port, opener,
                                     service.config.limits)
        try:
            with anyio.fail_after(service.config.origin_timeout):
                await opener.answered
        except TimeoutError:
            conn.abort()
            raise Refusal(504, "the upstream proxy did not answer CONNECT") from None
        if opener.status // 100 != 2:
            conn.close()
            raise Refusal(502, f"the upstream proxy answered CONNECT with {opener.status}")
        outbound = splice.outbound
        outbound.conn = conn
        conn.handler = outbound
        if opener.leftover:
            outbound.pending.append(opener.leftover)

    def _tunnel_done(self, splice: Splice) -> None:
        if access_log.isEnabledFor(logging.INFO):
            conn = self.conn
            access_log.info('%s "CONNECT %s" 200 up=%d down=%d %.3f%s', _peer(conn),
                            splice.forward, conn.bytes_in, conn.bytes_out, splice.elapsed(),
                            f" ({splice.error})" if splice.error else "")

    # --- answers of our own ---

    def answer(self, status: int, reason: str, *, close: bool = False,
               fields: list[tuple[bytes, bytes]] | None = None) -> None:
        http = self.http
        if http.responding:
            self.conn.abort()
            return
        self.status = status
        if http.request is None:  # a head that could not be read: the engine's own answer
            self.conn.write(http.error_response(status, close=True))
        else:
            body = f"{status} {h.REASONS.get(status, b'').decode()}: {reason}\n".encode()
            self.conn.write(http.respond(status, [(b"Content-Type",
                                                   b"text/plain; charset=utf-8"),
                                                  *(fields or ())],
                                         body, close=close, trusted=True))
        self._log(status, note=reason)
        if http.must_close:
            self._end()

    def _log(self, status: int, note: str = "") -> None:
        if access_log.isEnabledFor(logging.INFO) and self.request is not None:
            r = self.request
            access_log.info('%s "%s %s" %d up=%d down=%d %.3f%s', _peer(self.conn),
                            r.method.decode(), r.target.decode("latin-1"), status,
                            self.received_bytes, self.sent_bytes,
                            time.monotonic() - self.started, f" ({note})" if note else "")

    # --- the connection ---

    def update_reading(self) -> None:
        """Read from the client only while it takes our answers and the origin takes
        its request body: each side's transport buffer bounds what is held."""
        if self.write_paused or self.waiting or (
                self.origin is not None and self.origin.conn.transport is not None and
                self.origin.conn.get_write_buffer_size() >
                self.service.config.origin_limits.write_buffer):
            self.conn.pause_reading()
        else:
            self.conn.resume_reading()

    def pause_writing(self) -> None:  # the client reads our responses slowly
        self.write_paused = True
        self.conn.pause_reading()
        if self.origin is not None:
            self.origin.conn.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.origin is not None:
            self.origin.conn.resume_reading()
        self.update_reading()
        if self.origin is None and not self.waiting and not self.closing and \
                self.http.has_pending:
            self._process()

    def _arm_deadline(self, deadline: float) -> None:
        if self.deadline_timer is None or self.deadline_timer.when() > deadline:
            if self.deadline_timer is not None:
                self.deadline_timer.cancel()
            self.deadline_timer = self.conn.loop.call_at(deadline, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self.deadline_timer = None
        phase = self.http.expired(self.conn.loop.time())
        if phase is None:
            if self.http.deadline:
                self._arm_deadline(self.http.deadline)
            return
        if self.origin is None and not self.http.responding:
            self.answer(408, f"request {phase} not received in time", close=True)
        else:
            self.conn.abort()

    def timed_out(self, phase: str) -> None:
        self.conn.close()

    def shutdown_requested(self) -> None:
        self.http.shutdown()
        if self.http.idle and not self.closing and self.origin is None and not self.waiting:
            self._end()

    def _end(self) -> None:
        self.closing = True
        self.conn.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        for timer in (self.deadline_timer, self.origin_timer):
            if timer is not None:
                timer.cancel()
        origin, self.origin = self.origin, None
        if origin is not None:
            origin.exchange = None
            origin.conn.abort()  # a half-sent request or response: not reusable


class _UpstreamConnect(Handler):
    """CONNECT through the upstream proxy: its answer's status, then the tunnel."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.http = HTTPConnection(Role.CLIENT, _ORIGIN_LIMITS)
        self.answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.status = 0
        self.leftover = b""

    def connection_made(self, conn: Connection) -> None:
        super().connection_made(conn)
        authority = f"{self.target.host}:{self.target.port}".encode("idna")
        conn.write(self.http.send_request(b"CONNECT", authority, [(b"Host", authority)]))

    def data_received(self, data: bytes) -> None:
        self.http.receive_data(data)
        try:
            ev = self.http.next_event()
        except RemoteProtocolError:
            ev = None
        if isinstance(ev, h.Response) and ev.status >= 200:
            self.status = ev.status
            self.leftover = self.http.take_upgraded_bytes()
            self.conn.pause_reading()  # the splice takes over
            if not self.answered.done():
                self.answered.set_result(None)
        elif ev is not h.NEED_DATA and ev is not None and not self.answered.done():
            self.answered.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.answered.done():
            self.answered.set_result(None)


def _forwarded_field(kind: str, client: str) -> tuple[bytes, bytes]:
    if kind == "x-forwarded-for":
        return b"X-Forwarded-For", client.encode()
    node = f'"[{client}]"' if ":" in client else client
    return b"Forwarded", f"for={node}".encode()


def _peer(conn: Connection) -> str:
    host, port = conn.peer
    return str(Address(host, port)) if host else "?"


def listen_specs(config: Config) -> list[tuple[str, Address]]:
    return [("tcp", a) for a in config.listen]


def create(config: Config | Mapping[str, Any] | str | None = None) -> ProxyService:
    """The proxy for `config` (a `{"proxy": {...}}` document, TOML text or `Config`),
    checked as the CLI does; binds nothing."""
    return ProxyService(running.load(SPEC, config))


def serve(config: Config | Mapping[str, Any] | str | None = None
          ) -> AbstractAsyncContextManager[running.Server]:
    """`async with serve(config) as proxy:` runs it on this loop (127.0.0.1, port 0
    unless the config says), `proxy.url` for clients; drained at the end."""
    return running.serve(SPEC, config)


def connections_view(service: Any, args: dict[str, Any]) -> list[dict[str, object]]:
    """`netkit ctl connections`: the clients' open connections, oldest first."""
    return service.server.view()


SPEC = ServerSpec(
    name=SECTION, summary="HTTP forward proxy: absolute-form requests and CONNECT tunnels",
    config=Config, create=create, listen_specs=listen_specs,
    commands={"connections": connections_view})


def main(argv: list[str] | None = None) -> int:
    return server_main(SECTION, argv)


if __name__ == "__main__":
    sys.exit(main())
