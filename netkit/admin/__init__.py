"""The operator's side of every process: `[admin]` (the control socket's path, an
optional HTTP listener with a token), Prometheus metrics made from the counters the
servers keep (metrics.py), and the HTTP endpoint (endpoint.py) that offers what the
control channel offers. A server gets all of it by declaring, in its `ServerSpec`, its
`commands`, which of its counters are `gauges`, and which commands are `actions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from netkit.config import Address
from netkit.proto.addresses import in_networks
from netkit.tlsconf import ListenerTLS

LOOPBACK = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminConfig:
    """The ``[admin]`` section (any config file; one per process)."""

    socket: Path | None = None
    """The control socket (mode 0600); default: the runtime directory, named after the
    servers and the PID (`--control` says the same on the command line)."""
    listen: Address | None = None
    """An HTTP listener for /metrics, /status, /reload, /config, /ui and the servers'
    views; none by default. Not on loopback: `token` is required."""
    token: str = ""
    """A bearer token every HTTP request must carry (Authorization: Bearer ...)."""
    tls: ListenerTLS | None = None
    """``[admin.tls]``: HTTPS for the listener (the shared TLS table)."""

    def __post_init__(self) -> None:
        if self.listen is not None and not self.token:
            import ipaddress
            nets = tuple(ipaddress.ip_network(n) for n in LOOPBACK)
            if not in_networks(self.listen.host, nets):
                raise ValueError(f"listen {self.listen} is not on loopback: a token is "
                                 f"required (admin.token)")


def load(doc: dict[str, object], source: str, base_dir: Path) -> AdminConfig:
    from netkit import config as config_mod
    if "admin" not in doc:
        return AdminConfig()
    return config_mod.load_section(AdminConfig, doc, "admin", source=source,
                                   base_dir=base_dir)
