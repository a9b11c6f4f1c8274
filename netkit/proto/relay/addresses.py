"""Addresses as (version, int) for matching many times a second without ipaddress."""

from __future__ import annotations

import ipaddress
import socket

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def address_key(text: str) -> tuple[int, int]:
    """(4 or 6, the address as an int); IPv4-mapped IPv6 is IPv4. ValueError if not an
    address."""
    host = text.split("%", 1)[0]
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
    except OSError:
        pass
    try:
        n = int.from_bytes(socket.inet_pton(socket.AF_INET6, host), "big")
    except OSError:
        raise ValueError(f"not an IP address: {text!r}") from None
    if n >> 32 == 0xFFFF:
        return 4, n & 0xFFFFFFFF
    return 6, n


class NetSet:
    """Networks matched by integer arithmetic; empty means "any"."""

    def __init__(self, networks: tuple[Network, ...] | list[Network]) -> None:
        self.networks = tuple(networks)
        self._nets = [(n.version, int(n.network_address),
                       ((1 << n.max_prefixlen) - 1) ^ ((1 << (n.max_prefixlen - n.prefixlen)) - 1))
                      for n in self.networks]

    def __bool__(self) -> bool:
        return bool(self._nets)

    def match(self, key: tuple[int, int]) -> bool:
        if not self._nets:
            return True
        version, n = key
        return any(v == version and n & mask == net for v, net, mask in self._nets)

    def __str__(self) -> str:
        return ",".join(map(str, self.networks)) or "any"
