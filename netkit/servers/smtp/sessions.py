"""Delivery sessions kept open between delivery passes, as Postfix's connection cache
does: a pass that finds a session to the same host, port and TLS policy idle here sends
its messages on it instead of connecting, greeting and saying EHLO again. At the
benchmark's rate a pass carried six messages or so, and opening and closing its
session cost more of the relay's CPU than the messages' transactions.

A session is kept only when it ended its last transaction cleanly; it is closed (QUIT)
once idle for IDLE seconds, once it has lived REUSE_LIMIT seconds, or when the server
has closed it meanwhile (found before it is used again). Each (host, port, TLS policy)
keeps at most `per_key` sessions: the destination's concurrency limit."""

from __future__ import annotations

import time
from collections.abc import Hashable

from netkit.clients.smtp import Session

IDLE = 2.0  # Postfix's smtp_connection_cache_time_limit
REUSE_LIMIT = 300.0  # Postfix's smtp_connection_reuse_time_limit


class SessionCache:
    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._idle: dict[Hashable, list[tuple[float, Session]]] = {}

    def take(self, key: Hashable, now: float | None = None) -> tuple[Session | None,
                                                                    list[Session]]:
        """An idle session for `key` still usable (the most recently used), and the ones
        found dead or too old on the way, for the caller to close."""
        now = time.monotonic() if now is None else now
        stale: list[Session] = []
        idle = self._idle.get(key, [])
        while idle:
            _, session = idle.pop()
            if session.usable() and now - session.opened_at < REUSE_LIMIT:
                return session, stale
            stale.append(session)
        return None, stale

    def give(self, key: Hashable, session: Session, now: float | None = None) -> bool:
        """Keep `session` (True), or say it is not wanted (False: the caller closes it)."""
        now = time.monotonic() if now is None else now
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self.per_key or not session.usable() or \
                now - session.opened_at >= REUSE_LIMIT:
            return False
        idle.append((now, session))
        return True

    def expired(self, now: float | None = None) -> list[Session]:
        """Sessions idle for IDLE seconds or more, taken out for the caller to close."""
        now = time.monotonic() if now is None else now
        out: list[Session] = []
        for key in list(self._idle):
            keep = [(t, s) for t, s in self._idle[key] if now - t < IDLE]
            out += [s for t, s in self._idle[key] if now - t >= IDLE]
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return out

    def clear(self) -> list[Session]:
        """Every idle session, taken out (at shutdown)."""
        out = [s for idle in self._idle.values() for _, s in idle]
        self._idle.clear()
        return out

    def __len__(self) -> int:
        return sum(map(len, self._idle.values()))
