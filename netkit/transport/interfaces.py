"""Sockets tied to one network interface (the DHCP server's), and what the kernel
knows about an interface: its IPv4 address, an ARP entry for a client without one.

Linux only (SO_BINDTODEVICE, SIOCGIFADDR, SIOCSARP), as the DHCP server is.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SIOCGIFADDR = 0x8915
SIOCSARP = 0x8955
ATF_COM = 0x02  # a complete entry
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RECEIVE_BUFFER = 4 << 20


def interface_address(name: str) -> str | None:
    """The interface's (first) IPv4 address, or None when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR,
                              struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return str(ipaddress.IPv4Address(raw[20:24]))


def bind_on_interface(interface: str, port: int) -> socket.socket:
    """A UDP socket on 0.0.0.0:port that sees only `interface`'s traffic (broadcasts
    included) and may send broadcasts. Several servers' sockets on one port coexist
    when each is on its own interface."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        _large_receive_buffer(sock)
        sock.bind(("0.0.0.0", port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _large_receive_buffer(sock: socket.socket) -> None:
    """A burst of clients (a building's power coming back) sends hundreds of DISCOVERs at
    once; the default buffer (~200 KiB, ~150 datagrams) drops most of them and every
    client then backs off for seconds. Root may go past net.core.rmem_max."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


def set_arp_entry(sock: socket.socket, interface: str, address: str, mac: str) -> bool:
    """Tell the kernel `address` is at `mac` on `interface`, so a unicast reply reaches
    a client that has no address yet (dnsmasq does the same). False if not allowed."""
    hw = bytes.fromhex(mac.replace(":", ""))[:14]
    # struct arpreq: sockaddr arp_pa, sockaddr arp_ha, int flags, sockaddr netmask,
    # char dev[16]; sa_family in host order, the rest in network order
    pa = struct.pack("=H", socket.AF_INET) + bytes(2) + \
        ipaddress.IPv4Address(address).packed + bytes(8)
    ha = struct.pack("=H", 1) + hw.ljust(14, b"\0")  # ARPHRD_ETHER
    req = pa + ha + struct.pack("=i", ATF_COM) + bytes(16) + \
        interface.encode()[:15].ljust(16, b"\0")
    try:
        fcntl.ioctl(sock.fileno(), SIOCSARP, req)
    except OSError:
        return False
    return True
