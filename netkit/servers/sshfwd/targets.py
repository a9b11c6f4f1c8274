"""Connections to forward targets (the server's direct-tcpip, the client's -R).

asyncssh's own `forward_connection` starts reading the target at once and drops
what arrives before the SSH channel is open: a target that speaks first (an SSH or
SMTP banner) sometimes lost its first bytes. Here the target is not read until the
channel's session has started, so nothing is dropped and at most one read is held.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh
from asyncssh.forward import SSHForwarder


class _Target(SSHForwarder):
    """The target's end. Reading is paused until the channel is open; what came before
    (one read at most: uvloop may deliver one before the pause applies), an EOF or a
    close are passed on then, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.channel_open = False
        self.early_eof = False
        self.early_close = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.pause_reading()  # type: ignore[attr-defined]

    def data_received(self, data: bytes, datatype: int | None = None) -> None:
        if self.channel_open:
            super().data_received(data, datatype)
            return
        self._inpbuf += data
        if self._transport is not None:
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        if self.channel_open:
            return super().eof_received()
        self._eof_received = self.early_eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel_open:
            super().connection_lost(exc)
            return
        self.early_close = True
        self._transport = None

    def open(self) -> None:
        """The channel is open: pass on what came before, then read."""
        self.channel_open = True
        assert self._peer is not None
        if self._inpbuf:
            self._peer.write(self._inpbuf)
            self._inpbuf = b""
        if self.early_eof:
            self._peer.write_eof()
        if self.early_close:
            self._peer.close()
        elif self._transport is not None:
            self._transport.resume_reading()


class _Channel(SSHForwarder):
    """The channel's end."""

    def session_started(self) -> None:
        if isinstance(self._peer, _Target):
            self._peer.open()


async def connect_target(host: str, port: int) -> Any:
    """The session for a channel forwarded to host:port (ChannelOpenError if refused)."""
    loop = asyncio.get_running_loop()
    try:
        _, target = await loop.create_connection(_Target, host, port)
    except OSError as exc:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
    return _Channel(target)


async def forward_remote_port(conn: asyncssh.SSHClientConnection, listen_host: str,
                              listen_port: int, host: str, port: int) -> Any:
    """`conn.forward_remote_port`, with targets connected by `connect_target`."""
    return await conn.create_server(lambda _h, _p: connect_target(host, port),
                                    listen_host, listen_port)
