"""Bounded memories of work already done: the one helper every hot path uses.

The HTTP codec remembers checked request and field lines, the server its rendered
response fields, the application layer its split targets: clients repeat the same
lines on every request, so a hit is one dict lookup instead of a parse and a check.
An attacker who sends only new lines must not grow them, so each memory is capped
in entries and keeps only small keys, and is emptied when full (crude, but a memory
of checks can always start over, and emptying costs nothing per hit).

A `Memo` is a dict: `memo.get(key)` is the C lookup of a plain dict, and only
`remember()` adds the bounds.
"""

from __future__ import annotations

from typing import Any

DEFAULT_MAX_ENTRIES = 1024
DEFAULT_MAX_SIZE = 256  # bytes a key stands for; longer ones are worked out every time


class Memo(dict[Any, Any]):
    """A dict that `remember()` keeps at most `max_entries` small entries in."""

    __slots__ = ("max_entries", "max_size")

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES,
                 max_size: int = DEFAULT_MAX_SIZE) -> None:
        super().__init__()
        self.max_entries = max_entries
        self.max_size = max_size

    def remember(self, key: Any, value: Any, size: int = 0) -> None:
        """Keep `value` under `key` when `size` (the bytes it stands for) is small."""
        if size <= self.max_size:
            if len(self) >= self.max_entries:
                self.clear()
            self[key] = value
