"""/etc/resolv.conf as the C library reads it (resolv.conf(5)): nameserver (up to three),
search and domain (the last one given wins), options ndots, timeout, attempts, rotate.
Anything else is skipped; a file with no nameserver means 127.0.0.1, as glibc has it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PATH = Path("/etc/resolv.conf")


@dataclass(frozen=True, slots=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ("127.0.0.1",)
    search: tuple[str, ...] = ()
    ndots: int = 1
    timeout: float = 5.0
    attempts: int = 2
    rotate: bool = False
    problems: tuple[str, ...] = field(default=(), compare=False)


def parse(text: str) -> ResolvConf:
    servers: list[str] = []
    search: tuple[str, ...] = ()
    ndots, timeout, attempts, rotate = 1, 5.0, 2, False
    problems = []
    for n, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, args = words[0], words[1:]
        if key == "nameserver" and args:
            try:
                address = ipaddress.ip_address(args[0].split("%", 1)[0])
            except ValueError:
                problems.append(f"line {n}: {args[0]!r} is not an address")
                continue
            if len(servers) < 3:
                servers.append(str(address))
        elif key == "search":
            search = tuple(a.rstrip(".") for a in args)
        elif key == "domain" and args:
            search = (args[0].rstrip("."),)
        elif key == "options":
            for option in args:
                name, _, value = option.partition(":")
                try:
                    if name == "ndots":
                        ndots = min(15, int(value))
                    elif name == "timeout":
                        timeout = float(min(30, int(value)))
                    elif name == "attempts":
                        attempts = max(1, min(5, int(value)))
                except ValueError:
                    problems.append(f"line {n}: {option!r} needs a number")
                if name == "rotate":
                    rotate = True
    return ResolvConf(tuple(servers) or ("127.0.0.1",), search, ndots, timeout, attempts,
                      rotate, tuple(problems))


def load(path: str | Path = DEFAULT_PATH) -> ResolvConf:
    """The file parsed; a file that cannot be read gives the defaults (glibc's habit)."""
    try:
        return parse(Path(path).read_text(errors="replace"))
    except OSError:
        return ResolvConf()
