"""Outgoing connections: the protocol model (`open_connection`) for hot paths such as
relays, and anyio streams (`connect_stream`) for clients where structure matters more
than microseconds."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable

import anyio
import anyio.abc

from ..config import Address
from ..errors import ConnectError, ConnectTimeout
from ..proto.addresses import is_ip_literal
from .connection import Connection, Counters, Handler, Limits, fmt_peer
from .errors import describe, map_errors


async def open_connection(address: Address, handler: Handler, *, timeout: float | None = 10.0,
                          tls: ssl.SSLContext | None = None, server_hostname: str | None = None,
                          proxy_header: bytes = b"", limits: Limits | None = None,
                          counters: Counters | None = None, label: str = "client",
                          local_address: str | None = None) -> Connection:
    """Connect (trying each address in turn), send `proxy_header`, do TLS; return when ready.
    `local_address`: the source address to connect from (a relay's routing table).
    `timeout=None`: no timer here, the caller bounds the time (a relay cancels its own
    connect task; asyncio.timeout costs ~4 us a call on uvloop); with several addresses,
    each is then tried until the system gives up on it.

    Raises ConnectError (with what each address did) or ConnectTimeout, and TLSError
    with the reason when the handshake fails.
    """
    loop = asyncio.get_running_loop()
    limits = limits or Limits()
    counters = counters or Counters()
    if is_ip_literal(address.host):
        targets = [(address.host, address.port)]  # numeric: no resolver round trip
    else:
        try:
            infos = await loop.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConnectError(f"cannot resolve {address.host}: {exc}") from exc
        targets = [(info[4][0], info[4][1]) for info in infos]
    hostname = server_hostname or (address.host if tls is not None else None)

    def make() -> Connection:
        return Connection(handler, limits=limits, counters=counters, label=label, tls=tls,
                          server_side=False, server_hostname=hostname,
                          proxy_header=proxy_header)
    local = (local_address, 0) if local_address else None
    attempts: list[tuple[str, str]] = []  # (address, what it did)
    if timeout is None:
        return await _try_each(address, targets, make, local, None, attempts)
    # asyncio.timeout, not anyio.fail_after: this runs once per relayed connection, and
    # anyio's cancel scope cost 4% of a handshake-bound wrapper's CPU (profiled)
    deadline = loop.time() + timeout
    try:
        async with asyncio.timeout_at(deadline):
            return await _try_each(address, targets, make, local, deadline, attempts)
    except TimeoutError:
        raise ConnectTimeout(f"connecting to {address} took more than {timeout} s",
                             attempts) from None


async def _try_each(address: Address, targets: list[tuple[str, int]],
                    make: Callable[[], Connection], local: tuple[str, int] | None,
                    deadline: float | None, attempts: list[tuple[str, str]]) -> Connection:
    """Each address in turn until one connects (and its handshake is done). With a
    deadline, an address that never answers leaves time for the next ones."""
    loop = asyncio.get_running_loop()
    for i, (host, port) in enumerate(targets):
        conn = make()
        last = i == len(targets) - 1
        share = 0.0 if deadline is None or last else \
            (deadline - loop.time()) / (len(targets) - i)
        try:
            if share <= 0:  # the last (often the only) one, or no deadline: no inner timer
                await loop.create_connection(lambda c=conn: c, host, port, local_addr=local)
            else:
                async with asyncio.timeout(share):
                    await loop.create_connection(lambda c=conn: c, host, port,
                                                 local_addr=local)
        except TimeoutError:
            attempts.append((fmt_peer((host, port)), f"no answer in {share:.1f} s"))
            continue
        except OSError as exc:
            attempts.append((fmt_peer((host, port)), describe(exc)))
            continue
        try:
            await conn.ready
        except BaseException:
            conn.abort()
            raise
        return conn
    raise ConnectError(f"cannot connect to {address}", attempts)


async def connect_stream(address: Address, *, tls: bool | ssl.SSLContext = False,
                         server_hostname: str | None = None,
                         timeout: float = 10.0) -> anyio.abc.ByteStream:
    """An anyio byte stream (happy eyeballs; TLS verified by default) for clients that
    prefer structured code to protocol callbacks, where speed is not the point."""
    context = tls if isinstance(tls, ssl.SSLContext) else (
        ssl.create_default_context() if tls else None)
    with map_errors("connect", f"cannot connect to {address}"), anyio.fail_after(timeout):
        try:
            if context is None:  # anyio turns TLS on when given any tls_hostname
                return await anyio.connect_tcp(address.host, address.port)
            return await anyio.connect_tcp(address.host, address.port, ssl_context=context,
                                           tls=True,
                                           tls_hostname=server_hostname or address.host)
        except OSError as exc:
            # anyio says "All connection attempts failed" and keeps each address's reason
            # in the cause: the reason is what a reader needs ("connection refused")
            cause = exc.__cause__
            if not isinstance(cause, OSError | BaseExceptionGroup):
                raise
            causes = cause.exceptions if isinstance(cause, BaseExceptionGroup) else [cause]
            reasons = dict.fromkeys(describe(e) for e in causes)
            raise ConnectError(f"cannot connect to {address}: {'; '.join(reasons)}") from exc
