"""The client's side, sans-IO: the messages of DORA, renew, rebind and release, and
the typed lease an ACK gives (netkit/clients/dhcp.py sends and waits)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Any

from . import options as o
from .packet import BOOTREPLY, BROADCAST_FLAG, ZERO, Message

PARAMETERS = bytes([1, 3, 6, 15, 12, 28, 42, 51, 54, 58, 59, 119, 121])


@dataclass(slots=True)
class Lease:
    address: str
    prefix: int
    router: list[str]
    dns: list[str]
    domain: str
    lease_time: int
    server: str
    renewal_time: int
    rebinding_time: int
    mac: str
    hostname: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def netmask(self) -> str:
        return str(ipaddress.IPv4Network(f"0.0.0.0/{self.prefix}").netmask)

    @property
    def interface_address(self) -> str:
        """"10.0.0.100/24": what `ip addr add` takes."""
        return f"{self.address}/{self.prefix}"


class ClientSession:
    """One client (a MAC, optionally a client id and a host name) through its exchanges;
    `giaddr` makes it talk as a relay agent would (to a server on loopback)."""

    def __init__(self, mac: str, *, xid: int, hostname: str = "", client_id: bytes = b"",
                 giaddr: str = ZERO, broadcast: bool = True) -> None:
        self.mac = mac.lower()
        self.chaddr = bytes.fromhex(self.mac.replace(":", ""))
        self.xid = xid
        self.hostname = hostname
        self.client_id = client_id
        self.giaddr = giaddr
        self.broadcast = broadcast

    def _message(self, kind: int, **extra: bytes) -> Message:
        opts: dict[int, bytes] = {53: bytes([kind])}
        if self.client_id:
            opts[61] = self.client_id
        for key, value in extra.items():
            opts[int(key[1:])] = value
        if self.hostname and kind in (o.DISCOVER, o.REQUEST):
            opts[12] = self.hostname.encode()
        if kind in (o.DISCOVER, o.REQUEST, o.INFORM):
            opts[55] = PARAMETERS
            opts[57] = struct.pack("!H", 1500)
        return Message(xid=self.xid, chaddr=self.chaddr, hlen=len(self.chaddr),
                       hops=1 if self.giaddr != ZERO else 0, giaddr=self.giaddr,
                       flags=BROADCAST_FLAG if self.broadcast else 0, options=opts)

    def discover(self) -> Message:
        return self._message(o.DISCOVER)

    def request(self, offer: Message) -> Message:
        """SELECTING: the offered address from the server that offered it."""
        return self._message(o.REQUEST, o50=o.encode(50, offer.yiaddr),
                             o54=offer.options[54])

    def renew(self, lease: Lease, *, rebinding: bool = False) -> Message:
        """RENEWING (unicast to the server) or REBINDING (broadcast): ciaddr, nothing
        else names the address (RFC 2131 4.3.2)."""
        msg = self._message(o.REQUEST)
        msg.ciaddr = lease.address
        if not rebinding:
            msg.flags = 0
        return msg

    def release(self, lease: Lease) -> Message:
        msg = self._message(o.RELEASE, o54=o.encode(54, lease.server))
        msg.ciaddr = lease.address
        msg.flags = 0
        return msg

    def decline(self, lease: Lease) -> Message:
        return self._message(o.DECLINE, o50=o.encode(50, lease.address),
                             o54=o.encode(54, lease.server))

    def answers(self, reply: Message, *kinds: int) -> bool:
        """`reply` is an answer to us, of one of `kinds`."""
        return reply.op == BOOTREPLY and reply.xid == self.xid and \
            reply.chaddr[:len(self.chaddr)] == self.chaddr and reply.type in kinds


def lease_from(ack: Message, mac: str) -> Lease:
    """The typed lease of an ACK."""
    opts = ack.options

    def get(code: int, default: Any) -> Any:
        return o.decode(code, opts[code]) if code in opts else default

    mask = get(1, "255.255.255.255")
    lease_time = get(51, 0)
    return Lease(address=ack.yiaddr,
                 prefix=ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen,
                 router=get(3, []), dns=get(6, []), domain=get(15, ""),
                 lease_time=lease_time, server=get(54, ""),
                 renewal_time=get(58, lease_time // 2),
                 rebinding_time=get(59, lease_time * 7 // 8), mac=mac,
                 hostname=get(12, ""),
                 options={o.OPTIONS.get(c, (str(c), ""))[0]: o.decode(c, v)
                          for c, v in opts.items()})
