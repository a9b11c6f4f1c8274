"""A byte stream on the protocol model: `send`, `receive`, `aclose`, as anyio's streams
have them, over a transport `Connection` (asyncio only).

anyio's socket stream pauses and resumes reading around every `receive` and takes
cancel-scope checkpoints on every call; for an HTTP client that makes one small
exchange after another that was a third of the time per request (profiled). Here
bytes the socket delivers wait in a bounded buffer (past `max_buffer` the socket is
no longer read: backpressure), a `receive` that finds data returns at once, and a
read deadline is one timer, not a cancel scope. TLS is the transport's memory-BIO
engine, so it behaves like every server's.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque

import anyio

from ..config import Address, Duration
from .connect import open_connection
from .connection import Connection, Counters, Handler, Limits

#: a client connection lives as long as its pool keeps it; deadlines are per receive
_LIMITS = Limits(idle_timeout=Duration(86400), handshake_timeout=Duration(86400))
_CLOSE_WAIT = 5.0


class ProtocolStream(Handler):
    def __init__(self, max_buffer: int = 256 * 1024) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._max_buffer = max_buffer
        self._eof = False
        self._lost = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._closed: asyncio.Future[None] | None = None

    # --- the Connection's side ---

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > self._max_buffer:
            self.conn.pause_reading()
        self._wake()

    def eof_received(self) -> None:
        self._eof = True  # the write side stays open: the engine decides
        self._wake()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        self._error = exc
        self._wake()
        closed = self._closed
        if closed is not None and not closed.done():
            closed.set_result(None)
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def timed_out(self, phase: str) -> None:
        self.conn.abort()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the caller's side ---

    @property
    def at_eof(self) -> bool:
        """The peer closed (or the connection failed) and every byte was taken."""
        return (self._eof or self._lost) and not self._chunks

    async def send(self, data: bytes) -> None:
        if self._lost:
            raise ConnectionResetError(104, "Connection reset by peer") from self._error
        self.conn.write(data)
        if self._writing_paused:  # the peer reads slower than we write: wait for it
            self._drained = self.conn.loop.create_future()
            await self._drained
            if self._lost:
                raise ConnectionResetError(104, "Connection reset by peer") from self._error

    async def receive(self, timeout: float | None = None) -> bytes:
        """The next bytes; EndOfStream at the peer's EOF; TimeoutError after `timeout`
        seconds without any; the socket's error if it failed."""
        if not self._chunks:
            if self._eof or self._lost:
                return self._ended()
            loop = self.conn.loop
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if not self._chunks:
                return self._ended()
        data = self._chunks.popleft()
        self._buffered -= len(data)
        if self._buffered <= self._max_buffer // 4:
            self.conn.resume_reading()
        return data

    def _ended(self) -> bytes:
        if self._error is not None and not self._eof:
            raise ConnectionResetError(104, "Connection reset by peer") from self._error
        raise anyio.EndOfStream

    async def aclose(self) -> None:
        """Close, and return once the socket is closed (asyncio closes it a loop turn
        later; a caller that counts its file descriptors, or a SyncClient's close(),
        must not see it still open). A peer that never takes the queued bytes is cut
        after `_CLOSE_WAIT` seconds."""
        if self._lost:
            return
        self.conn.close()
        if self._lost:
            return
        loop = self.conn.loop
        self._closed = loop.create_future()
        timer = loop.call_later(_CLOSE_WAIT, self.conn.abort)
        try:
            await self._closed
        finally:
            timer.cancel()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def open_stream(address: Address, *, tls: ssl.SSLContext | None = None,
                      server_hostname: str | None = None, timeout: float | None = 10.0,
                      counters: Counters | None = None) -> ProtocolStream:
    """Connect (TLS verified by `tls`), and return the stream once it is ready."""
    stream = ProtocolStream()
    await open_connection(address, stream, timeout=timeout if timeout is not None else 1e9,
                          tls=tls, server_hostname=server_hostname, limits=_LIMITS,
                          counters=counters, label="client")
    return stream


__all__ = ["Connection", "ProtocolStream", "open_stream"]
