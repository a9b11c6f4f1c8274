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
import socket
import struct

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


async def udp(server: str, port: int, query: bytes, timeout: float, *,
              exact_case: bool = False) -> bytes:
    """Send over UDP and wait for the matching answer; TimeoutError or OSError."""
    loop = asyncio.get_running_loop()
    # the C socket object, without socket.socket's Python layer (a few us a query), made
    # non-blocking at birth (no ioctl); it is watched directly (add_reader), not wrapped
    # in a datagram transport: 32 us a query against 46 us with
    # create_datagram_endpoint(sock=...) (uvloop)
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

    def expired() -> None:
        if not done.done():
            done.set_exception(TimeoutError())

    fd = sock.fileno()
    loop.add_reader(fd, readable)
    timer = loop.call_later(timeout, expired)
    try:
        return await done
    finally:
        timer.cancel()
        loop.remove_reader(fd)
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
