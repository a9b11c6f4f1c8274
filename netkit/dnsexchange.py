"""One DNS question and its answer over UDP or TCP: shared by the resolver and the client.

UDP uses a fresh socket per question, so the kernel picks a random source port
(with the random ID, the anti-spoofing of RFC 5452), connected to the server so
that datagrams from anyone else never reach us; an answer is taken only with
the same ID and question (and, for 0x20, the same letter case). Anything else
that arrives is dropped and the wait goes on until the deadline.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from dnslib import DNSRecord

from .proto.dns import name_key


class _Waiter(asyncio.DatagramProtocol):
    def __init__(self, request: DNSRecord, exact_case: bool) -> None:
        self.request = request
        self.exact_case = exact_case
        self.done: asyncio.Future[DNSRecord] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = DNSRecord.parse(data)
        except Exception:  # dnslib raises many kinds on garbage; garbage is dropped
            return
        if matches(self.request, msg, self.exact_case) and not self.done.done():
            self.done.set_result(msg)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


def matches(request: DNSRecord, msg: DNSRecord, exact_case: bool = False) -> bool:
    """`msg` answers `request`: same ID and question (and letter case, for 0x20)."""
    q = request.q
    if (msg.header.id != request.header.id or not msg.questions
            or name_key(msg.q.qname) != name_key(q.qname) or msg.q.qtype != q.qtype):
        return False  # a spoofing attempt or a late reply to an earlier question
    return not exact_case or str(msg.q.qname) == str(q.qname)


async def udp(server: str, port: int, request: DNSRecord, timeout: float, *,
              exact_case: bool = False) -> DNSRecord:
    """Send over UDP and wait for the matching answer; TimeoutError or OSError."""
    loop = asyncio.get_running_loop()
    # made and connected by hand: create_datagram_endpoint(remote_addr=...) costs 70 us a
    # query against 21 us this way (measured on uvloop)
    sock = socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET,
                         socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((server, port))
    except OSError:
        sock.close()
        raise
    transport, waiter = await loop.create_datagram_endpoint(
        lambda: _Waiter(request, exact_case), sock=sock)
    try:
        transport.sendto(request.pack())
        async with asyncio.timeout(timeout):
            return await waiter.done
    finally:
        transport.close()


async def tcp(server: str, port: int, request: DNSRecord, timeout: float) -> DNSRecord:
    """Send over TCP (two-byte length prefix, RFC 1035 4.2.2) and read the answer."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(server, port)
        try:
            data = request.pack()
            writer.write(struct.pack("!H", len(data)) + data)
            size = struct.unpack("!H", await reader.readexactly(2))[0]
            response = DNSRecord.parse(await reader.readexactly(size))
        finally:
            writer.close()
    if not matches(request, response):
        raise OSError("TCP answer to another question")
    return response
