"""ICMP echo ("ping") from a raw socket on one interface: the DHCP server's check that
an address nobody holds a lease for is not in use anyway before offering it.

Needs CAP_NET_RAW (root); `Pinger.open` returns None without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct

from .interfaces import SO_BINDTODEVICE

log = logging.getLogger("netkit.transport")
ECHO_REQUEST, ECHO_REPLY = 8, 0


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes = b"netkit dhcp") -> bytes:
    head = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(head + payload), ident, seq) + \
        payload


class Pinger:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ident = os.getpid() & 0xFFFF
        self.seq = 0
        self.waiting: dict[tuple[str, int], asyncio.Future[bool]] = {}
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    @classmethod
    def open(cls, interface: str) -> Pinger | None:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        except PermissionError:
            return None
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        except OSError:
            sock.close()
            return None
        sock.setblocking(False)
        return cls(sock)

    def _readable(self) -> None:
        while True:
            try:
                data, (source, _) = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            ihl = (data[0] & 0x0F) * 4 if data else 0
            if len(data) < ihl + 8:
                continue
            kind, _, _, ident, seq = struct.unpack_from("!BBHHH", data, ihl)
            if kind == ECHO_REPLY and ident == self.ident:
                future = self.waiting.get((source, seq))
                if future is not None and not future.done():
                    future.set_result(True)

    async def alive(self, address: str, timeout: float) -> bool:
        """True if `address` answers an echo request within `timeout` seconds."""
        self.seq = (self.seq + 1) & 0xFFFF
        key = (address, self.seq)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiting[key] = future
        try:
            self.sock.sendto(echo_request(self.ident, self.seq), (address, 0))
            return await asyncio.wait_for(future, timeout)
        except (TimeoutError, OSError):
            return False
        finally:
            self.waiting.pop(key, None)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
