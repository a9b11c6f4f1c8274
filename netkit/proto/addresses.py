"""Address text shared by the engines and the transport."""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=256)
def is_ip_literal(host: str) -> bool:
    """True for "192.0.2.1" or "2001:db8::1", False for a host name (kept: hosts repeat)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: loopback and private ranges: who a server answers by default
PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
    "fc00::/7", "fe80::/10"))


def in_networks(host: str, networks: tuple[Network, ...]) -> bool:
    """`host` (an address, maybe with a %scope or IPv4-mapped) is in one of `networks`."""
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)
