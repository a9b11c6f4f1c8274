"""The routing table: longest-prefix match from a destination to the source address
outbound flows use (the textbook's routing-table exercise)."""

from __future__ import annotations

from dataclasses import dataclass

from .addresses import Network, address_key


@dataclass(frozen=True, slots=True)
class Route:
    dst: Network
    via: str  # the source address to use


class RouteTable:
    def __init__(self, routes: list[Route]) -> None:
        # most specific first: the first match is the longest prefix
        self.routes = sorted(routes, key=lambda r: r.dst.prefixlen, reverse=True)
        self._keys = [(r.dst.version, int(r.dst.network_address),
                       ((1 << r.dst.max_prefixlen) - 1) ^
                       ((1 << (r.dst.max_prefixlen - r.dst.prefixlen)) - 1), r)
                      for r in self.routes]

    def lookup(self, address: str) -> Route | None:
        version, n = address_key(address)
        for v, net, mask, route in self._keys:
            if v == version and n & mask == net:
                return route
        return None
