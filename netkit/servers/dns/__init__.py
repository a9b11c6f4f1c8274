"""The DNS server: `python -m netkit.servers.dns` (service.py), the resolver driver that
runs the recursion engine (resolver.py). From Python: `create(config)` and
`serve(config)` (service.py)."""

from typing import Any

_PUBLIC = ("create", "serve", "Config", "DNSService")


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:  # imported on first use: `import netkit.servers.dns.resolver` stays light
        from . import service
        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
