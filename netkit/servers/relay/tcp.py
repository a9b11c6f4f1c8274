"""TCP forwards: accept, ask the firewall, enter the connection table, connect to a
target (balanced, from the routing table's source address, optionally with a PROXY v2
header), then splice byte for byte with half-close; faults applied on the way."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from netkit.config import Address
from netkit.errors import NetkitError
from netkit.proto import proxy
from netkit.proto.relay.conntrack import Flow
from netkit.proto.relay.faults import Faults, Pacer
from netkit.transport.connect import open_connection
from netkit.transport.connection import Handler
from netkit.transport.listeners import StreamServer
from netkit.transport.splice import Splice, SpliceSide

if TYPE_CHECKING:
    from .service import Forward

log = logging.getLogger("netkit.relay")


class FaultySide(SpliceSide):
    """A splice end whose data reaches the other end late, slowly, or not at all
    (latency with jitter, a bandwidth limit, a reset after N bytes). Order is kept:
    a chunk never overtakes the one before it."""

    def __init__(self, splice: Splice, forward: Forward) -> None:
        super().__init__(splice)
        self.forward = forward
        self.rng = random.Random()
        self.pacer = Pacer(forward.faults.bandwidth)
        self.release_at = 0.0
        self.in_flight = 0  # bytes scheduled, not yet written

    def data_received(self, data: bytes) -> None:
        faults: Faults = self.forward.faults
        if faults.reset_after:
            a, b = self.splice.inbound, self.splice.outbound
            moved = sum(getattr(getattr(s, "conn", None), "bytes_in", 0) for s in (a, b))
            if moved >= faults.reset_after:
                for side in (a, b):
                    conn = getattr(side, "conn", None)
                    if conn is not None:
                        conn.reset()
                self.splice.finish(ConnectionResetError("fault: reset_after"))
                return
        if self.other is None:
            self.pending.append(data)
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.pacer.rate != faults.bandwidth:
            self.pacer = Pacer(faults.bandwidth)
        wait = max(faults.delay(self.rng), self.pacer.wait(len(data), now))
        if wait <= 0 and self.in_flight == 0:
            self.other.conn.write(data)
            return
        self.release_at = max(self.release_at, now + wait)
        self.in_flight += len(data)
        if self.in_flight > 256 * 1024:
            self.conn.pause_reading()  # what waits is bounded: backpressure as usual
        loop.call_at(self.release_at, self._release, data)

    def _release(self, data: bytes) -> None:
        self.in_flight -= len(data)
        if self.other is not None and not self.splice.done:
            self.other.conn.write(data)
        if self.in_flight <= 64 * 1024 and not self.other_writing_paused():
            self.conn.resume_reading()

    def other_writing_paused(self) -> bool:
        return self.other is not None and self.other.writing_paused

    def eof_received(self) -> None:
        if self.in_flight and self.other is not None:
            asyncio.get_running_loop().call_at(self.release_at, super().eof_received)
            return
        super().eof_received()


class Blackhole(Handler):
    """Accepts, reads and throws away, never answers (`blackhole = true`)."""

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        pass


class TCPForward:
    def __init__(self, forward: Forward) -> None:
        self.forward = forward
        service = forward.service
        self.server = StreamServer(f"relay {forward.name}", self._handler,
                                   limits=service.config.tcp,
                                   counters=service.transport_counters)

    def _handler(self) -> Handler:
        f = self.forward
        if f.faults.blackhole:
            return _Gate(self, Blackhole())
        splice = Splice(on_inbound=self._inbound, on_done=self._done)
        if f.faults.any:
            splice.inbound = FaultySide(splice, f)
            splice.outbound = FaultySide(splice, f)
        return splice.inbound

    def admit(self, conn: Any) -> Flow | None:
        """The firewall and the table for a new connection; None when it is turned away
        (deny: closed without a byte; reject and a full table: RST)."""
        service = self.forward.service
        action, rule = service.firewall.decide("tcp", conn.peer[0], conn.local[0],
                                               conn.local[1])
        if action != "allow":
            service.stats["denied" if action == "deny" else "rejected"] += 1
            log.info("relay %s: %s %s:%d (rule %s)", self.forward.name, action, conn.peer[0],
                     conn.peer[1], rule if rule >= 0 else "default")
            if action == "deny":
                _close_quietly(conn)
            else:
                conn.reset()
            return None
        target = self.forward.pick()
        flow = service.table.open("tcp", conn.peer, (target.host, target.port), time.time(),
                                  self.forward.name)
        if flow is None:
            service.stats["table_full"] += 1
            service.log_table_full()
            conn.reset()
            return None
        return flow

    def _inbound(self, splice: Splice) -> None:
        conn = splice.inbound.conn
        conn.pause_reading()  # nothing is read until the target is there
        flow = self.admit(conn)
        if flow is None:
            splice.done = True
            return
        splice.forward = flow  # type: ignore[assignment]
        flow.meter = lambda c=conn: (c.bytes_in, c.bytes_out)
        service = self.forward.service
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._connect(splice, flow))
        service.tasks.add(task)
        # the connect's time limit: a timer that cancels this task, which nothing else
        # awaits (about 6 us a connection cheaper than asyncio.timeout around the connect)
        timer = loop.call_later(self.forward.config.connect_timeout, _expire, task, splice)
        task.add_done_callback(lambda t: (service.tasks.discard(t), timer.cancel()))

    async def _connect(self, splice: Splice, flow: Flow) -> None:
        f = self.forward
        inbound = splice.inbound.conn
        target = Address(*flow.target)
        header = b""
        if f.config.send_proxy != "off":
            encode = proxy.encode_v2 if f.config.send_proxy == "v2" else proxy.encode_v1
            header = encode(inbound.peer, inbound.local)
        try:
            out = await open_connection(target, splice.outbound, timeout=None,
                                        proxy_header=header, limits=f.service.config.tcp,
                                        counters=f.service.transport_counters,
                                        label=f"relay {f.name} target",
                                        local_address=f.service.source_for(target.host))
        except (NetkitError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and not splice.timed_out:
                raise  # the relay is stopping
            why = f"no answer in {f.config.connect_timeout} s" if splice.timed_out else exc
            log.warning("relay %s: %s -> %s: %s", f.name, inbound.peer[0], target, why)
            f.health_failed(target)
            inbound.reset()
            splice.finish()
            return
        flow.outside = out.local
        flow.state = "established"
        if splice.done:
            out.close()
            return
        splice.attach()

    def _done(self, splice: Splice) -> None:
        flow = splice.forward
        if isinstance(flow, Flow):
            inbound = getattr(splice.inbound, "conn", None)
            if inbound is not None:
                flow.bytes_in, flow.bytes_out = inbound.bytes_in, inbound.bytes_out
            self.forward.service.table.close(flow)


def _expire(task: asyncio.Task[None], splice: Splice) -> None:
    splice.timed_out = True
    task.cancel()


class _Discard(Handler):
    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        self.conn.close()


def _close_quietly(conn: Any) -> None:
    """deny: a FIN and not a byte. What the client sent meanwhile is read and thrown away
    (closing with unread data would send an RST, which is reject's answer); the socket
    closes at the client's EOF or after two seconds."""
    conn.handler = _Discard()
    conn.handler.conn = conn
    conn.write_eof()
    conn.resume_reading()
    asyncio.get_running_loop().call_later(2.0, conn.close)


class _Gate(Handler):
    """The firewall and the table in front of a handler that needs no target."""

    def __init__(self, forward: TCPForward, inner: Handler) -> None:
        self.forward = forward
        self.inner = inner
        self.flow: Flow | None = None

    def connection_made(self, conn: Any) -> None:
        super().connection_made(conn)
        self.flow = self.forward.admit(conn)
        if self.flow is not None:
            self.flow.state = "blackhole"
            self.inner.connection_made(conn)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> None:
        self.inner.eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.flow is not None:
            self.forward.forward.service.table.close(self.flow)
