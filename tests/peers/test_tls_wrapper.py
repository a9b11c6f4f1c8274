"""The TLS wrapper end to end, as a real process, with real peers (openssl, curl)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from netkit import certs
from netkit.proto import proxy
from tests.support.fixtures import Backend, DevPKI, ServerProcess, need

MODULE = "netkit.servers.tls"


def start_wrapper(spawn, tmp_path: Path, body: str, name: str = "tls.toml",
                  extra: list[str] | None = None,
                  count: int = 1) -> tuple[ServerProcess, list[int]]:
    conf = tmp_path / name
    conf.write_text(body)
    proc = spawn(MODULE, ["--config", str(conf), *(extra or [])])
    return proc, [port for _, port in proc.listening(count)]


def server_tunnel(pki: DevPKI, backend: Backend, more: str = "") -> str:
    return f"""
[tls]
watch_interval = "0.2s"
shutdown_timeout = "5s"
[[tls.tunnel]]
name = "web"
listen = ["127.0.0.1:0"]
forward = "{backend.address}"
cert = "{pki.server_cert}"
key = "{pki.server_key}"
{more}
"""


def tls_client(pki: DevPKI, port: int, *, ca: Path | None = None, server_name: str = "localhost",
               cert: tuple[Path, Path] | None = None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ca or pki.ca))
    if cert:
        ctx.load_cert_chain(*cert)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=server_name)


def recv_until(sock: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    data = b""
    while marker not in data and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def openssl(args: list[str], stdin: bytes = b"",
            timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run([need("openssl"), *args], input=stdin, capture_output=True,
                          timeout=timeout)


def s_client_exchange(args: list[str], message: bytes, timeout: float = 15) -> tuple[int, bytes]:
    """Run `openssl s_client -quiet ARGS`, send `message`, and wait for it to come back
    (the backends echo); then close stdin. Returns (exit status, everything read)."""
    p = subprocess.Popen([need("openssl"), "s_client", "-quiet", "-no_ign_eof", *args],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdin is not None and p.stdout is not None
    out = b""
    done = threading.Event()

    def read() -> None:
        nonlocal out
        while True:
            chunk = p.stdout.read1(65536)
            if not chunk:
                break
            out += chunk
            if message in out:
                done.set()
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        p.stdin.write(message)
        p.stdin.flush()
        done.wait(timeout)
        p.stdin.close()
    except BrokenPipeError:
        pass
    try:
        code = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        code = p.wait()
    reader.join(5)
    p.stdout.close()
    return code, out


# --- real peers ---------------------------------------------------------------------------

def test_openssl_s_client_through_wrapper(spawn, tmp_path, pki, backend):
    proc, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend))
    code, out = s_client_exchange(["-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca),
                                   "-verify_return_error", "-servername", "localhost"],
                                  b"hello via openssl\n")
    assert code == 0
    assert b"hello via openssl" in out
    proc.wait_for(r"127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+ closed after .* TLSv1\.3")


def test_curl_through_wrapper(spawn, tmp_path, pki, make_backend):
    web = make_backend("http")
    _, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, web))
    r = subprocess.run([need("curl"), "-sS", "--cacert", str(pki.ca),
                        f"https://localhost:{port}/"], capture_output=True, timeout=15)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"hello through\n"


def test_wrong_ca_is_refused_by_the_client_and_logged(spawn, tmp_path, pki, backend):
    proc, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend))
    r = openssl(["s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.other_ca),
                 "-verify_return_error", "-servername", "localhost"], stdin=b"")
    assert r.returncode != 0
    assert b"unable to get local issuer certificate" in r.stdout + r.stderr
    proc.wait_for(r"TLS handshake with client .* failed: the peer does not trust our "
                  r"certificate \(unknown CA\)")
    assert backend.connections == 0


def test_plaintext_to_tls_port_is_logged(spawn, tmp_path, pki, backend):
    proc, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100) == b""  # closed, no traceback or garbage sent back
    proc.wait_for(r"plaintext sent to a TLS port \(first bytes 'GET / HT'\)")


def test_no_shared_cipher_is_logged(spawn, tmp_path, pki, backend):
    proc, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend))
    r = openssl(["s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
                 "-cipher", "AES128-SHA", "-CAfile", str(pki.ca)])
    assert r.returncode != 0
    proc.wait_for(r"failed: no shared cipher")


def test_tls_below_minimum_is_refused(spawn, tmp_path, pki, backend):
    proc, (port,) = start_wrapper(spawn, tmp_path,
                                  server_tunnel(pki, backend, 'min_version = "1.3"'))
    r = openssl(["s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2", "-CAfile", str(pki.ca)])
    assert r.returncode != 0
    proc.wait_for(r"failed: the peer offered only TLS versions below our minimum")


# --- mTLS ---------------------------------------------------------------------------------

def test_mtls_accepted_with_a_client_certificate(spawn, tmp_path, pki, backend):
    more = f'client_ca = "{pki.ca}"\nallow_uri = ["spiffe://netkit/client"]'
    _, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend, more))
    code, out = s_client_exchange(["-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca),
                                   "-cert", str(pki.client_cert), "-key", str(pki.client_key),
                                   "-verify_return_error"], b"mutual\n")
    assert code == 0
    assert b"mutual" in out


def test_mtls_refuses_a_client_without_certificate(spawn, tmp_path, pki, backend):
    proc, (port,) = start_wrapper(spawn, tmp_path,
                                  server_tunnel(pki, backend, f'client_ca = "{pki.ca}"'))
    _, out = s_client_exchange(["-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca)],
                               b"no cert\n", timeout=3)
    assert b"no cert" not in out
    proc.wait_for(r"failed: the client sent no certificate, but one is required")
    assert backend.connections == 0


def test_mtls_refuses_a_certificate_from_another_ca(spawn, tmp_path, pki, backend):
    proc, (port,) = start_wrapper(spawn, tmp_path,
                                  server_tunnel(pki, backend, f'client_ca = "{pki.ca}"'))
    _, out = s_client_exchange(["-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca),
                                "-cert", str(pki.other_cert), "-key", str(pki.other_key)],
                               b"other ca\n", timeout=3)
    assert b"other ca" not in out
    proc.wait_for(r"failed: client certificate rejected: unable to get local issuer "
                  r"certificate \(unknown CA\)")
    assert backend.connections == 0


def test_mtls_allow_cn_refuses_other_names(spawn, tmp_path, pki, backend):
    more = f'client_ca = "{pki.ca}"\nallow_cn = ["someone-else"]'
    proc, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend, more))
    with tls_client(pki, port, cert=(pki.client_cert, pki.client_key)) as s:
        s.sendall(b"let me in")
        assert s.recv(100) == b""
    proc.wait_for(r"client certificate CN=client\.example .* is not allowed")
    assert backend.connections == 0


def test_mtls_allow_dns_wildcard(spawn, tmp_path, pki, backend):
    more = f'client_ca = "{pki.ca}"\nallow_dns = ["*.example"]'
    _, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend, more))
    with tls_client(pki, port, cert=(pki.client_cert, pki.client_key)) as s:
        s.sendall(b"wildcard")
        assert recv_until(s, b"wildcard") == b"wildcard"


# --- client mode, chains, bulk ------------------------------------------------------------

def chain(spawn, tmp_path, pki: DevPKI, backend: Backend, *, server_cert=None,
          client_ca: Path | None = None,
          more: str = "") -> tuple[ServerProcess, int, ServerProcess]:
    """plaintext -> A (client mode) -> TLS -> B (server mode) -> backend."""
    cert, key = server_cert or (pki.server_cert, pki.server_key)
    b, (b_port,) = start_wrapper(spawn, tmp_path, f"""
