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
