"""One DNS question and its answer over UDP or TCP: shared by the resolver and the client.

UDP uses a fresh socket per question, so the kernel picks a random source port
(with the random ID, the anti-spoofing of RFC 5452), connected to the server so
that datagrams from anyone else never reach us; an answer is taken only with
the same ID, QR set and the same question (and, for 0x20, the same letter case),
checked on the raw bytes before anything is parsed. Anything else that arrives
is dropped and the wait goes on until the deadline. Both return the answer's
bytes; the caller parses them (the resolver with `proto.dnsmsg`, the client
with dnslib).
"""

from __future__ import annotations

import _socket
import asyncio
import heapq
import select
import socket
import struct
from collections.abc import Callable

_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)  # Linux: a socket non-blocking from birth


def matches(query: bytes, answer: bytes, question_end: int, exact_case: bool = False) -> bool:
    """`answer` answers `query`: same ID, QR set, one question equal to the query's
    (letter case ignored unless `exact_case`, the 0x20 check)."""
    if len(answer) < question_end or answer[:2] != query[:2] or not answer[2] & 0x80 \
            or answer[4:6] != b"\x00\x01":
        return False  # a spoofing attempt, a late reply to an earlier question, garbage
    theirs, ours = answer[12:question_end], query[12:question_end]
    return theirs == ours if exact_case else theirs.lower() == ours.lower()


def question_end(query: bytes) -> int:
    """Offset just after the question of a query with an uncompressed name."""
    i = 12
    while query[i]:
        i += 1 + query[i]
    return i + 5


class _InFlight:
    """Every UDP question in flight on one event loop: their sockets watched through one
    epoll descriptor that the loop watches (registered once), their deadlines in a heap
    under one timer. Per question that is one epoll_ctl (closing a socket drops it from
    epoll by itself) where the loop's add_reader/remove_reader and call_later made six
    system calls and three handles: 7-10% of the resolver's cold path (py-spy)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.waiting: dict[int, Callable[[], None]] = {}  # socket fd -> its reader
        self.deadlines: list[tuple[float, int, asyncio.Future[bytes]]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.serial = 0  # orders equal deadlines in the heap
        loop.add_reader(self.epoll.fileno(), self._ready)

    def add(self, fd: int, reader: Callable[[], None], done: asyncio.Future[bytes],
            timeout: float) -> None:
        self.epoll.register(fd, select.EPOLLIN)
        self.waiting[fd] = reader
        deadline = self.loop.time() + timeout
        self.serial += 1
        heapq.heappush(self.deadlines, (deadline, self.serial, done))
        if self.timer is None or deadline < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer, self.timer_at = self.loop.call_at(deadline, self._expire), deadline

    def remove(self, fd: int) -> None:
        # the socket is closed right after: epoll forgets it then, no call needed here
        del self.waiting[fd]

    def _ready(self) -> None:
        for fd, _ in self.epoll.poll(0):
            reader = self.waiting.get(fd)
            if reader is not None:
                reader()

    def _expire(self) -> None:
        self.timer = None
        now = self.loop.time()
        heap = self.deadlines
        while heap and heap[0][0] <= now:
            done = heapq.heappop(heap)[2]
            if not done.done():
                done.set_exception(TimeoutError())
        if heap:  # answered questions stay in the heap until their deadline: cheap
            self.timer, self.timer_at = self.loop.call_at(heap[0][0], self._expire), heap[0][0]


_in_flight: _InFlight | None = None


def _in_flight_on(loop: asyncio.AbstractEventLoop) -> _InFlight:
    global _in_flight
    if _in_flight is None or _in_flight.loop is not loop:
        if _in_flight is not None and _in_flight.loop.is_closed():
            _in_flight.epoll.close()
        _in_flight = _InFlight(loop)
    return _in_flight


async def udp(server: str, port: int, query: bytes, timeout: float, *,
              exact_case: bool = False) -> bytes:
    """Send over UDP and wait for the matching answer; TimeoutError or OSError."""
    loop = asyncio.get_running_loop()
    in_flight = _in_flight_on(loop)
    # the C socket object, without socket.socket's Python layer (a few us a query), made
    # non-blocking at birth (no ioctl)
    sock = _socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET,
                          socket.SOCK_DGRAM | _NONBLOCK)
    try:
        if not _NONBLOCK:
            sock.setblocking(False)
        sock.connect((server, port))
        sock.send(query)
    except OSError:
        sock.close()
        raise
    done: asyncio.Future[bytes] = loop.create_future()
    end = question_end(query)

    def readable() -> None:
        while not done.done():
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP port unreachable and the like
                done.set_exception(exc)
                return
            if matches(query, data, end, exact_case):
                done.set_result(data)

    fd = sock.fileno()
    in_flight.add(fd, readable, done, timeout)
    try:
        return await done
    finally:
        in_flight.remove(fd)
        sock.close()


async def tcp(server: str, port: int, query: bytes, timeout: float) -> bytes:
    """Send over TCP (two-byte length prefix, RFC 1035 4.2.2) and read the answer."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(server, port)
        try:
            writer.write(struct.pack("!H", len(query)) + query)
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            answer = await reader.readexactly(size)
        finally:
            writer.close()
    if not matches(query, answer, question_end(query)):
        raise OSError("TCP answer to another question")
    return answer
