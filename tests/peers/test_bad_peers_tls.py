"""The bad-peer kit against the TLS wrapper, and clients that end a session badly."""

from __future__ import annotations

import socket
import subprocess
import time

from tests.peers.test_tls_wrapper import recv_until, server_tunnel, start_wrapper, tls_client
from tests.support import badpeers
from tests.support.fixtures import free_port, need


def echo_ok(pki, port: int) -> bool:  # type: ignore[no-untyped-def]
    with tls_client(pki, port) as s:
        s.sendall(b"ping")
        return recv_until(s, b"ping") == b"ping"


def test_sessions_ended_without_close_notify_or_by_renegotiation_log_one_line(
        spawn, tmp_path, pki, backend):
    more = 'min_version = "1.2"'
    proc, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend, more))
    for _ in range(20):  # TCP closed under the session: no close_notify
        s = tls_client(pki, port)
        s.sendall(b"ping")
        recv_until(s, b"ping")
        s.close()
    # a TLS 1.2 client asking to renegotiate (OpenSSL's "R" command), refused
    r = subprocess.run([need("openssl"), "s_client", "-connect", f"127.0.0.1:{port}",
                        "-tls1_2", "-CAfile", str(pki.ca), "-servername", "localhost"],
                       input=b"hello\nR\n", capture_output=True, timeout=30)
    assert b"Verify return code: 0 (ok)" in r.stdout
    time.sleep(0.5)
    assert echo_ok(pki, port)
    assert "Traceback" not in proc.log and " ERROR " not in proc.log, proc.log[-2000:]


def test_half_open_handshakes_garbage_and_a_flood(spawn, tmp_path, pki, backend):
    more = '[tls.tunnel.limits]\nhandshake_timeout = "1s"\nmax_connections = 64'
    proc, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend, more))
    address = ("127.0.0.1", port)
    with badpeers.Meanwhile(lambda: echo_ok(pki, port), interval=0.1) as good:
        # a ClientHello's first bytes, one at a time: cut at the handshake deadline
        with badpeers.trickle(address, b"\x16\x03\x01\x02\x00\x01" + b"\x00" * 100,
                              interval=0.05, connections=8) as socks:
            t0 = time.monotonic()
            assert all(badpeers.closed_by_server(s, 5) for s in socks)
            assert time.monotonic() - t0 < 3
        for seed in range(3):
            badpeers.garbage(address, seed=seed, timeout=2)
        n = badpeers.flood(address, b"\x16\x03\x01\x00\x05hello", connections=200)
    assert n > 150 and echo_ok(pki, port)
    assert good.answered >= 3
    assert "Traceback" not in proc.log


def test_a_client_that_never_reads_leaves_memory_bounded(spawn, tmp_path, pki, backend):
    proc, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend))
    before = badpeers.rss_kib(proc.proc.pid)
    s = tls_client(pki, port)  # the echo backend sends everything back; we never read
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(3)
    sent = 0
    block = b"x" * 65536
    with badpeers.Meanwhile(lambda: echo_ok(pki, port)) as good:
        try:
            while sent < 64 << 20:
                s.sendall(block)
                sent += len(block)
        except (TimeoutError, OSError):
            pass  # the wrapper stopped reading from us: what backpressure looks like
        grown = badpeers.rss_kib(proc.proc.pid) - before
    s.close()
    assert sent < 64 << 20, "the wrapper took 64 MiB from a client that never reads"
    assert grown < 30_000, f"RSS grew by {grown} KiB"
    assert good.answered >= 3 and not good.failures


def test_sighup_moves_a_tunnel_to_its_new_address(spawn, tmp_path, pki, backend):
    import signal

    old, new = free_port(), free_port()
    body = server_tunnel(pki, backend).replace('listen = ["127.0.0.1:0"]',
                                               f'listen = ["127.0.0.1:{old}"]')
    proc, (port,) = start_wrapper(spawn, tmp_path, body)
    assert port == old and echo_ok(pki, old)
    (tmp_path / "tls.toml").write_text(body.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}"))
    proc.signal(signal.SIGHUP)
    proc.wait_for(rf"listening on 127\.0\.0\.1:{new}")
    proc.wait_for(rf"stopped listening on 127\.0\.0\.1:{old}")
    assert echo_ok(pki, new)
