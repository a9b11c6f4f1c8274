"""A DHCP client for scripts and tests: DORA to a typed lease, renew, rebind, release.

    from netkit.clients import dhcp
    lease = await dhcp.obtain(interface="veth1")                  # broadcast on a link
    lease = await dhcp.obtain(server="127.0.0.1:6767", giaddr="127.0.10.1")  # as a relay
    lease.address, lease.router, lease.dns, lease.domain, lease.lease_time
    lease = await dhcp.renew(lease, ...)   await dhcp.release(lease, ...)

    python -m netkit.clients.dhcp --server 127.0.0.1:6767 --giaddr 127.0.10.1 -v

On an interface the client sends from port 68 with the broadcast flag set, so the
server's answers come back by broadcast to a socket on that interface (no raw socket,
and no address needed yet). As a relay agent (`giaddr`) it sends from giaddr and gets
the answers there, as a server behind a relay would send them. It never configures
the interface: applying the lease is the caller's business.
"""

from __future__ import annotations

import asyncio
import random
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from netkit.config import Address
from netkit.errors import NetkitError
from netkit.proto.dhcp import options as o
from netkit.proto.dhcp.client import ClientSession, Lease, lease_from
from netkit.proto.dhcp.packet import ZERO, MalformedPacket, Message, build, parse
from netkit.transport.interfaces import bind_on_interface
from netkit.transport.listeners import bind_socket

__all__ = ["DHCPError", "Lease", "obtain", "release", "renew"]


class DHCPError(NetkitError):
    """No answer, or a NAK."""


@dataclass(slots=True)
class _Where:
    interface: str | None
    server: tuple[str, int]
    giaddr: str
    client_port: int


def _where(interface: str | None, server: str | None, giaddr: str | None,
           server_port: int, client_port: int) -> _Where:
    if server is not None:
        a = Address.parse(server) if ":" in server else Address(server, server_port)
        return _Where(None, (a.host, a.port), giaddr or "127.0.0.1", client_port)
    if interface is None:
        raise ValueError("give interface= (broadcast on that link) or server= (as a relay)")
    return _Where(interface, ("255.255.255.255", server_port), ZERO, client_port)


