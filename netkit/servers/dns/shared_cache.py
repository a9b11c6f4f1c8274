"""A cache of whole answers shared between resolvers, in Redis (as Unbound's cachedb):
on a local miss the resolver asks Redis before recursing, and stores what it resolved
there with the remaining TTL as the key's expiry. Redis slow or gone never fails a
query: each call has a short deadline, a failure is counted, and the resolver recurses
as if there were no shared cache. redis-py's asyncio client speaks to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

log = logging.getLogger("netkit.dns")
PREFIX = b"netkit:dns:"


def redis_key(key: tuple[bytes, int, int]) -> bytes:
    qname, qtype, edns = key
    return PREFIX + qname.lower().hex().encode() + b":%d:%d" % (qtype, int(edns))


class SharedCache:
    def __init__(self, url: str, deadline: float) -> None:
        import redis.asyncio
        self.client: Any = redis.asyncio.from_url(url, socket_connect_timeout=deadline,
                                                  socket_timeout=deadline)
        self.deadline = deadline
        self.stats = dict.fromkeys(("shared_cache_hits", "shared_cache_misses",
                                    "shared_cache_errors"), 0)
        self._last_error_log = 0.0

    async def get(self, key: tuple[bytes, int, int]) -> bytes | None:
        try:
            async with asyncio.timeout(self.deadline):
                blob = await self.client.get(redis_key(key))
        except Exception as exc:  # timeouts, refusals, a Redis that went away
            self._failed(exc)
            return None
        self.stats["shared_cache_hits" if blob else "shared_cache_misses"] += 1
        return blob

    async def put(self, key: tuple[bytes, int, int], blob: bytes, ttl: int) -> None:
        if ttl <= 0:
            return
        try:
            async with asyncio.timeout(self.deadline):
                await self.client.set(redis_key(key), blob, ex=ttl)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.stats["shared_cache_errors"] += 1
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.warning("dns: shared cache: %s (answers go on without it; said once in "
                        "10 s)", exc or type(exc).__name__)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()
