"""The transport layer in-process: counters, limits, PROXY, TLS, UDP, connect helpers."""

from __future__ import annotations

import socket
import ssl
import time

import anyio
import pytest

from netkit.config import Address, Duration
from netkit.errors import ConnectError, ConnectTimeout, TLSError
from netkit.proto import proxy
from netkit.tlsconf import client_context, server_context
from netkit.transport.connect import connect_stream, open_connection
from netkit.transport.connection import Connection, Handler, Limits
from netkit.transport.listeners import (
    DatagramEndpoint,
    DatagramHandler,
    DatagramServer,
    StreamServer,
)

pytestmark = pytest.mark.anyio
LOOP = Address("127.0.0.1", 0)


class Echo(Handler):
    peers: list[tuple[str, int]] = []

    def connection_made(self, conn: Connection) -> None:
        super().connection_made(conn)
        Echo.peers.append(conn.peer)

    def data_received(self, data: bytes) -> None:
        self.conn.write(data)


class Collect(Handler):
    def __init__(self) -> None:
        self.data = b""
        self.eof = anyio.Event()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> None:
        self.eof.set()


async def exchange(port: int, payload: bytes, expect: int | None = None) -> bytes:
    """Send `payload`, return the first `expect` bytes (default: as many as were sent)."""
    expect = len(payload) if expect is None else expect
    with anyio.fail_after(5):
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(payload)
            got = b""
            while len(got) < expect:
                got += await s.receive()
            return got


async def test_echo_and_counters():
    server = StreamServer("t", Echo, limits=Limits())
    (addr,) = await server.listen([LOOP])
    for i in range(3):
        assert await exchange(addr.port, b"x" * (i + 1)) == b"x" * (i + 1)
    with anyio.fail_after(5):
        while server.counters.active:
            await anyio.sleep(0.01)
    c = server.counters.snapshot()
    assert (c["accepted"], c["active"], c["refused"], c["bytes_in"], c["bytes_out"]) == \
        (3, 0, 0, 6, 6)
    server.close()


async def test_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = StreamServer("t6", Echo, limits=Limits())
    (addr,) = await server.listen([Address("::1", 0)])
    assert addr.host == "::1" and str(addr).startswith("[::1]:")
    async with await anyio.connect_tcp("::1", addr.port) as s:
        await s.send(b"six")
        assert await s.receive() == b"six"
    server.close()


async def test_excess_connections_are_refused_and_counted():
    server = StreamServer("t", Echo, limits=Limits(max_connections=1))
    (addr,) = await server.listen([LOOP])
    async with await anyio.connect_tcp("127.0.0.1", addr.port) as first:
        await first.send(b"a")
        assert await first.receive() == b"a"
        async with await anyio.connect_tcp("127.0.0.1", addr.port) as second:
            with pytest.raises(anyio.EndOfStream):
                await second.receive()
    assert server.counters.refused == 1 and server.counters.accepted == 2
    server.close()


async def test_proxy_v2_sets_the_peer_and_local_command_keeps_it():
    Echo.peers = []
    server = StreamServer("t", Echo, limits=Limits(), accept_proxy=True)
    (addr,) = await server.listen([LOOP])
    header = proxy.encode_v2(("2001:db8::7", 4321), ("2001:db8::1", 443))
    assert await exchange(addr.port, header + b"data", 4) == b"data"
    assert await exchange(addr.port, proxy.encode_v2(None, None) + b"hc", 2) == b"hc"
    assert Echo.peers[0] == ("2001:db8::7", 4321)
    assert Echo.peers[1][0] == "127.0.0.1"
    server.close()


async def test_garbage_instead_of_proxy_header_is_dropped_and_counted():
    server = StreamServer("t", Echo, limits=Limits(), accept_proxy=True)
    (addr,) = await server.listen([LOOP])
    async with await anyio.connect_tcp("127.0.0.1", addr.port) as s:
        await s.send(b"HELLO THERE\r\n")
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await s.receive()
    assert server.counters.proxy_errors == 1
    server.close()


async def test_handshake_timeout_cuts_a_client_that_never_finishes_its_header():
    limits = Limits(idle_timeout=Duration(5), handshake_timeout=Duration(0.2))
    server = StreamServer("t", Echo, limits=limits, accept_proxy=True)
    (addr,) = await server.listen([LOOP])
    t0 = time.monotonic()
    async with await anyio.connect_tcp("127.0.0.1", addr.port) as s:
        await s.send(b"PROXY TCP4 ")  # a header begun and never finished
        with anyio.fail_after(3), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await s.receive()
    assert 0.15 < time.monotonic() - t0 < 2  # the handshake limit, not the idle one
    assert server.counters.timeouts == 1
    server.close()


