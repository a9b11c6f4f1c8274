"""TUN devices (Linux): a file descriptor that reads and writes whole IPv4 packets.

The relay's packet mode opens one for the inside network and one for the outside; the
devices can then be moved to other network namespaces (the descriptor stays with us)
and given addresses and routes there.
"""

from __future__ import annotations

import fcntl
import os
import struct

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    """A non-blocking descriptor for TUN device `name` (made if it does not exist; root
    or CAP_NET_ADMIN). Packets come without the 4-byte packet-information prefix."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode()[:15], IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd
