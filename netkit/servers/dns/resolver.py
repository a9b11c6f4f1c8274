"""The recursive resolver's driver: sends what the engine asks, times it, coalesces.

The algorithm (referrals, server choice, cache, limits, every SERVFAIL reason)
is the pure engine in `proto/dns/recursion.py`; this module runs it: for each
`Query` it yields, one UDP exchange (TCP when the answer is truncated), parsed
by `proto/dns/message.py`, sent back as an `Exchange` with the time. Identical
questions asked at the same time share one resolution. It runs on callbacks
(`start`), not a task per question: on the cold path the task, the futures and
the coroutine frames cost more than the engine itself; `resolve` is the
awaitable face for scripts.

Anti-spoofing: a fresh UDP socket per query (so a kernel-chosen random source
port), a random ID, and an answer is accepted only from the address asked
(connected socket) with the same ID and question (`transport.dns_exchange`), and with
`use_caps_for_id` the same 0x20 letter case.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any

from netkit.histogram import Histogram
from netkit.proto.dns import message as dnsmsg
from netkit.proto.dns.cache import Cache
from netkit.proto.dns.classify import Classified
from netkit.proto.dns.message import SERVFAIL
from netkit.proto.dns.names import name_key, parse_root_hints
from netkit.proto.dns.recursion import (
    EDE,
    MAX_CNAME_CHAIN,
    Exchange,
    Failure,
    Query,
    Recursion,
    Result,
    Steps,
)
from netkit.transport.dns_exchange import DNSExchange
from netkit.transport.errors import CONNECTION_LOST, describe

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
                 trust_anchors: list[Any] | None = None,
                 ) -> None:
        self.engine = Recursion(
            trust_anchors=trust_anchors, wall_clock=time.time,
            hints=parse_root_hints(root_hints), cache=cache, port=port,
            server_timeout=server_timeout, total_timeout=total_timeout,
            query_private_authorities=query_private_authorities, on_step=on_step,
            qname_minimisation=qname_minimisation, forwards=forwards,
            random=(rng := rng or _UrandomBits()).random)
        self.cache = cache
        self.clock = clock
        self.rng = rng
        self.use_caps_for_id = use_caps_for_id
        # questions being resolved -> who waits for each (the first asker included)
        self._inflight: dict[tuple[str, int], list[Callable[[Result], None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # TCP retries, referenced while running
        self.upstream_queries = 0
        self.latency = Histogram()  # seconds from a question sent to its answer
        self.exchange = DNSExchange()  # closed by whoever owns the resolver, at shutdown

    async def resolve(self, qname: str, qtype: int) -> Result:
        """Resolve (the awaitable face of `start`)."""
        answer: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.start(qname, qtype, lambda result: answer.done() or answer.set_result(result))
        return await answer

    def start(self, qname: str, qtype: int, done: Callable[[Result], None]) -> None:
        """Resolve and call `done(result)` once; identical questions asked meanwhile
        share the one resolution. Callbacks all the way (no task, no future per query):
        the server's cold path runs on this."""
        key = (name_key(qname), qtype)
        waiters = self._inflight.get(key)
        if waiters is not None:
            waiters.append(done)
            return
        self._inflight[key] = [done]
        self._advance(key, self.engine.resolve(key[0], qtype, self.clock()), None)

    def _advance(self, key: tuple[str, int], steps: Steps[Result],
                 exchange: Exchange | None) -> None:
        """The whole driver: hand the engine what came of its last Query, send the next."""
        try:
            query = next(steps) if exchange is None else steps.send(exchange)
        except StopIteration as finished:
            self._finish(key, finished.value)
            return
        except Exception:  # a bug in the engine: this question fails, the server lives
            log.exception("resolver: resolving %s type %d failed", key[0], key[1])
            self._finish(key, Result(SERVFAIL, ede=(EDE.OTHER, "internal error")))
            return
        try:
            self._exchange(query, lambda answer: self._advance(key, steps, answer))
        except Exception:  # a question we cannot even send: it fails, nothing waits on
            log.exception("resolver: asking %s about %s failed", query.server, key[0])
            self._finish(key, Result(SERVFAIL, ede=(EDE.OTHER, "internal error")))

    def _finish(self, key: tuple[str, int], result: Result) -> None:
        for done in self._inflight.pop(key):
            try:
                done(result)
            except Exception:  # one waiter's failure is not the others'
                log.exception("resolver: delivering the answer for %s failed", key[0])

    def _exchange(self, query: Query, then: Callable[[Exchange], None]) -> None:
        """One question to one server over UDP (TCP when the answer is truncated);
        `then(Exchange)` with the parsed answer or why there is none."""
        self.upstream_queries += 1
        name = query.name
        if self.use_caps_for_id:
            # draft-vixie-dnsext-dns0x20: every letter's case is one more random bit
            name = "".join(c.upper() if self.rng.random() < 0.5 else c.lower() for c in name)
        wire = dnsmsg.encode_query(self.rng.getrandbits(16), name, query.qtype, rd=query.rd,
                                   edns_size=EDNS_SIZE, dnssec_ok=query.dnssec_ok)
        sent = time.monotonic()

        def answered(data: bytes | None, error: BaseException | None) -> None:
            if error is not None:
                then(self._failed(error))
                return
            assert data is not None
            self.latency.observe(time.monotonic() - sent)
            try:
                response = dnsmsg.parse(data)
            except dnsmsg.FormatError as exc:  # counted like a server that did not answer
                then(Exchange(self.clock(), None, f"malformed answer: {exc}"))
                return
            if response.tc:  # rare: a task for the TCP retry
                task = asyncio.get_running_loop().create_task(self._tcp(query, wire, then))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            then(Exchange(self.clock(), response))

        self.exchange.udp_start(query.server, query.port, wire, query.timeout, answered,
                                exact_case=self.use_caps_for_id)

    async def _tcp(self, query: Query, wire: bytes, then: Callable[[Exchange], None]) -> None:
        try:
            data = await self.exchange.tcp(query.server, query.port, wire, query.tcp_timeout)
            exchange = Exchange(self.clock(), dnsmsg.parse(data))
        except dnsmsg.FormatError as exc:
            exchange = Exchange(self.clock(), None, f"malformed answer: {exc}")
        except CONNECTION_LOST as exc:  # a TimeoutError is an OSError too
            exchange = self._failed(exc)
        then(exchange)

    def _failed(self, error: BaseException) -> Exchange:
        if isinstance(error, TimeoutError):
            return Exchange(self.clock(), None, "timed out", timed_out=True)
        return Exchange(self.clock(), None, describe(error))


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