async def test_idle_timeout_closes_a_silent_connection_but_not_a_talking_one():
    limits = Limits(idle_timeout=Duration(0.3))
    server = StreamServer("t", Echo, limits=limits)
    (addr,) = await server.listen([LOOP])
    async with await anyio.connect_tcp("127.0.0.1", addr.port) as s:
        for i in range(6):  # 0.9 s in all, never 0.3 s quiet: stays open
            await s.send(b"%d" % i)
            with anyio.fail_after(3):
                assert await s.receive() == b"%d" % i
            await anyio.sleep(0.15)
        t0 = time.monotonic()
        with anyio.fail_after(3), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await s.receive()  # now silent: closed after the idle limit
        assert 0.1 < time.monotonic() - t0 < 2
    assert server.counters.timeouts == 1
    server.close()


async def test_tls_listener_open_connection_and_half_close(pki):
    ctx = server_context(pki.server_cert, pki.server_key)
    collected: list[Collect] = []

    def factory() -> Handler:
        collected.append(Collect())
        return collected[-1]

    server = StreamServer("t", factory, limits=Limits(), tls=lambda: ctx)
    (addr,) = await server.listen([LOOP])
    client = Handler()
    conn = await open_connection(addr, client, tls=client_context(ca=pki.ca),
                                 server_hostname="localhost")
    assert conn.tls_info is not None and conn.tls_info.version == "TLSv1.3"
    conn.write(b"over tls")
    conn.write_eof()
    with anyio.fail_after(5):
        await collected[0].eof.wait()
    assert collected[0].data == b"over tls"
    conn.close()
    server.close()


async def test_open_connection_reports_each_address_and_timeouts(pki):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(ConnectError) as info:
        await open_connection(Address("127.0.0.1", closed_port), Handler(), timeout=2)
    assert info.value.attempts[0][0] == f"127.0.0.1:{closed_port}"
    # a server that accepts TCP but never answers the ClientHello: the deadline covers TLS
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(ConnectTimeout):
            await open_connection(Address("127.0.0.1", silent.getsockname()[1]), Handler(),
                                  tls=client_context(ca=pki.ca), timeout=0.3)


async def test_connect_stream_verifies_by_default(pki):
    ctx = server_context(pki.server_cert, pki.server_key)
    server = StreamServer("t", Echo, limits=Limits(), tls=lambda: ctx)
    (addr,) = await server.listen([LOOP])
    with pytest.raises(TLSError, match="unknown CA"):
        await connect_stream(addr, tls=True, server_hostname="localhost")
    stream = await connect_stream(addr, tls=client_context(ca=pki.ca),
                                  server_hostname="localhost")
    await stream.send(b"verified")
    assert await stream.receive() == b"verified"
    await stream.aclose()
    server.close()


async def test_drain_waits_for_connections_then_aborts_the_rest():
    server = StreamServer("t", Echo, limits=Limits())
    (addr,) = await server.listen([LOOP])
    async with await anyio.connect_tcp("127.0.0.1", addr.port) as s:
        await s.send(b"x")
        await s.receive()
        t0 = anyio.current_time()
        await server.drain(0.3)
        assert 0.25 < anyio.current_time() - t0 < 2
        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            await s.receive()
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", addr.port)  # no longer accepting


async def test_backpressure_pauses_the_handler():
    paused = anyio.Event()

    class Flood(Handler):
        def connection_made(self, conn: Connection) -> None:
            super().connection_made(conn)
            conn.write(b"z" * (64 << 20))  # more than the kernel buffers and our 64 KiB

        def pause_writing(self) -> None:
            paused.set()

    server = StreamServer("t", Flood, limits=Limits(write_buffer=65536))
    (addr,) = await server.listen([LOOP])
    async with await anyio.connect_tcp("127.0.0.1", addr.port):
        with anyio.fail_after(5):
            await paused.wait()
    server.close()


async def test_udp_echo_and_counters():
    class UEcho(DatagramHandler):
        def datagram_received(self, data, addr, endpoint: DatagramEndpoint) -> None:
            endpoint.send(data.upper(), addr)

    server = DatagramServer("u", UEcho())
    (addr,) = await server.listen([LOOP])
    async with await anyio.create_connected_udp_socket("127.0.0.1", addr.port) as s:
        for word in (b"one", b"two"):
            await s.send(word)
            with anyio.fail_after(5):
                assert await s.receive() == word.upper()
    c = server.counters
    assert (c.datagrams_in, c.datagrams_out, c.bytes_in, c.bytes_out) == (2, 2, 6, 6)
    server.close()


