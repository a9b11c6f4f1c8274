"""Fault injection for a forward (as Toxiproxy does): latency with jitter, a bandwidth
limit, datagram loss, a reset after N bytes, a blackhole. Decisions only: the random
source and the time come in, the relay applies them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Faults:
    latency: float = 0.0  # seconds added to each chunk or datagram, each way
    jitter: float = 0.0  # +- seconds around latency
    bandwidth: int = 0  # bytes a second each way; 0: unlimited
    loss: float = 0.0  # share of datagrams dropped (UDP), 0..1
    reset_after: int = 0  # bytes (both ways together) after which the connection is reset
    blackhole: bool = False  # accept, read, never forward, never answer

    @property
    def any(self) -> bool:
        return bool(self.latency or self.jitter or self.bandwidth or self.loss or
                    self.reset_after or self.blackhole)

    def delay(self, rng: random.Random) -> float:
        if not (self.latency or self.jitter):
            return 0.0
        return max(0.0, self.latency + rng.uniform(-self.jitter, self.jitter))

    def drop(self, rng: random.Random) -> bool:
        return self.loss > 0 and rng.random() < self.loss

    def changed(self, values: dict[str, Any]) -> Faults:
        """These faults with some values changed (ValueError naming a bad one)."""
        out: dict[str, Any] = {}
        for key, raw in values.items():
            if key not in Faults.__dataclass_fields__:
                raise ValueError(f"unknown fault {key!r} (latency, jitter, bandwidth, loss, "
                                 f"reset_after, blackhole)")
            if key == "blackhole":
                value: Any = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true",
                                                                                     "yes")
            elif key in ("bandwidth", "reset_after"):
                value = int(raw)
            else:
                value = float(raw)
            if (key == "loss" and not 0 <= value <= 1) or (key != "blackhole" and value < 0):
                raise ValueError(f"fault {key}: {raw!r} is out of range")
            out[key] = value
        return replace(self, **out)


class Pacer:
    """A token bucket: how long to wait before `n` more bytes may go at `rate` a second
    (bursts of up to a tenth of a second's worth)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = rate / 10
        self.last: float | None = None

    def wait(self, n: int, now: float) -> float:
        if self.rate <= 0:
            return 0.0
        if self.last is not None:
            self.tokens = min(self.rate / 10, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
