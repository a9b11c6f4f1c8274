"""Join two connections byte for byte: the core of every relay (TLS wrapper, port
forwarder, NAT relay, CONNECT proxy).

Each direction is independent: EOF one way becomes a half-close the same way
(write_eof) while the other way keeps flowing, and the splice ends when both
ways have ended or either side breaks. Backpressure is the transports' own:
when the side we write to has more than its write-buffer limit queued, it
calls pause_writing and we stop reading the side we read from, so a slow
peer holds memory to roughly two buffer limits, never more.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from netkit.transport.connection import Connection, Handler


class SpliceSide(Handler):
    """One end of a splice; `other` is the end it forwards to."""

    def __init__(self, splice: Splice) -> None:
        self.splice = splice
        self.other: SpliceSide | None = None
        self.pending: list[bytes] = []  # bytes read before the other end was connected
        self.eof = False
        self.writing_paused = False  # our transport is over its high-water mark

    def connection_made(self, conn: Connection) -> None:
        self.conn = conn
        if self is self.splice.inbound and self.splice.on_inbound is not None:
            self.splice.on_inbound(self.splice)

    def data_received(self, data: bytes) -> None:
        if self.other is None:
            self.pending.append(data)
        else:
            self.other.conn.write(data)

    def eof_received(self) -> None:
        self.eof = True
        if self.other is not None:
            self.other.conn.write_eof()
            if self.other.eof:
                self.splice.finish()

    def pause_writing(self) -> None:
        # our peer is slow: stop reading the side that feeds it
        self.writing_paused = True
        if self.other is not None:
            self.other.conn.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.other is not None:
            self.other.conn.resume_reading()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.splice.finish(exc)

    def timed_out(self, phase: str) -> None:
        self.splice.finish()


class Splice:
    """Two `SpliceSide`s; `attach` joins the second once it is connected."""

    def __init__(self, *, on_inbound: Callable[[Splice], None] | None = None,
                 on_done: Callable[[Splice], None] | None = None) -> None:
        self.inbound = SpliceSide(self)
        self.outbound = SpliceSide(self)
        self.on_inbound = on_inbound  # the accepted side is ready: time to connect onward
        self.forward: object = None  # where the outbound side goes, for logs
        self.started = time.monotonic()
        self.done = False
        self.timed_out = False  # the onward connect took too long (a relay's timer)
        self.error: BaseException | None = None
        self._on_done = on_done

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def attach(self) -> None:
        """Both ends are connected: link them and pass on what each end said meanwhile."""
        a, b = self.inbound, self.outbound
        a.other, b.other = b, a
        for src, dst in ((a, b), (b, a)):
            for data in src.pending:
                dst.conn.write(data)
            src.pending.clear()
            if src.eof:
                dst.conn.write_eof()
        if a.eof and b.eof:
            self.finish()
        elif not b.writing_paused:  # the flush above may have filled the outbound side
            a.conn.resume_reading()

    def finish(self, exc: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        self.error = exc
        for side in (self.inbound, self.outbound):
            conn = getattr(side, "conn", None)  # the outbound side may not exist yet
            if conn is not None:
                # a clean end flushes what is queued; a broken one need not
                conn.close() if exc is None else conn.abort()
        if self._on_done is not None:
            self._on_done(self)
