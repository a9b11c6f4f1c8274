"""The relay's cache of delivery sessions: the most recently used usable session is
handed out, dead and too old ones are handed back for closing, a key keeps at most its
destination's limit, idle ones expire."""

from __future__ import annotations

from dataclasses import dataclass

from netkit.servers.smtp.sessions import IDLE, REUSE_LIMIT, SessionCache


@dataclass
class FakeSession:
    name: str
    alive: bool = True
    opened_at: float = 0.0

    def usable(self) -> bool:
        return self.alive


KEY = ("127.0.0.1", 25, None)


def test_the_last_given_usable_session_is_taken_dead_ones_come_back_to_close() -> None:
    cache = SessionCache(per_key=3)
    a, b, c = FakeSession("a"), FakeSession("b"), FakeSession("c")
    for s in (a, b, c):
        assert cache.give(KEY, s, now=1.0)  # type: ignore[arg-type]
    c.alive = False  # the server closed it while it sat here
    session, stale = cache.take(KEY, now=1.5)
    assert session is b and stale == [c]
    assert cache.take(("127.0.0.1", 26, None), now=1.5) == (None, [])  # another key
    assert len(cache) == 1


def test_a_key_keeps_at_most_its_limit_and_never_a_dead_or_old_session() -> None:
    cache = SessionCache(per_key=1)
    assert cache.give(KEY, FakeSession("a"), now=1.0)  # type: ignore[arg-type]
    assert not cache.give(KEY, FakeSession("b"), now=1.0)  # type: ignore[arg-type]
    assert not cache.give(("h", 25, True), FakeSession("d", alive=False), now=1.0)  # type: ignore[arg-type]
    assert not cache.give(("h", 25, True), FakeSession("o"), now=REUSE_LIMIT + 1)  # type: ignore[arg-type]
    old = FakeSession("old")
    assert cache.give(("h", 25, True), old, now=REUSE_LIMIT - 1)  # type: ignore[arg-type]
    assert cache.take(("h", 25, True), now=REUSE_LIMIT + 0.5) == (None, [old])


def test_idle_sessions_expire_and_clear_takes_all() -> None:
    cache = SessionCache(per_key=4)
    early, late = FakeSession("early"), FakeSession("late")
    cache.give(KEY, early, now=10.0)  # type: ignore[arg-type]
    cache.give(KEY, late, now=10.0 + IDLE - 0.5)  # type: ignore[arg-type]
    assert cache.expired(now=10.0 + IDLE - 0.1) == []
    assert cache.expired(now=10.0 + IDLE) == [early]
    assert cache.clear() == [late] and len(cache) == 0
