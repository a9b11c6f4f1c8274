"""One DNS question and its answer over UDP or TCP: shared by the resolver and the client.

UDP uses a fresh socket per question, so the kernel picks a random source port
(with the random ID, the anti-spoofing of RFC 5452), connected to the server so
that datagrams from anyone else never reach us; an answer is taken only with
the same ID, QR set and the same question (and, for 0x20, the same letter case),
checked on the raw bytes before anything is parsed. Anything else that arrives
is dropped and the wait goes on until the deadline. Both return the answer's
bytes; the caller parses them (the resolver with `proto/dns/message.py`, the client
with dnslib).
"""

from __future__ import annotations

import _socket
import asyncio
import heapq
import logging
import select
import socket
import ssl
import struct
from collections.abc import Callable

from ..proto.dns.wire import matches, question_end

log = logging.getLogger("netkit.dns")

_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)  # Linux: a socket non-blocking from birth


#: what a UDP exchange calls once, at its end: (answer, None) or (None, the error)
Done = Callable[[bytes | None, BaseException | None], None]


class _InFlight:
    """Every UDP question in flight on one event loop: their sockets watched through one
    epoll descriptor that the loop watches (registered once), their deadlines in a heap
    under one timer. Per question that is one epoll_ctl (closing a socket drops it from
    epoll by itself) where the loop's add_reader/remove_reader and call_later made six
    system calls and three handles: 7-10% of the resolver's cold path (py-spy)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.waiting: dict[int, _Pending] = {}  # socket fd -> its question
        self.deadlines: list[tuple[float, int, _Pending]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.serial = 0  # orders equal deadlines in the heap
        self.outbox: list[_Pending] = []  # questions to send at the end of this loop turn
        loop.add_reader(self.epoll.fileno(), self._ready)

    def send_soon(self, pending: _Pending) -> None:
        """Send at the end of this loop turn, with the turn's other questions: sends that
        follow each other find the authority awake, where one send every few tens of
        microseconds pays for waking it each time (the dearest part of a send)."""
        if not self.outbox:
            self.loop.call_soon(self._flush)
        self.outbox.append(pending)

    def _flush(self) -> None:
        outbox, self.outbox = self.outbox, []
        for pending in outbox:
            if pending.fd < 0:
                continue  # given up before it went out
            try:
                pending.sock.send(pending.query)
            except OSError as exc:
                try:
                    pending.finish(None, exc)
                except Exception:
                    log.exception("dns: handling a send error failed")

    def add(self, pending: _Pending, timeout: float) -> None:
        self.epoll.register(pending.fd, select.EPOLLIN)
        self.waiting[pending.fd] = pending
        deadline = self.loop.time() + timeout
        self.serial += 1
        heapq.heappush(self.deadlines, (deadline, self.serial, pending))
        if self.timer is None or deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer, self.timer_at = self.loop.call_at(deadline, self._expire), deadline

    def _ready(self) -> None:
        for fd, _ in self.epoll.poll(0):
            pending = self.waiting.get(fd)
            if pending is not None:
                try:
                    pending.readable()
                except Exception:  # a bug in one waiter's callback: not the others'
                    log.exception("dns: handling an answer failed")

    def _expire(self) -> None:
        self.timer = None
        now = self.loop.time()
        heap = self.deadlines
        while heap and heap[0][0] <= now:
            # may start the next question at once (another server), arming a timer
            try:
                heapq.heappop(heap)[2].finish(None, TimeoutError())
            except Exception:
                log.exception("dns: handling a timeout failed")
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if heap:  # answered questions stay in the heap until their deadline: cheap
            self.timer, self.timer_at = self.loop.call_at(heap[0][0], self._expire), heap[0][0]


def _ignore(data: bytes | None, error: BaseException | None) -> None:
    pass


class _Pending:
    """One UDP question on the wire: its own socket (a random source port), the matching
    rules, and `done` called exactly once."""

    __slots__ = ("done", "end", "exact_case", "fd", "in_flight", "query", "sock")

    def __init__(self, in_flight: _InFlight, sock: _socket.socket, query: bytes,
                 exact_case: bool, done: Done) -> None:
        self.in_flight, self.sock, self.query = in_flight, sock, query
        self.exact_case, self.done = exact_case, done
        self.fd = sock.fileno()
        self.end = question_end(query)

    def readable(self) -> None:
        while self.fd >= 0:
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP port unreachable and the like
                self.finish(None, exc)
                return
            if matches(self.query, data, self.end, self.exact_case):
                self.finish(data, None)

    def finish(self, data: bytes | None, error: BaseException | None) -> None:
        if self.fd < 0:
            return  # answered (or given up) already
        done = self.done
        self.cancel()
        done(data, error)

    def cancel(self) -> None:
        """Give up without calling `done` (the one waiting went away)."""
        if self.fd >= 0:
            # the socket is closed here: epoll forgets it by itself, no call needed
            del self.in_flight.waiting[self.fd]
            self.fd = -1
            self.sock.close()
            # the deadline heap keeps this object until its deadline: let go of the
            # callback (and the resolution it holds) and the query now
            self.done, self.query = _ignore, b""


class DNSExchange:
    """The upstream side of a resolver or client: UDP questions in flight on the running
    loop and TCP exchanges. One per resolver (its state is its own, not the process's);
    `close()` on shutdown drops what is still waiting."""

    def __init__(self) -> None:
        self._in_flight: _InFlight | None = None

    def _on(self, loop: asyncio.AbstractEventLoop) -> _InFlight:
        in_flight = self._in_flight
        if in_flight is None or in_flight.loop is not loop:
            if in_flight is not None and in_flight.loop.is_closed():
                in_flight.epoll.close()
            in_flight = self._in_flight = _InFlight(loop)
        return in_flight

    def close(self) -> int:
        """Close every UDP question still waiting (their `done` is not called) and the
        watcher itself. Returns how many were dropped."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return 0
        dropped = list(in_flight.waiting.values())
        for pending in dropped:
            pending.cancel()
        if in_flight.timer is not None:
            in_flight.timer.cancel()
        if not in_flight.loop.is_closed():
            in_flight.loop.remove_reader(in_flight.epoll.fileno())
        in_flight.epoll.close()
        return len(dropped)

    def udp_start(self, server: str, port: int, query: bytes, timeout: float, done: Done, *,
                  exact_case: bool = False) -> _Pending | None:
        """Send over UDP; `done(answer, None)` or `done(None, TimeoutError | OSError)` later
        (an error in sending comes through `done` too, on the next loop turn). No task and
        no future: the resolver's cold path runs on these callbacks."""
        loop = asyncio.get_running_loop()
        # the C socket object, without socket.socket's Python layer (a few us a query),
        # made non-blocking at birth (no ioctl)
        sock = _socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET,
                              socket.SOCK_DGRAM | _NONBLOCK)
        try:
            if not _NONBLOCK:
                sock.setblocking(False)
            sock.connect((server, port))
        except OSError as exc:
            sock.close()
            loop.call_soon(done, None, exc)
            return None
        pending = _Pending(self._on(loop), sock, query, exact_case, done)
        pending.in_flight.add(pending, timeout)
        pending.in_flight.send_soon(pending)
        return pending

    async def udp(self, server: str, port: int, query: bytes, timeout: float, *,
                  exact_case: bool = False) -> bytes:
        """Send over UDP and wait for the matching answer; TimeoutError or OSError."""
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def done(data: bytes | None, error: BaseException | None) -> None:
            if answer.done():
                return
            if error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(data)  # type: ignore[arg-type]

        pending = self.udp_start(server, port, query, timeout, done, exact_case=exact_case)
        try:
            return await answer
        finally:
            if pending is not None:
                pending.cancel()

    @staticmethod
    async def tcp(server: str, port: int, query: bytes, timeout: float, *,
                  tls: ssl.SSLContext | None = None, server_hostname: str | None = None
                  ) -> bytes:
        """Send over TCP (two-byte length prefix, RFC 1035 4.2.2), or over TLS with `tls`
        (RFC 7858: the same framing inside), and read the answer."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                server, port, ssl=tls,
                server_hostname=(server_hostname or server) if tls is not None else None)
            try:
                writer.write(struct.pack("!H", len(query)) + query)
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                answer = await reader.readexactly(size)
            finally:
                writer.close()
        if not matches(query, answer, question_end(query)):
            raise OSError("TCP answer to another question")
        return answer
