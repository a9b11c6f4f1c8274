"""`netkit lab up --config lab.toml`: what a reader may change in the lab.

    [lab]
    web_root = "site"                    # serve these files as www.example.test
    records = ["api.example.test. 300 IN TXT \\"hello\\""]   # more of example.test
    lease_time = "10m"                   # the router's DHCP leases

    [[lab.host]]                         # one more machine on the internet, for your
    name = "api"                         # own servers: netkit lab exec api -- ...
    address = "198.51.100.30"            # in 198.51.100.0/24; api.example.test

    [[lab.rule]]                         # the router's firewall (replaces the default
    action = "deny"                      # rules): the relay's [[relay.rule]] keys
    proto = "tcp"
    dport = 25

Read by the shared loader, so every problem is reported at once with its key, and a
typo names the nearest key.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from netkit.config import Duration, field, load_section
from netkit.errors import ConfigError
from netkit.servers.relay.service import RuleConfig

from . import topology as t

_NAME = re.compile(r"[a-z][a-z0-9]{0,9}")  # the veth "nkl-NAME" fits in 15 characters


@dataclass(frozen=True, slots=True, kw_only=True)
class HostConfig:
    """``[[lab.host]]``: a machine on the internet bridge with a name in example.test."""

    name: str
    address: str

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"host name {self.name!r}: a lowercase letter, then up to 9 "
                             "lowercase letters or digits")
        if self.name in {n.name for n in t.NODES}:
            raise ValueError(f"host name {self.name!r} is one of the lab's own nodes")
        try:
            address = ipaddress.ip_address(self.address)
        except ValueError:
            raise ValueError(f"host {self.name}: address {self.address!r} is not an "
                             "IPv4 address") from None
        taken = {a.split("/")[0] for n in t.NODES for a in n.addresses} | {t.ISP_INTERNET}
        if address not in t.INTERNET or address in (t.INTERNET.network_address,
                                                     t.INTERNET.broadcast_address):
            raise ValueError(f"host {self.name}: address {self.address} is not a host "
                             f"address of the lab's internet, {t.INTERNET}")
        if self.address in taken:
            raise ValueError(f"host {self.name}: {self.address} is taken by the lab")


@dataclass(frozen=True, slots=True, kw_only=True)
class LabConfig:
    web_root: Path | None = None
    """Files to serve as www.example.test (else a page of the lab's)."""
    records: tuple[str, ...] = ()
    """More records for example.test, in zone-file form."""
    lease_time: Duration = field(Duration(3600), min=60)
    host: tuple[HostConfig, ...] = ()
    rule: tuple[RuleConfig, ...] | None = None
    """The router's firewall, replacing the default rules (absent: the defaults)."""

    def __post_init__(self) -> None:
        names = [h.name for h in self.host]
        addresses = [h.address for h in self.host]
        for seen in (names, addresses):
            twice = sorted({x for x in seen if seen.count(x) > 1})
            if twice:
                raise ValueError(f"lab.host: {', '.join(twice)} given twice")


def load(path: Path | None) -> LabConfig:
    """The lab's config from `path` (the defaults for None); ConfigError lists problems."""
    if path is None:
        return LabConfig()
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    extra = [k for k in doc if k != "lab"]
    if extra:
        raise ConfigError([f"{path}: {k}: unknown section (a lab config has [lab] only)"
                           for k in extra])
    config = load_section(LabConfig, doc, "lab", source=str(path), base_dir=path.parent)
    if config.web_root is not None and not config.web_root.is_dir():
        raise ConfigError([f"{path}: lab.web_root: {config.web_root} is not a directory"])
    return config


def nodes(config: LabConfig) -> tuple[t.Node, ...]:
    """The lab's nodes with the config's hosts after them."""
    return t.NODES + tuple(
        t.Node(h.name, (f"{h.address}/{t.INTERNET.prefixlen}",), "internet",
               t.ISP_INTERNET, f"{h.name}.example.test: yours ([[lab.host]])")
        for h in config.host)
