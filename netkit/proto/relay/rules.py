"""The firewall: rules in order, first match wins, then the default policy.

    fw = Firewall([Rule("allow", "tcp", src=NetSet([...]), dport=(80, 80))], "deny")
    fw.decide("tcp", "10.0.0.5", "10.0.1.2", 80) -> ("allow", 0)

With no rules at all, sources in loopback and private ranges are allowed and the rest
denied (as the DNS server's `allow`); `default_policy` applies only once there are
rules. Each rule counts its matches; so does the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..addresses import PRIVATE
from .addresses import NetSet, address_key

Action = Literal["allow", "deny", "reject"]
PRIVATE_SET = NetSet(PRIVATE)


@dataclass(slots=True)
class Rule:
    action: Action
    proto: Literal["tcp", "udp", "icmp", "any"] = "any"
    src: NetSet = field(default_factory=lambda: NetSet(()))
    dst: NetSet = field(default_factory=lambda: NetSet(()))
    dport: tuple[int, int] | None = None
    hits: int = 0

    def matches(self, proto: str, src: tuple[int, int], dst: tuple[int, int],
                dport: int | None) -> bool:
        if self.proto != "any" and self.proto != proto:
            return False
        if self.dport is not None and (dport is None or
                                       not self.dport[0] <= dport <= self.dport[1]):
            return False
        return self.src.match(src) and self.dst.match(dst)

    def describe(self) -> str:
        ports = "" if self.dport is None else (
            f" dport {self.dport[0]}" if self.dport[0] == self.dport[1]
            else f" dport {self.dport[0]}-{self.dport[1]}")
        return f"{self.action} {self.proto} from {self.src} to {self.dst}{ports}"


def parse_ports(value: int | str) -> tuple[int, int]:
    """80, "80" or "8000-8010" (ValueError otherwise)."""
    if isinstance(value, bool):
        raise ValueError("a port or a range")
    if isinstance(value, int):
        lo = hi = value
    else:
        lo_text, _, hi_text = str(value).partition("-")
        lo, hi = int(lo_text), int(hi_text or lo_text)
    if not 0 <= lo <= hi <= 65535:
        raise ValueError(f"{value!r} is not a port or a range of ports")
    return lo, hi


class Firewall:
    def __init__(self, rules: list[Rule], default_policy: Action = "deny") -> None:
        self.rules = rules
        self.default_policy = default_policy
        self.default_hits = 0

    def decide(self, proto: str, src: str, dst: str, dport: int | None) -> tuple[Action, int]:
        """The action for this flow's first packet, and the index of the rule that
        said so (-1: the default)."""
        s, d = address_key(src), address_key(dst)
        for i, rule in enumerate(self.rules):
            if rule.matches(proto, s, d, dport):
                rule.hits += 1
                return rule.action, i
        self.default_hits += 1
        if not self.rules:
            return ("allow" if PRIVATE_SET.match(s) else "deny"), -1
        return self.default_policy, -1

    def view(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = [
            {"rule": i, "action": r.action, "proto": r.proto, "src": str(r.src),
             "dst": str(r.dst), "dport": "any" if r.dport is None else
             f"{r.dport[0]}" if r.dport[0] == r.dport[1] else f"{r.dport[0]}-{r.dport[1]}",
             "hits": r.hits} for i, r in enumerate(self.rules)]
        rows.append({"rule": "default", "action": self.default_policy if self.rules else
                     "allow private, deny others", "hits": self.default_hits})
        return rows
