"""The packet mode: a userspace router between two TUN devices (Linux, root).

Inside: a TUN device the inside network's packets come from (its hosts route through
it). Outside: a second TUN device, not a raw socket: the kernel's own IP stack never
sees the masqueraded flows, so it never answers them (a raw socket would let the kernel
send an RST for every reply to a port it does not know, unless a firewall rule stopped
it). The rules are netkit/proto/relay/nat.py; this module moves packets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from netkit.proto.relay.nat import Masquerade, Timeouts
from netkit.transport.tun import open_tun

if TYPE_CHECKING:
    from .service import PacketConfig, RelayService

log = logging.getLogger("netkit.relay")
BATCH = 64  # packets read from one side before the loop looks at anything else


class PacketRouter:
    def __init__(self, service: RelayService, config: PacketConfig) -> None:
        self.service = service
        self.config = config
        self.nat = Masquerade(
            outside=config.outside, inside_router=config.inside_router,
            firewall=service.firewall, table=service.table,
            outside_mtu=config.outside_mtu, ports=(config.port_min, config.port_max),
            timeouts=Timeouts(tcp_established=config.tcp_established_timeout,
                              tcp_transitory=config.tcp_transitory_timeout,
                              udp=service.config.udp_idle_timeout,
                              icmp=config.icmp_timeout))
        self.inside_fd = -1
        self.outside_fd = -1
        self.write_drops = 0
        self.leaks_stopped = 0
        self.outside_packed = socket.inet_aton(config.outside)

    def open(self) -> None:
        self.inside_fd = open_tun(self.config.tun)
        self.outside_fd = open_tun(self.config.outside_tun)
        loop = asyncio.get_running_loop()
        loop.add_reader(self.inside_fd, self._readable, self.inside_fd, True)
        loop.add_reader(self.outside_fd, self._readable, self.outside_fd, False)
        log.info("relay: packet mode: inside %s (router %s), outside %s as %s, MTU %d",
                 self.config.tun, self.config.inside_router, self.config.outside_tun,
                 self.config.outside, self.config.outside_mtu)

    def _readable(self, fd: int, inside: bool) -> None:
        handle = self.nat.from_inside if inside else self.nat.from_outside
        now = time.time()
        for _ in range(BATCH):
            try:
                data = os.read(fd, 65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("relay: packet mode: reading %s: %s",
                            self.config.tun if inside else self.config.outside_tun, exc)
                return
            to_out, to_in = handle(data, now)
            for out in to_out:
                if out[12:16] != self.outside_packed:  # only our outside address goes out
                    self.leaks_stopped += 1
                    continue
                self._write(self.outside_fd, out)
            for back in to_in:
                self._write(self.inside_fd, back)

    def _write(self, fd: int, data: bytes) -> None:
        try:
            os.write(fd, data)
        except (BlockingIOError, InterruptedError):
            self.write_drops += 1  # a full device queue: a router drops, as the kernel does
        except OSError as exc:
            self.write_drops += 1
            log.debug("relay: packet mode: write: %s", exc)

    def expire(self, now: float) -> int:
        return self.nat.expire(now)

    def counters(self) -> dict[str, int]:
        c = self.nat.counters
        return {"packets_out": c.forwarded_out, "packets_in": c.forwarded_in,
                "packets_malformed": c.malformed, "packets_denied": c.denied,
                "packets_rejected": c.rejected, "packets_no_mapping": c.no_mapping,
                "ttl_exceeded": c.ttl_exceeded, "frag_needed": c.frag_needed,
                "fragments_dropped": c.fragments_dropped,
                "packets_unsupported": c.unsupported, "packet_write_drops": self.write_drops,
                "private_source_stopped": self.leaks_stopped}

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in (self.inside_fd, self.outside_fd):
            if fd >= 0:
                loop.remove_reader(fd)
                os.close(fd)
        self.inside_fd = self.outside_fd = -1