async def test_udp_sends_of_one_loop_turn_leave_together_in_order():
    class Burst(DatagramHandler):
        def datagram_received(self, data, addr, endpoint: DatagramEndpoint) -> None:
            for i in range(3):
                endpoint.send(b"%s-%d" % (data, i), addr)
            # held for the end of this loop turn (sent back to back), not sent yet
            assert len(endpoint._outbox) == 3

    server = DatagramServer("u", Burst())
    (addr,) = await server.listen([LOOP])
    async with await anyio.create_connected_udp_socket("127.0.0.1", addr.port) as s:
        await s.send(b"q")
        with anyio.fail_after(5):
            assert [await s.receive() for _ in range(3)] == [b"q-0", b"q-1", b"q-2"]
    server.close()


def test_handshake_failure_does_not_leak_a_traceback(pki, caplog):
    ctx = server_context(pki.server_cert, pki.server_key)

    async def main() -> None:
        server = StreamServer("t", Echo, limits=Limits(), tls=lambda: ctx)
        (addr,) = await server.listen([LOOP])
        async with await anyio.connect_tcp("127.0.0.1", addr.port) as s:
            await s.send(b"\x16\x03\x01\x00\x05hello")  # a record header, then nonsense
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                data = await s.receive()
                assert not data.startswith(b"Traceback")
                await s.receive()
        assert server.counters.tls_failures == 1
        server.close()

    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    assert "TLS handshake with client" in caplog.text
    assert "Traceback" not in caplog.text
    assert ssl.OPENSSL_VERSION


def test_workers_bind_one_reuseport_group_per_address():
    from netkit.workers import bind_all

    sets = bind_all(3, [("udp", Address("127.0.0.1", 0)), ("tcp", Address("127.0.0.1", 0))])
    try:
        ports = {s[(kind, "127.0.0.1:0")].getsockname()[1] for s in sets for kind in ("udp", "tcp")}
        assert len(ports) == 1 and 0 not in ports  # UDP and TCP share the port, as DNS wants
    finally:
        for s in sets:
            for sock in s.values():
                sock.close()


async def test_a_handler_paused_in_connection_made_gets_no_data_until_it_resumes():
    handlers: list[Collect] = []

    class PausedAtStart(Collect):
        def connection_made(self, conn: Connection) -> None:
            super().connection_made(conn)
            conn.pause_reading()  # uvloop starts reading after this returns regardless
            handlers.append(self)

    server = StreamServer("t", PausedAtStart, limits=Limits())
    (addr,) = await server.listen([LOOP])
    async with await anyio.connect_tcp("127.0.0.1", addr.port) as s:
        await s.send(b"early bytes")
        await anyio.sleep(0.2)
        assert handlers[0].data == b""
        handlers[0].conn.resume_reading()
        with anyio.fail_after(5):
            while handlers[0].data != b"early bytes":
                await anyio.sleep(0.01)
    server.close()


async def test_total_timeout_ends_even_a_busy_connection():
    server = StreamServer("t", Echo, limits=Limits(total_timeout=Duration(0.3)))
    (addr,) = await server.listen([LOOP])
    async with await anyio.connect_tcp("127.0.0.1", addr.port) as s:
        t0 = anyio.current_time()
        with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
            while True:  # never idle, yet the lifetime limit ends it
                await s.send(b"busy")
                await s.receive()
                await anyio.sleep(0.02)
        assert 0.25 < anyio.current_time() - t0 < 3
    assert server.counters.timeouts == 1
    server.close()


async def test_eof_comes_after_bytes_held_while_paused():
    handlers: list[Collect] = []

    class PausedAtStart(Collect):
        def connection_made(self, conn: Connection) -> None:
            super().connection_made(conn)
            conn.pause_reading()
            handlers.append(self)

        def eof_received(self) -> None:
            self.data += b"<EOF>"
            super().eof_received()

    server = StreamServer("t", PausedAtStart, limits=Limits(), accept_proxy=True)
    (addr,) = await server.listen([LOOP])
    async with await anyio.connect_tcp("127.0.0.1", addr.port) as s:
        # header and data in one write: the data arrives while the handler is paused
        await s.send(proxy.encode_v1(("192.0.2.1", 1), ("192.0.2.2", 2)) + b"payload")
        await s.send_eof()
        await anyio.sleep(0.2)
        assert handlers[0].data == b""
        handlers[0].conn.resume_reading()
        with anyio.fail_after(5):
            await handlers[0].eof.wait()
        assert handlers[0].data == b"payload<EOF>"
    server.close()


async def test_connect_stream_plain():
    server = StreamServer("t", Echo, limits=Limits())
    (addr,) = await server.listen([LOOP])
    stream = await connect_stream(addr, server_hostname="ignored-without-tls")
    await stream.send(b"plain")
    assert await stream.receive() == b"plain"
    await stream.aclose()
    server.close()
