"""A queued message's envelope: who sent it, and each recipient's state, with the retry
arithmetic (times come in as arguments: no clock here).

A recipient is `pending` (not tried yet, or deferred until `next_attempt` with the
reason in `last_error`), `delivered` or `bounced`; a message leaves the queue when no
recipient is pending.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Literal

State = Literal["pending", "delivered", "bounced"]


@dataclass(slots=True)
class Recipient:
    address: str
    state: State = "pending"
    attempts: int = 0
    last_error: str = ""
    next_attempt: float = 0.0  # wall-clock seconds; 0: now


@dataclass(slots=True)
class Envelope:
    id: str
    sender: str  # "" is the null sender (bounces)
    recipients: list[Recipient]
    received_at: float
    size: int = 0
    client: str = ""
    helo: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return all(r.state != "pending" for r in self.recipients)

    def pending(self, now: float) -> list[Recipient]:
        """The recipients due for an attempt at `now`."""
        return [r for r in self.recipients if r.state == "pending" and r.next_attempt <= now]

    def to_json(self) -> bytes:
        fields = {k: getattr(self, k) for k in _ENVELOPE_FIELDS}
        fields["recipients"] = [{k: getattr(r, k) for k in _RECIPIENT_FIELDS}
                                for r in self.recipients]
        fields["notes"] = list(self.notes)
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Envelope:
        raw = json.loads(data)
        raw["recipients"] = [Recipient(**r) for r in raw["recipients"]]
        return cls(**raw)


_ENVELOPE_FIELDS = tuple(f.name for f in fields(Envelope))
_RECIPIENT_FIELDS = tuple(f.name for f in fields(Recipient))


def defer(recipient: Recipient, reason: str, now: float, schedule: list[float]) -> None:
    """A temporary failure: the next attempt per `schedule` (seconds after each failed
    attempt; its last entry repeats)."""
    recipient.attempts += 1
    recipient.last_error = reason
    step = schedule[min(recipient.attempts, len(schedule)) - 1] if schedule else 60.0
    recipient.next_attempt = now + step


def expired(envelope: Envelope, now: float, max_queue_time: float) -> bool:
    return now - envelope.received_at >= max_queue_time