[[tls.tunnel]]
listen = ["127.0.0.1:0"]
forward = "{backend.address}"
cert = "{cert}"
key = "{key}"
""", name="b.toml")
    a, (a_port,) = start_wrapper(spawn, tmp_path, f"""
[[tls.tunnel]]
mode = "client"
listen = ["127.0.0.1:0"]
forward = "127.0.0.1:{b_port}"
server_name = "localhost"
ca = "{client_ca or pki.ca}"
{more}
""", name="a.toml")
    return a, a_port, b


def test_client_mode_half_close_reaches_the_backend(spawn, tmp_path, pki, backend):
    _, port, _ = chain(spawn, tmp_path, pki, backend)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"half")
        s.shutdown(socket.SHUT_WR)  # EOF one way (TCP FIN, then TLS close_notify) ...
        # ... and the other way keeps flowing: the backend saw EOF and answered after it
        assert recv_until(s, b"[eof]") == b"half[eof]"


def test_client_mode_refuses_an_expired_backend_certificate(spawn, tmp_path, pki, backend):
    a, port, _ = chain(spawn, tmp_path, pki, backend,
                       server_cert=(pki.expired_cert, pki.expired_key))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"x")
        assert s.recv(10) == b""
    a.wait_for(r"TLS handshake with server .* failed: server certificate rejected: "
               r"certificate has expired")
    assert backend.connections == 0


def test_client_mode_refuses_a_backend_from_an_unknown_ca(spawn, tmp_path, pki, backend):
    a, port, _ = chain(spawn, tmp_path, pki, backend, client_ca=pki.other_ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"x")
        assert s.recv(10) == b""
    a.wait_for(r"server certificate rejected: unable to get local issuer certificate "
               r"\(unknown CA\)")


def test_100_mb_through_two_tunnels_arrive_byte_identical(spawn, tmp_path, pki, backend):
    _, port, _ = chain(spawn, tmp_path, pki, backend)
    block = os.urandom(1 << 20)
    total = 100 << 20
    sent_hash = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        def send() -> None:
            for i in range(total // len(block)):
                chunk = block[i % 7:] + block[:i % 7]  # rotate: no two MiB alike in place
                sent_hash.update(chunk)
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send)
        t.start()
        got = hashlib.sha256()
        n = 0
        tail = b""
        while True:
            data = s.recv(1 << 20)
            if not data:
                break
            n += len(data)
            tail = (tail + data)[-5:]
            got.update(data)
        t.join()
    assert n == total + 5 and tail == b"[eof]"
    # the echo adds "[eof]" after the stream; hash the stream alone
    assert backend.received == total
    expect = hashlib.sha256()
    for i in range(total // len(block)):
        expect.update(block[i % 7:] + block[:i % 7])
    expect.update(b"[eof]")
    assert got.hexdigest() == expect.hexdigest()


def test_slow_backend_does_not_make_memory_grow(spawn, tmp_path, pki, backend):
    a, port, b = chain(spawn, tmp_path, pki, backend)
    backend.paused.set()  # the backend stops reading
    rss_before = [_rss(p.proc.pid) for p in (a, b)]
    sent = 0
    block = b"x" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.setblocking(False)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and sent < 200 << 20:
            try:
                sent += s.send(block)
            except BlockingIOError:
                time.sleep(0.01)
        rss_after = [_rss(p.proc.pid) for p in (a, b)]
        # Kernel buffers on loopback may hold tcp_rmem's maximum (32 MiB here) per socket,
        # so the client's count is only bounded loosely: it must block before 200 MiB.
        # What we hold is bounded tightly: the wrappers' memory stays flat.
        assert sent < 200 << 20, (sent, rss_before, rss_after)
        for before, after in zip(rss_before, rss_after, strict=True):
            assert after - before < 24 << 20, (sent, rss_before, rss_after)
        backend.paused.clear()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# --- SNI, PROXY protocol ------------------------------------------------------------------

def test_sni_chooses_certificate_and_backend(spawn, tmp_path, pki, make_backend):
    one, two = make_backend("echo"), make_backend("echo")
    a_cert, a_key = certs.issue(pki.dir, ["a.example"], stem="a")
    more = f"""