class _Socket(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.queue.full():
            self.queue.put_nowait(data)


async def _open(where: _Where) -> _Socket:
    if where.interface is not None:
        sock = bind_on_interface(where.interface, where.client_port)
    else:
        sock = bind_socket("udp", Address(where.giaddr, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(_Socket, sock=sock)
    return proto


async def _exchange(sock: _Socket, session: ClientSession, msg: Message,
                    to: tuple[str, int], kinds: tuple[int, ...], timeout: float,
                    attempts: int, show: Callable[[str], None] | None) -> Message:
    """Send `msg` until an answer of `kinds` comes (RFC 2131 4.1: retransmit with
    backoff), skipping others' answers."""
    wait = min(timeout, 1.0)
    for _ in range(attempts):
        assert sock.transport is not None
        sock.transport.sendto(build(msg, 1500 - 28), to)
        if show:
            show(f"> DHCP{o.TYPE_NAMES[msg.type]} xid={msg.xid:#010x} chaddr={session.mac}"
                 f"{' ciaddr=' + msg.ciaddr if msg.ciaddr != ZERO else ''} to {to[0]}:{to[1]}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(sock.queue.get(), left)
            except TimeoutError:
                break
            try:
                reply = parse(data)
            except MalformedPacket:
                continue
            if session.answers(reply, *kinds, o.NAK):
                if show:
                    why = reply.options.get(56, b"").decode("utf-8", "replace")
                    show(f"< DHCP{o.TYPE_NAMES[reply.type]} yiaddr={reply.yiaddr} from "
                         f"{reply.ip_option(54)}{' (' + why + ')' if why else ''}")
                if reply.type == o.NAK:
                    raise DHCPError(f"DHCPNAK from {reply.ip_option(54)}: "
                                    f"{reply.options.get(56, b'').decode('utf-8', 'replace')}")
                return reply
        wait = min(wait * 2, timeout)
    raise DHCPError(f"no DHCP{'/'.join(o.TYPE_NAMES[k] for k in kinds)} after {attempts} "
                    f"tries")


def _session(mac: str | None, hostname: str, client_id: bytes, where: _Where,
             broadcast: bool = True) -> ClientSession:
    mac = mac or "02:" + ":".join(f"{random.randrange(256):02x}" for _ in range(5))
    return ClientSession(mac, xid=random.getrandbits(32), hostname=hostname,
                         client_id=client_id, giaddr=where.giaddr, broadcast=broadcast)


async def obtain(*, interface: str | None = None, server: str | None = None,
                 giaddr: str | None = None, mac: str | None = None, hostname: str = "",
                 client_id: bytes = b"", server_port: int = 67, client_port: int = 68,
                 timeout: float = 4.0, attempts: int = 4,
                 show: Callable[[str], None] | None = None) -> Lease:
    """DISCOVER, OFFER, REQUEST, ACK: the lease (DHCPError when there is none)."""
    where = _where(interface, server, giaddr, server_port, client_port)
    session = _session(mac, hostname, client_id, where)
    sock = await _open(where)
    try:
        offer = await _exchange(sock, session, session.discover(), where.server,
                                (o.OFFER,), timeout, attempts, show)
        ack = await _exchange(sock, session, session.request(offer), where.server,
                              (o.ACK,), timeout, attempts, show)
    finally:
        assert sock.transport is not None
        sock.transport.close()
    return lease_from(ack, session.mac)


async def renew(lease: Lease, *, interface: str | None = None, server: str | None = None,
                giaddr: str | None = None, rebinding: bool = False, server_port: int = 67,
                client_port: int = 68, timeout: float = 4.0, attempts: int = 4,
                show: Callable[[str], None] | None = None) -> Lease:
    """RENEWING: unicast to the server that gave the lease (or `server`); `rebinding`:
    broadcast to any server. The renewed lease (DHCPError on NAK or silence)."""
    where = _where(interface, server, giaddr, server_port, client_port)
    to = where.server if server is not None or rebinding else (lease.server, server_port)
    session = _session(lease.mac, lease.hostname, b"", where, broadcast=rebinding)
    sock = await _open(where)
    try:
        ack = await _exchange(sock, session, session.renew(lease, rebinding=rebinding), to,
                              (o.ACK,), timeout, attempts, show)
    finally:
        assert sock.transport is not None
        sock.transport.close()
    return lease_from(ack, session.mac)


async def release(lease: Lease, *, interface: str | None = None, server: str | None = None,
                  giaddr: str | None = None, server_port: int = 67, client_port: int = 68,
                  show: Callable[[str], None] | None = None) -> None:
    """RELEASE (no answer comes: RFC 2131 4.4.6). Unicast to the server from the leased
    address; broadcast (the server identifier says to whom) when the interface does not
    carry the address, since nothing could be sent from it then."""
    from netkit.transport.interfaces import interface_address

    where = _where(interface, server, giaddr, server_port, client_port)
    session = _session(lease.mac, "", b"", where, broadcast=False)
    to = where.server if server is not None else (lease.server, server_port)
    if interface is not None and interface_address(interface) != lease.address:
        to = ("255.255.255.255", server_port)
    sock = await _open(where)
    try:
        assert sock.transport is not None
        msg = session.release(lease)
        sock.transport.sendto(build(msg, 1500 - 28), to)
        if show:
            show(f"> DHCPRELEASE of {lease.address} chaddr={session.mac} to {to[0]}:{to[1]}")
        await asyncio.sleep(0.1)  # out of the socket before it closes
    finally:
        assert sock.transport is not None
        sock.transport.close()


def describe(lease: Lease) -> str:
    lines = [f"address      {lease.interface_address} (netmask {lease.netmask})",
             f"router       {', '.join(lease.router) or '-'}",
             f"dns          {', '.join(lease.dns) or '-'}",
             f"domain       {lease.domain or '-'}",
             f"lease time   {lease.lease_time} s (renew at {lease.renewal_time} s, rebind at "
             f"{lease.rebinding_time} s)",
             f"server       {lease.server}"]
    if lease.hostname:
        lines.append(f"hostname     {lease.hostname}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m netkit.clients.dhcp",
                                description="Get a DHCP lease and print it (nothing is "
                                            "configured on the interface).")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--interface", "-i", help="broadcast on this link (root)")
    where.add_argument("--server", help="HOST[:PORT]: talk to it as a relay agent would")
    p.add_argument("--giaddr", help="the relay address (an address in the subnet wanted)")
    p.add_argument("--mac", help="the client's hardware address (random if not given)")
    p.add_argument("--hostname", default="")
    p.add_argument("--port", type=int, default=67, help="the server's port")
    p.add_argument("--release", action="store_true", help="release the lease afterwards")
    p.add_argument("--timeout", type=float, default=4.0)
    p.add_argument("-v", "--verbose", action="store_true", help="show each message")
    args = p.parse_args(argv)
    show = print if args.verbose else None

    async def run() -> int:
        lease = await obtain(interface=args.interface, server=args.server,
                             giaddr=args.giaddr, mac=args.mac, hostname=args.hostname,
                             server_port=args.port, timeout=args.timeout, show=show)
        print(describe(lease))
        if args.release:
            await release(lease, interface=args.interface, server=args.server,
                          giaddr=args.giaddr, server_port=args.port, show=show)
        return 0

    try:
        return asyncio.run(run())
    except (DHCPError, OSError, ValueError) as exc:
        print(f"dhcp: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
