"""The connection table: every flow through the relay (the textbook's NAT table),
with limits so that a flood of new flows cannot exhaust memory.

    table = ConnectionTable(max_entries=10000, max_per_source=256)
    flow = table.open("udp", ("10.0.0.5", 40000), ("10.0.1.2", 53), now)  # None: full
    table.touch(flow, now, inbound=120)        # bytes, and the idle clock
    table.expire(now, idle=30)                 # UDP flows idle that long
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, eq=False)
class Flow:
    proto: str
    inside: tuple[str, int]  # the client
    target: tuple[str, int]  # where the relay sends it
    created: float
    last: float
    outside: tuple[str, int] = ("", 0)  # the relay's own socket towards the target
    state: str = "new"
    bytes_in: int = 0  # client -> target
    bytes_out: int = 0  # target -> client
    forward: str = ""
    meter: Any = None
    """Set by a driver whose byte counts live elsewhere (a TCP splice's connections):
    () -> (bytes in, bytes out); read when the table is shown."""


class ConnectionTable:
    def __init__(self, *, max_entries: int = 10_000, max_per_source: int = 256) -> None:
        self.max_entries = max_entries
        self.max_per_source = max_per_source
        self.flows: set[Flow] = set()
        self.per_source: dict[str, int] = {}
        self.refused_full = 0
        self.refused_source = 0

    def __len__(self) -> int:
        return len(self.flows)

    def open(self, proto: str, inside: tuple[str, int], target: tuple[str, int],
             now: float, forward: str = "") -> Flow | None:
        """A new flow, or None when the table or this source is at its limit (counted)."""
        if len(self.flows) >= self.max_entries:
            self.refused_full += 1
            return None
        count = self.per_source.get(inside[0], 0)
        if count >= self.max_per_source:
            self.refused_source += 1
            return None
        flow = Flow(proto, inside, target, now, now, forward=forward)
        self.flows.add(flow)
        self.per_source[inside[0]] = count + 1
        return flow

    def touch(self, flow: Flow, now: float, *, inbound: int = 0, outbound: int = 0) -> None:
        flow.last = now
        flow.bytes_in += inbound
        flow.bytes_out += outbound
        if outbound and flow.state == "new":
            flow.state = "established"

    def close(self, flow: Flow) -> None:
        if flow in self.flows:
            self.flows.discard(flow)
            left = self.per_source.get(flow.inside[0], 1) - 1
            if left > 0:
                self.per_source[flow.inside[0]] = left
            else:
                self.per_source.pop(flow.inside[0], None)

    def expire(self, now: float, idle: float, proto: str = "udp") -> list[Flow]:
        """The flows of `proto` idle for `idle` seconds, removed from the table."""
        gone = [f for f in self.flows if f.proto == proto and now - f.last >= idle]
        for flow in gone:
            self.close(flow)
        return gone

    def next_deadline(self, idle: float, proto: str = "udp") -> float | None:
        lasts = [f.last for f in self.flows if f.proto == proto]
        return min(lasts) + idle if lasts else None

    def view(self, now: float) -> list[dict[str, object]]:
        def addr(a: tuple[str, int]) -> str:
            return f"[{a[0]}]:{a[1]}" if ":" in a[0] else f"{a[0]}:{a[1]}"
        for f in self.flows:
            if f.meter is not None:
                f.bytes_in, f.bytes_out = f.meter()[:2]
        return [{"proto": f.proto, "inside": addr(f.inside), "outside": addr(f.outside),
                 "target": addr(f.target), "state": f.state, "idle": round(now - f.last, 1),
                 "bytes_in": f.bytes_in, "bytes_out": f.bytes_out, "forward": f.forward}
                for f in sorted(self.flows, key=lambda f: f.created)]