[[tls.tunnel.route]]
server_name = "a.example"
cert = "{a_cert}"
key = "{a_key}"
forward = "{two.address}"
"""
    _, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, one, more))
    with tls_client(pki, port, server_name="a.example") as s:
        assert s.getpeercert()["subject"] == ((("commonName", "a.example"),),)
        s.sendall(b"to two")
        assert recv_until(s, b"to two") == b"to two"
    with tls_client(pki, port, server_name="localhost") as s:
        s.sendall(b"to one")
        assert recv_until(s, b"to one") == b"to one"
    assert (one.connections, two.connections) == (1, 1)


def test_proxy_protocol_in_and_v2_out_carry_the_client_address(spawn, tmp_path, pki, backend):
    more = 'accept_proxy = true\nsend_proxy = "v2"'
    _, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend, more))
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(proxy.encode_v1(("203.0.113.7", 40000), ("127.0.0.1", port)))
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"hi")
            recv_until(s, b"hi")
    header, used = proxy.decode(backend.first[0])
    assert header.version == 2 and header.source == ("203.0.113.7", 40000)
    assert backend.first[0][used:] in (b"", b"hi")


def test_bad_proxy_header_is_refused_and_logged(spawn, tmp_path, pki, backend):
    proc, (port,) = start_wrapper(spawn, tmp_path,
                                  server_tunnel(pki, backend, "accept_proxy = true"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"PROXY TCP4 1.2.3.4 nonsense\r\n")
        assert s.recv(10) == b""
    proc.wait_for(r"bad PROXY header: malformed PROXY v1 header")


# --- limits, reload, shutdown -------------------------------------------------------------

def test_idle_timeout_closes_a_silent_connection(spawn, tmp_path, pki, backend):
    more = '[tls.tunnel.limits]\nidle_timeout = "0.5s"'
    proc, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend, more))
    with tls_client(pki, port) as s:
        s.sendall(b"ping")
        assert recv_until(s, b"ping") == b"ping"
        t0 = time.monotonic()
        assert s.recv(10) == b""
        assert 0.3 < time.monotonic() - t0 < 5
    proc.wait_for(r"idle timeout")


def test_connection_limit_refuses_the_excess_cleanly(spawn, tmp_path, pki, backend):
    more = "[tls.tunnel.limits]\nmax_connections = 2"
    proc, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend, more))
    held = [tls_client(pki, port) for _ in range(2)]
    for i, s in enumerate(held):
        s.sendall(b"%d" % i)
        assert recv_until(s, b"%d" % i) == b"%d" % i
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert s.recv(10) == b""  # FIN, not a reset or a hang
    proc.wait_for(r"refused 127\.0\.0\.1:\d+: at the limit of 2 connections")
    for s in held:
        s.close()


def test_sighup_reloads_certificates_without_cutting_connections(spawn, tmp_path, pki, backend):
    live = tmp_path / "live"
    live.mkdir()
    first, first_key = certs.issue(pki.dir, ["localhost"], stem="gen1")
    shutil.copy(first, live / "cert.pem")
    shutil.copy(first_key, live / "key.pem")
    body = server_tunnel(pki, backend).replace(str(pki.server_cert), str(live / "cert.pem"))
    body = body.replace(str(pki.server_key), str(live / "key.pem"))
    body = body.replace('watch_interval = "0.2s"', "watch_interval = 0")
    proc, (port,) = start_wrapper(spawn, tmp_path, body)
    old = tls_client(pki, port)
    serial1 = _serial(old)
    second, second_key = certs.issue(pki.dir, ["localhost"], stem="gen2")
    shutil.copy(second, live / "cert.pem")
    shutil.copy(second_key, live / "key.pem")
    mark = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"configuration reloaded", start=mark)
    with tls_client(pki, port) as new:
        assert _serial(new) != serial1
    old.sendall(b"still here")  # the connection made before the reload is not cut
    assert recv_until(old, b"still here") == b"still here"
    # a broken config on SIGHUP is reported and the running one kept
    (tmp_path / "tls.toml").write_text(body + "\nbogus_key = 1\n")
    mark = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"reload failed, keeping the running configuration", start=mark)
    proc.wait_for(r"tls\.tunnel\[0\]\.bogus_key: unknown key", start=mark)
    with tls_client(pki, port) as again:
        assert _serial(again) != serial1
    old.close()


def test_certificate_file_change_is_picked_up_without_a_signal(spawn, tmp_path, pki, backend):
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(pki.server_cert, live / "cert.pem")
    shutil.copy(pki.server_key, live / "key.pem")
    body = server_tunnel(pki, backend).replace(str(pki.server_cert), str(live / "cert.pem"))
    body = body.replace(str(pki.server_key), str(live / "key.pem"))
    proc, (port,) = start_wrapper(spawn, tmp_path, body)
    with tls_client(pki, port) as s:
        serial1 = _serial(s)
    new_cert, new_key = certs.issue(pki.dir, ["localhost"], stem="rotated")
    # replace the way certbot does: write beside, rename over (atomic)
    for src, dst in ((new_key, live / "key.pem"), (new_cert, live / "cert.pem")):
        shutil.copy(src, str(dst) + ".tmp")
        os.replace(str(dst) + ".tmp", dst)
    proc.wait_for(r"certificate files changed: reloaded")
    with tls_client(pki, port) as s:
        assert _serial(s) != serial1


def _serial(s: ssl.SSLSocket) -> int:
    from cryptography import x509
    der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_sigterm_drains_then_exits_zero(spawn, tmp_path, pki, backend):
    proc, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend))
    s = tls_client(pki, port)
    s.sendall(b"before")
    assert recv_until(s, b"before") == b"before"
    proc.signal(signal.SIGTERM)
    proc.wait_for(r"SIGTERM received, draining")
    time.sleep(0.3)
    assert proc.proc.poll() is None  # still serving the open connection
    s.sendall(b"during")
    assert recv_until(s, b"during") == b"during"
    s.close()
    assert proc.proc.wait(10) == 0
    proc.wait_for(r"tls\[web\]: served 1 connections \(0 refused, 0 TLS failures, 0 denied by "
                  r"rules, 0 timeouts\), \d+ bytes in, \d+ bytes out")


def test_check_config_names_a_missing_certificate(tmp_path, pki, backend):
    conf = tmp_path / "bad.toml"
    conf.write_text(server_tunnel(pki, backend).replace(str(pki.server_cert),
                                                        str(tmp_path / "missing.pem")))
    r = subprocess.run([sys.executable, "-m", MODULE, "--config",
                        str(conf), "--check-config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr == f"tls[web]: cert: {tmp_path / 'missing.pem'}: file not found\n"


@pytest.mark.parametrize("workers", [2])
def test_workers_share_the_port_and_a_dead_worker_is_replaced(spawn, tmp_path, pki, backend,
                                                               workers):
    proc, ports = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend),
                                extra=["--workers", str(workers)], count=workers)
    assert len(set(ports)) == 1  # one port, bound once per worker with SO_REUSEPORT
    port = ports[0]
    pids = [int(m) for m in _worker_pids(proc, workers)]
    os.kill(pids[0], signal.SIGKILL)
    proc.wait_for(rf"worker \d \(pid {pids[0]}\) exited with -9; restarting it")
    for _ in range(100):  # the replacement is the (workers + 1)-th worker started
        if len(re.findall(r"worker \d started as pid \d+", proc.log)) > workers:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(proc.log)
    for i in range(20):  # whichever worker the kernel picks, every connection is served
        with tls_client(pki, port) as s:
            s.sendall(b"w%d" % i)
            assert recv_until(s, b"w%d" % i) == b"w%d" % i
    assert proc.stop() == 0


def _worker_pids(proc: ServerProcess, n: int) -> list[str]:
    for _ in range(100):
        pids = re.findall(r"worker \d started as pid (\d+)", proc.log)
        if len(pids) >= n:
            return pids[:n]
        time.sleep(0.05)
    raise AssertionError(proc.log)


def test_plain_asyncio_loop_alpn_and_json_logs(spawn, tmp_path, pki, backend):
    body = server_tunnel(pki, backend, 'alpn = ["h2", "http/1.1"]')
    proc, (port,) = start_wrapper(spawn, tmp_path, body,
                                  extra=["--loop", "asyncio", "--log-format", "json"])
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        s.sendall(b"json")
        assert recv_until(s, b"json") == b"json"
    import json
    entries = [json.loads(line) for line in proc.lines if line.startswith("{")]
    assert any("listening on 127.0.0.1:" in e["msg"] and e["level"] == "info"
               and e["logger"] == "netkit.transport" for e in entries), proc.log
