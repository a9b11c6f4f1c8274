"""UDP forwards: each client (address and port) is a flow in the connection table with
its own socket towards the target, so replies find their way back to the right client;
flows idle for `udp_idle_timeout` are closed. Datagrams up to 64 KiB pass whole."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from netkit.proto.relay.conntrack import Flow
from netkit.transport.listeners import DatagramEndpoint, DatagramHandler, DatagramServer

if TYPE_CHECKING:
    from .service import Forward

log = logging.getLogger("netkit.relay")
PENDING = 64  # datagrams a new flow holds while its socket opens


class _Outbound(asyncio.DatagramProtocol):
    """The relay's socket towards the target for one client: replies go back to it."""

    def __init__(self, forward: UDPForward, flow: Flow, client: tuple[str, int]) -> None:
        self.forward = forward
        self.flow = flow
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] | None = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.flow.outside = transport.get_extra_info("sockname")[:2]
        pending, self.pending = self.pending or [], None
        for data in pending:
            self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.forward.reply(self, data)

    def error_received(self, exc: Exception) -> None:
        log.debug("relay %s: %s: %s", self.forward.forward.name, self.flow.target, exc)

    def send(self, data: bytes) -> None:
        if self.pending is not None:
            if len(self.pending) < PENDING:
                self.pending.append(data)
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class UDPForward(DatagramHandler):
    def __init__(self, forward: Forward) -> None:
        self.forward = forward
        service = forward.service
        self.server = DatagramServer(f"relay {forward.name}", self,
                                     counters=service.transport_counters)
        self.by_client: dict[tuple[str, int], _Outbound] = {}
        self.endpoint: DatagramEndpoint | None = None
        self.rng = random.Random()

    def datagram_received(self, data: bytes, addr: tuple[str, int],
                          endpoint: DatagramEndpoint) -> None:
        self.endpoint = endpoint
        out = self.by_client.get(addr)
        now = time.time()
        if out is None:
            out = self._open(addr, endpoint, now)
            if out is None:
                return
        faults = self.forward.faults
        if faults.any and self._faulted(faults, lambda: out.send(data)):  # type: ignore[union-attr]
            out.flow.last = now
            out.flow.bytes_in += len(data)
            return
        out.flow.last = now
        out.flow.bytes_in += len(data)
        out.send(data)

    def _faulted(self, faults: Any, send: Any) -> bool:
        """Loss or delay for one datagram; True when it was taken care of here."""
        if faults.blackhole or faults.drop(self.rng):
            self.forward.service.stats["faults_dropped"] += 1
            return True
        delay = faults.delay(self.rng)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, send)
            return True
        return False

    def _open(self, addr: tuple[str, int], endpoint: DatagramEndpoint,
              now: float) -> _Outbound | None:
        f, service = self.forward, self.forward.service
        local = endpoint.transport.get_extra_info("sockname") if endpoint.transport else None
        dst, dport = (local[0], local[1]) if local else (f.config.listen.host,
                                                          f.config.listen.port)
        action, _ = service.firewall.decide("udp", addr[0], dst, dport)
        if action != "allow":
            # no ICMP from user space: a rejected datagram is dropped too, and counted
            service.stats["denied" if action == "deny" else "rejected"] += 1
            return None
        target = f.pick()
        flow = service.table.open("udp", addr, (target.host, target.port), now, f.name)
        if flow is None:
            service.stats["table_full"] += 1
            service.log_table_full()
            return None
        out = _Outbound(self, flow, addr)
        self.by_client[addr] = out
        via = service.source_for(target.host)
        loop = asyncio.get_running_loop()
        task = loop.create_task(loop.create_datagram_endpoint(
            lambda: out, remote_addr=(target.host, target.port),
            local_addr=(via, 0) if via else None))
        task.add_done_callback(lambda t, a=addr: self._opened(t, a))
        return out

    def _opened(self, task: asyncio.Task[Any], addr: tuple[str, int]) -> None:
        if task.cancelled() or task.exception() is not None:
            out = self.by_client.pop(addr, None)
            if out is not None:
                self.forward.service.table.close(out.flow)
            log.warning("relay %s: cannot open a socket towards the target: %s",
                        self.forward.name, task.exception())

    def reply(self, out: _Outbound, data: bytes) -> None:
        if self.endpoint is None:
            return
        out.flow.last = time.time()
        out.flow.bytes_out += len(data)
        out.flow.state = "established"
        faults = self.forward.faults
        if faults.any and self._faulted(
                faults, lambda: self.endpoint and self.endpoint.send(data, out.client)):
            return
        self.endpoint.send(data, out.client)

    def expire(self, now: float, idle: float) -> int:
        gone = 0
        for addr, out in list(self.by_client.items()):
            if now - out.flow.last >= idle:
                del self.by_client[addr]
                self.forward.service.table.close(out.flow)
                out.close()
                gone += 1
        return gone

    def close(self) -> None:
        for out in self.by_client.values():
            out.close()
        self.by_client.clear()
        self.server.close()
