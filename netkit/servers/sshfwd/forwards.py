"""ssh's forward specifications, as `ssh -L/-R/-D` and ssh_config take them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from netkit.config import Address, Duration

Kind = Literal["local", "remote", "dynamic"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    """One `[[sshfwd.forward]]`: `local` (-L) listens here and connects from the SSH
    server to `to`; `remote` (-R) listens on the SSH server and connects from here to
    `to`; `dynamic` (-D) is a SOCKS5/4a listener here."""

    kind: Kind = "local"
    listen: Address
    """Where to listen (loopback unless an address is given, as OpenSSH's GatewayPorts)."""
    to: Address | None = None
    """host:port reached at the other end (not for dynamic)."""
    probe_interval: Duration = Duration(0)
    """Seconds between end-to-end probes (a connection through the forward); 0: none."""

    def __post_init__(self) -> None:
        if (self.to is None) != (self.kind == "dynamic"):
            raise ValueError("local and remote forwards need `to`; dynamic ones take none")

    def __str__(self) -> str:
        flag = {"local": "-L", "remote": "-R", "dynamic": "-D"}[self.kind]
        return f"{flag} {self.listen}" + (f":{self.to}" if self.to else "")


def _split(spec: str) -> list[str]:
    """Split on ':' outside [brackets] (IPv6 addresses), as ssh does."""
    parts, current, depth = [], "", 0
    for ch in spec:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip("[]") for p in parts]


def parse_forward(kind: Kind, spec: str) -> Forward:
    """`-L [bind:]port:host:hostport`, `-R [bind:]port:host:hostport`, `-D [bind:]port`
    (also ssh_config's `LocalForward [bind:]port host:hostport`)."""
    parts = _split(spec.replace(" ", ":"))
    want = 1 if kind == "dynamic" else 3
    if len(parts) not in (want, want + 1):
        raise ValueError(f"bad {kind} forward {spec!r}")
    bind = parts[0] if len(parts) == want + 1 else ("localhost" if kind == "remote"
                                                     else "127.0.0.1")
    if bind in ("", "*"):
        bind = "0.0.0.0"
    elif bind == "localhost" and kind != "remote":
        bind = "127.0.0.1"
    rest = parts[1:] if len(parts) == want + 1 else parts
    try:
        port = int(rest[0])
        to = Address(rest[1], int(rest[2])) if kind != "dynamic" else None
    except (ValueError, IndexError):
        raise ValueError(f"bad {kind} forward {spec!r}") from None
    if not 0 <= port < 65536:
        raise ValueError(f"bad port in {spec!r}")
    return Forward(kind=kind, listen=Address(bind, port), to=to)
