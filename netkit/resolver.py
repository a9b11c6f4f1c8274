"""The recursive resolver's driver: sends what the engine asks, times it, coalesces.

The algorithm (referrals, server choice, cache, limits, every SERVFAIL reason)
is the pure engine in `proto/recursion.py`; this module runs it: for each
`Query` it yields, one UDP exchange (TCP when the answer is truncated), parsed
by `proto/dnsmsg.py`, sent back as an `Exchange` with the time. Identical
questions asked at the same time share one resolution.

Anti-spoofing: a fresh UDP socket per query (so a kernel-chosen random source
port), a random ID, and an answer is accepted only from the address asked
(connected socket) with the same ID and question (`dnsexchange`), and with
`use_caps_for_id` the same 0x20 letter case.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable

from . import dnsexchange
from .proto import dnsmsg
from .proto.dns import Cache, Classified, name_key, parse_root_hints
from .proto.recursion import (
    MAX_CNAME_CHAIN,
    Exchange,
    Failure,
    Query,
    Recursion,
    Result,
    Steps,
)

__all__ = ["EDNS_SIZE", "MAX_CNAME_CHAIN", "Failure", "Resolver", "Result"]

log = logging.getLogger("netkit.resolver")

EDNS_SIZE = 1232  # DNS flag day 2020: avoids IP fragmentation


class Resolver:
    """`await resolve(qname, qtype)` -> Result, from the root hints (or forwarders)."""

    def __init__(self, *, root_hints: str, cache: Cache, port: int = 53,
                 server_timeout: float = 0.8, total_timeout: float = 5.0,
                 query_private_authorities: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | _UrandomBits | None = None,
                 on_step: Callable[[str, str, str, int, Classified], None] | None = None,
                 qname_minimisation: bool = True,
                 use_caps_for_id: bool = False,
                 forwards: dict[str, list[tuple[str, int]]] | None = None,
                 ) -> None:
        self.engine = Recursion(
            hints=parse_root_hints(root_hints), cache=cache, port=port,
            server_timeout=server_timeout, total_timeout=total_timeout,
            query_private_authorities=query_private_authorities, on_step=on_step,
            qname_minimisation=qname_minimisation, forwards=forwards)
        self.cache = cache
        self.clock = clock
        self.rng = rng or _UrandomBits()
        self.use_caps_for_id = use_caps_for_id
        self._inflight: dict[tuple[str, int], list[asyncio.Future[Result]]] = {}
        self.upstream_queries = 0

    async def resolve(self, qname: str, qtype: int) -> Result:
        """Resolve, coalescing identical concurrent questions into one resolution: the
        first one resolves, the ones that arrive meanwhile wait for its result (a future
        each, made only for them: the common lone question makes none)."""
        key = (name_key(qname), qtype)
        waiters = self._inflight.get(key)
        if waiters is not None:
            future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
            waiters.append(future)
            return await future
        waiters = self._inflight[key] = []
        try:
            result = await self._drive(self.engine.resolve(key[0], qtype, self.clock()))
        except BaseException as exc:
            for future in waiters:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: each waiter re-raises it itself
            raise
        finally:
            del self._inflight[key]
        for future in waiters:
            if not future.done():  # a waiter cancelled on its own is left alone
                future.set_result(result)
        return result

    async def _drive(self, steps: Steps[Result]) -> Result:
        """The whole driver: answer each Query the engine yields until it returns."""
        try:
            query = next(steps)
            while True:
                query = steps.send(await self._exchange(query))
        except StopIteration as done:
            return done.value

    async def _exchange(self, query: Query) -> Exchange:
        self.upstream_queries += 1
        name = query.name
        if self.use_caps_for_id:
            # draft-vixie-dnsext-dns0x20: every letter's case is one more random bit
            name = "".join(c.upper() if self.rng.random() < 0.5 else c.lower() for c in name)
        wire = dnsmsg.encode_query(self.rng.getrandbits(16), name, query.qtype, rd=query.rd,
                                   edns_size=EDNS_SIZE)
        try:
            data = await dnsexchange.udp(query.server, query.port, wire, query.timeout,
                                         exact_case=self.use_caps_for_id)
            response = dnsmsg.parse(data)
            if response.tc:
                data = await dnsexchange.tcp(query.server, query.port, wire,
                                             query.tcp_timeout)
                response = dnsmsg.parse(data)
        except TimeoutError:
            return Exchange(self.clock(), None, "timed out", timed_out=True)
        except dnsmsg.FormatError as exc:  # counted like a server that did not answer
            return Exchange(self.clock(), None, f"malformed answer: {exc}")
        except (OSError, asyncio.IncompleteReadError) as exc:
            return Exchange(self.clock(), None, getattr(exc, "strerror", None) or str(exc))
        return Exchange(self.clock(), response)


class _UrandomBits:
    """Unpredictable query IDs and 0x20 bits (RFC 5452) from os.urandom, read 4 KiB at a
    time: SystemRandom makes a system call per ID."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def getrandbits(self, k: int) -> int:
        n = (k + 7) // 8
        if self._at + n > len(self._pool):
            self._pool, self._at = os.urandom(4096), 0
        value = int.from_bytes(self._pool[self._at:self._at + n], "big")
        self._at += n
        return value >> (n * 8 - k)

    def random(self) -> float:
        return self.getrandbits(53) / (1 << 53)
