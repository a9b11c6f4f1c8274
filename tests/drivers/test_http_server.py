"""The HTTP server's static files, with curl and with raw sockets for what curl will not send."""

from __future__ import annotations

import contextlib
import email.utils
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engines.test_http_codec import SMUGGLING
from tests.support.fixtures import ServerProcess, need

MODULE = "netkit.servers.http"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "docs").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>\n")
    (root / "docs" / "a.txt").write_text("alpha\n")
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    (tmp_path / "secret.txt").write_text("outside the root\n")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.fixture
def server(spawn, site) -> tuple[ServerProcess, int]:
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", f"http.root={site}",
                          "--set", "http.header_timeout=0.5"])
    ((_, port),) = proc.listening(1)
    return proc, port


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([need("curl"), "-sS", *args], capture_output=True, timeout=30)


@pytest.mark.peer
def test_get_head_and_keep_alive(server, site):
    proc, port = server
    r = curl("-i", f"http://127.0.0.1:{port}/")
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"<h1>home</h1>\n"
    assert b"Content-Type: text/html; charset=utf-8" in head and b"\r\nDate: " in head
    assert b"\r\nServer: netkit" in head and b"\r\nETag: " in head
    r = curl("-I", f"http://127.0.0.1:{port}/docs/a.txt")
    assert b"Content-Length: 6" in r.stdout and r.stdout.endswith(b"\r\n\r\n")
    r = curl("-v", f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/docs/a.txt")
    assert b"Re-using existing connection" in r.stderr and r.stdout.endswith(b"alpha\n")
    proc.wait_for(r'"GET /docs/a.txt HTTP/1.1" 200 6 "-" "curl/[\d.]+" \d+\.\d{3}')


@pytest.mark.peer
def test_large_file_and_ranges(server, site):
    _, port = server
    data = (site / "big.bin").read_bytes()
    assert curl(f"http://127.0.0.1:{port}/big.bin").stdout == data
    r = curl("-i", "-r", "100-199", f"http://127.0.0.1:{port}/big.bin")
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206") and body == data[100:200]
    assert f"Content-Range: bytes 100-199/{len(data)}".encode() in head
    assert curl("-r", "-10", f"http://127.0.0.1:{port}/big.bin").stdout == data[-10:]
    r = curl("-i", "-r", f"{len(data)}-", f"http://127.0.0.1:{port}/big.bin")
    assert r.stdout.startswith(b"HTTP/1.1 416") and \
        f"Content-Range: bytes */{len(data)}".encode() in r.stdout


@pytest.mark.peer
def test_conditional_requests_give_304(server):
    _, port = server
    head = curl("-I", f"http://127.0.0.1:{port}/docs/a.txt").stdout
    etag = next(line.split(b": ", 1)[1] for line in head.split(b"\r\n")
            if line.startswith(b"ETag")).decode()
    modified = next(line.split(b": ", 1)[1] for line in head.split(b"\r\n")
                if line.startswith(b"Last-Modified")).decode()
    for header in (f"If-None-Match: {etag}", f"If-Modified-Since: {modified}"):
        r = curl("-i", "-H", header, f"http://127.0.0.1:{port}/docs/a.txt")
        assert r.stdout.startswith(b"HTTP/1.1 304"), header
        assert r.stdout.endswith(b"\r\n\r\n")  # no body
    r = curl("-i", "-H", 'If-None-Match: "other"', f"http://127.0.0.1:{port}/docs/a.txt")
    assert r.stdout.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt",
                                  "/docs/..%2f..%2fsecret.txt", "/escape", "/%00", "/missing"])
@pytest.mark.peer
def test_nothing_outside_the_root(server, path):
    _, port = server
    r = curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
             f"http://127.0.0.1:{port}{path}")
    assert r.stdout == b"404"


@pytest.mark.peer
def test_directory_redirect_and_no_listing_by_default(server):
    _, port = server
    r = curl("-i", f"http://127.0.0.1:{port}/docs")
    assert r.stdout.startswith(b"HTTP/1.1 301") and b"Location: /docs/\r\n" in r.stdout
    assert curl("-o", "/dev/null", "-w", "%{http_code}",
                f"http://127.0.0.1:{port}/docs/").stdout == b"404"


@pytest.mark.peer
def test_listing_when_enabled(spawn, site):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", f"http.root={site}",
                          "--set", "http.listing=true"])
    ((_, port),) = proc.listening(1)
    assert b'<a href="a.txt">a.txt</a>' in curl(f"http://127.0.0.1:{port}/docs/").stdout


def raw(port: int, data: bytes, *, wait: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except TimeoutError:
            pass
        return out


def test_pipelined_requests_are_answered_in_order(server):
    _, port = server
    req = b"GET /docs/a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    out = raw(port, req + b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + req.replace(
        b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert out.index(b"alpha") < out.index(b"Content-Length: 14") < out.rindex(b"alpha")


@pytest.mark.parametrize("data,status", [
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
     400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    (b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
    (b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
])
@pytest.mark.peer
def test_bad_requests_get_their_status_and_the_server_lives_on(server, data, status):
    _, port = server
    out = raw(port, data)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:80]
    assert b"Traceback" not in out
    assert curl(f"http://127.0.0.1:{port}/docs/a.txt").stdout == b"alpha\n"


@pytest.mark.parametrize(("data", "status"), [
    (b"GET /docs/a.txt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
     b"\x81\x05hello", 200),
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01", 405),
])
def test_upgrade_and_connect_get_an_http_answer_and_a_close_not_silence(server, data, status):
    _, port = server
    t0 = time.monotonic()
    out = raw(port, data, wait=5)  # returns when the server closes
    assert out.startswith(b"HTTP/1.1 %d " % status) and b"Connection: close\r\n" in out
    assert time.monotonic() - t0 < 3


def test_slowloris_gets_408(server):
    _, port = server
    t0 = time.monotonic()
    out = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", wait=5)
    assert out.startswith(b"HTTP/1.1 408 ") and time.monotonic() - t0 < 3


@pytest.fixture
def asgi_server(spawn) -> tuple[ServerProcess, int]:
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--app", "tests.support.apps:starlette_app"])
    ((_, port),) = proc.listening(1)
    return proc, port


@pytest.mark.peer
def test_asgi_app_with_starlette(asgi_server, tmp_path):
    proc, port = asgi_server
    assert curl(f"http://127.0.0.1:{port}/hello?name=netkit").stdout == b"hello netkit\n"
    upload = tmp_path / "up.bin"
    upload.write_bytes(os.urandom(300_000))
    r = curl("-i", "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{upload}",
             f"http://127.0.0.1:{port}/echo")
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"x-length: 300000" in head.lower()
    assert body == upload.read_bytes()
    r = curl("-i", f"http://127.0.0.1:{port}/numbers")
    assert b"Transfer-Encoding: chunked" in r.stdout and r.stdout.endswith(b"0\n1\n2\n3\n4\n")
    r = curl("-v", f"http://127.0.0.1:{port}/hello", f"http://127.0.0.1:{port}/numbers")
    assert b"Re-using existing connection" in r.stderr
    r = curl("-i", f"http://127.0.0.1:{port}/boom")
    assert r.stdout.startswith(b"HTTP/1.1 500") and b"Traceback" not in r.stdout
    proc.wait_for(r"the application failed on GET /boom")
    assert curl(f"http://127.0.0.1:{port}/hello").stdout == b"hello world\n"  # still serving


@pytest.mark.peer
def test_asgi_request_body_over_the_limit_gets_413(spawn):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--app", "tests.support.apps:starlette_app",
                          "--set", "http.max_body=1000"])
    ((_, port),) = proc.listening(1)
    url = f"http://127.0.0.1:{port}/echo"
    # known from Content-Length: the app never runs
    r = curl("-i", "--data-binary", "x" * 5000, url)
    assert r.stdout.startswith(b"HTTP/1.1 413") and b"Connection: close" in r.stdout
    # chunked: found out while the app reads; the server answers, not the app (no 500)
    r = curl("-i", "-H", "Transfer-Encoding: chunked", "--data-binary", "x" * 5000, url)
    assert r.stdout.startswith(b"HTTP/1.1 413")
    assert b"Internal Server Error" not in r.stdout
    r = curl("-i", "--data-binary", "x" * 1000, url)  # at the limit: fine
    assert r.stdout.startswith(b"HTTP/1.1 200") and r.stdout.endswith(b"x" * 1000)


@pytest.mark.peer
def test_asgi_header_with_crlf_is_refused_not_sent(spawn):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--app", "tests.support.apps:injector"])
    ((_, port),) = proc.listening(1)
    r = curl("-i", f"http://127.0.0.1:{port}/")
    assert r.stdout.startswith(b"HTTP/1.1 500")
    assert b"stolen" not in r.stdout and b"never" not in r.stdout
    proc.wait_for(r"CR or LF in a response header")


@pytest.mark.peer
def test_date_header_follows_the_clock(asgi_server):
    _, port = asgi_server
    dates = []
    for _ in range(2):
        r = curl("-sI", f"http://127.0.0.1:{port}/hello")
        line = next(x for x in r.stdout.split(b"\r\n") if x.startswith(b"Date: "))
        when = email.utils.parsedate_to_datetime(line[6:].decode()).timestamp()
        assert abs(when - time.time()) < 2
        dates.append(when)
        time.sleep(1.2)  # the line is remade each second by a timer, not per response
    assert dates[1] > dates[0]


def test_expect_100_continue(asgi_server):
    _, port = asgi_server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        out = b""
        while not out.endswith(b"hello"):
            out += s.recv(4096)
        assert out.startswith(b"HTTP/1.1 200")


@pytest.mark.peer
def test_native_handler(spawn):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--app", "tests.support.apps:native",
                          "--set", "http.app_type=native", "--set", "http.max_body=16"])
    ((_, port),) = proc.listening(1)
    assert curl(f"http://127.0.0.1:{port}/").stdout == b"native hello\n"
    assert curl("--data-binary", "shout", f"http://127.0.0.1:{port}/upper").stdout == b"SHOUT"
    r = curl("-i", "--data-binary", "x" * 100, f"http://127.0.0.1:{port}/upper")
    assert r.stdout.startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("app,hello,echo", [
    ("tests.support.apps:native", b"native hello\n", b"PING!"),
    ("tests.support.apps:starlette_app", b"hello world\n", b"ping!"),
])
def test_apps_keep_the_connection_and_answer_pipelined_requests_in_order(spawn, app, hello,
                                                                          echo):
    args = ["--set", "http.app_type=native"] if "native" in app else []
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--app", app, *args])
    ((_, port),) = proc.listening(1)
    path = b"/" if "native" in app else b"/hello"
    post = b"/upper" if "native" in app else b"/echo"
    get = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for _ in range(2):  # one after the other on one connection: kept alive
            s.sendall(get)
            out = b""
            while not out.endswith(hello):
                chunk = s.recv(4096)
                assert chunk, "the server closed a keep-alive connection"
                out += chunk
            assert out.startswith(b"HTTP/1.1 200") and b"Connection: close" not in out
    # bodiless, with a body, bodiless and last: one write, three answers in order, then EOF
    started = time.monotonic()
    out = raw(port, get + b"POST " + post + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
              b"\r\nping!" + get.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),
              wait=5)
    assert time.monotonic() - started < 4  # closed by the server after the third answer
    assert out.count(b"HTTP/1.1 200") == 3
    assert out.index(hello) < out.index(echo) < out.rindex(hello)


def test_app_that_cannot_be_loaded_is_a_config_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", MODULE, "--app", "tests.support.apps:nothing",
                        "--check-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "http.app: cannot load 'tests.support.apps:nothing'" in r.stderr


@pytest.mark.peer
def test_access_log_format_is_configurable(spawn, site):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", f"http.root={site}", "--set",
                          'http.access_log_format="{method} {path} -> {status} in {duration}s"'])
    ((_, port),) = proc.listening(1)
    curl(f"http://127.0.0.1:{port}/docs/a.txt")
    proc.wait_for(r"GET /docs/a\.txt -> 200 in \d+\.\d{3}s")
    bad = subprocess.run([sys.executable, "-m", MODULE, "--check-config", "--set",
                          'http.access_log_format="{nope}"'], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "unknown or malformed field 'nope'" in bad.stderr


def test_drain_does_not_wait_for_idle_keep_alive_connections(server):
    proc, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
        idle.sendall(b"GET /docs/a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"alpha\n"):
            answer += idle.recv(4096)  # answered; the connection now idles, kept alive
        t0 = time.monotonic()
        proc.signal(15)
        assert proc.proc.wait(8) == 0 and time.monotonic() - t0 < 3  # shutdown_timeout 10 s
        assert idle.recv(10) == b""


def test_slow_request_body_gets_408(spawn, site):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", f"http.root={site}",
                          "--set", "http.body_timeout=0.5"])
    ((_, port),) = proc.listening(1)
    t0 = time.monotonic()
    out = raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly a little",
              wait=5)
    assert out.startswith(b"HTTP/1.1 408 ") and time.monotonic() - t0 < 3
    proc.wait_for(r"request body not received in 0\.5 s")


@pytest.mark.parametrize("data,status,_message", SMUGGLING,
                         ids=[m for _, _, m in SMUGGLING])
def test_every_smuggling_shape_over_a_real_socket(server, data, status, _message):
    _, port = server
    out = raw(port, data)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:80]
    assert b"Connection: close" in out.split(b"\r\n\r\n")[0]  # and the connection ends


@pytest.mark.anyio
async def test_large_files_go_out_with_sendfile_and_nothing_leaks(site, monkeypatch):
    """In-process, to count os.sendfile calls: a slow reader forces the writability waits;
    a reader that leaves mid-file must not leave the watched descriptor or the file open."""
    import anyio

    from netkit.config import Address
    from netkit.servers.http import server as server_module

    calls = []
    real_sendfile = os.sendfile

    def counting_sendfile(*args):  # type: ignore[no-untyped-def]
        calls.append(args[2:])
        return real_sendfile(*args)

    monkeypatch.setattr(server_module.os, "sendfile", counting_sendfile)
    service = server_module.HTTPService(server_module.Config(
        root=site, listen=(Address("127.0.0.1", 0),)))
    await service.server.listen(service.config.listen)
    port = service.server.addresses[0].port
    big = os.urandom(24 << 20)  # beyond what loopback socket buffers take in one call
    (site / "huge.bin").write_bytes(big)
    fds_before = len(os.listdir("/proc/self/fd"))

    async def fetch(extra: bytes = b"", *, stop_after: int = 0) -> bytes:
        async with await anyio.connect_tcp("127.0.0.1", port) as s:
            await s.send(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
            out = b""
            with anyio.fail_after(20):
                while True:
                    out += await s.receive(65536)
                    head, _, body = out.partition(b"\r\n\r\n")
                    if stop_after and len(body) >= stop_after:
                        return out
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r")[0])
                    if len(body) == length:
                        return out
                    await anyio.sleep(0.0002)  # read slowly: the socket buffer fills

    try:
        head, _, body = (await fetch()).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and body == big
        assert len(calls) > 1  # it waited for the slow reader at least once
        calls.clear()
        head, _, body = (await fetch(b"Range: bytes=1000-2999999\r\n")).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 206") and body == big[1000:3000000]
        assert calls and calls[0][0] == 1000
        await fetch(stop_after=100_000)  # leaves mid-file
        with anyio.fail_after(5):
            while len(os.listdir("/proc/self/fd")) > fds_before:
                await anyio.sleep(0.01)
    finally:
        await service.drain(1)


@pytest.mark.peer
def test_workers_share_the_port_and_both_answer(spawn):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--app", "tests.support.apps:whoami",
                          "--set", "http.app_type=native", "--workers", "2"])
    ports = {port for _, port in proc.listening(2)}
    assert len(ports) == 1  # one port, bound once per worker with SO_REUSEPORT
    (port,) = ports
    pids = set()
    for _ in range(40):  # a new connection each: the kernel spreads them over the workers
        r = curl("-H", "Connection: close", f"http://127.0.0.1:{port}/")
        assert r.returncode == 0 and r.stdout.isdigit()
        pids.add(r.stdout)
    assert len(pids) == 2
    assert proc.stop() == 0


@pytest.mark.peer
def test_connections_over_the_limit_are_closed_unanswered(spawn, site):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", f"http.root={site}",
                          "--set", "http.limits.max_connections=1"])
    ((_, port),) = proc.listening(1)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as first:
        first.sendall(b"GET /docs/a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert first.recv(4096).startswith(b"HTTP/1.1 200")  # kept alive: holds the slot
        with socket.create_connection(("127.0.0.1", port), timeout=5) as second:
            second.sendall(b"GET /docs/a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            # closed, nothing sent back (a reset, if our request was left unread, is the same)
            with contextlib.suppress(ConnectionResetError):
                assert second.recv(4096) == b""
        proc.wait_for(r"http: refused 127.0.0.1:\d+: at the limit of 1 connections")
    # the slot is free again once the first connection is gone
    for _ in range(50):
        r = curl(f"http://127.0.0.1:{port}/docs/a.txt")
        if r.stdout == b"alpha\n":
            break
        time.sleep(0.05)
    assert r.stdout == b"alpha\n"


def test_idle_keep_alive_connections_are_closed_after_the_idle_timeout(spawn, site):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", f"http.root={site}",
                          "--set", "http.limits.idle_timeout=0.4"])
    ((_, port),) = proc.listening(1)
    request = b"GET /docs/a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for _ in range(4):  # busy: each request inside the window keeps it open
            s.sendall(request)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            time.sleep(0.15)
        t0 = time.monotonic()
        assert s.recv(4096) == b""  # then idle: the server closes it
        assert 0.1 < time.monotonic() - t0 < 3


def test_split_target_is_the_same_from_memory():
    from netkit.servers.http.app import _TARGETS, split_target

    for _ in range(2):
        assert split_target(b"/a%20b/c?q=%20") == ("/a b/c", b"/a%20b/c", b"q=%20")
    assert b"/a%20b/c?q=%20" in _TARGETS
    for i in range(1100):
        assert split_target(b"/%d?x" % i) == (f"/{i}", b"/%d" % i, b"x")
    assert len(_TARGETS) <= _TARGETS.max_entries


def test_max_body_above_one_mib_is_the_limit_enforced(spawn):
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--app", "tests.support.apps:native",
                          "--set", "http.app_type=native", "--set", 'http.max_body="2MiB"'])
    ((_, port),) = proc.listening(1)
    body = b"a" * (1536 * 1024)  # 1.5 MiB: over the codec's old fixed 1 MiB
    out = raw(port, b"POST /upper HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body) + body, wait=10)
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"A" * 1000)
    too_big = b"a" * (2 * 1024 * 1024 + 1)
    out = raw(port, b"POST /upper HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(too_big), wait=10)
    assert out.startswith(b"HTTP/1.1 413 ")


def get(port: int, target: bytes, extra: bytes = b"") -> bytes:
    """One GET on its own connection (closed after the answer)."""
    return raw(port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n"
               % (target, extra))


def test_odd_paths_and_ranges_get_404_and_416_never_a_traceback(server):
    proc, port = server
    long_segment = b"/" + b"a" * 300  # ENAMETOOLONG from the file system
    out = get(port, long_segment)
    assert out.startswith(b"HTTP/1.1 404 ")
    huge = b"9" * 5000  # past int()'s digit limit
    for spec, status in ((huge + b"-", 416), (b"0-" + huge, 206), (b"-" + huge, 206)):
        out = get(port, b"/docs/a.txt", b"Range: bytes=%s\r\n" % spec)
        assert out.startswith(b"HTTP/1.1 %d " % status), (spec[:8], out[:60])
    assert "Traceback" not in proc.log


def test_only_regular_files_are_served_and_a_fifo_does_not_block(server, site):
    _, port = server
    os.mkfifo(site / "pipe")
    t0 = time.monotonic()
    out = get(port, b"/pipe")
    assert out.startswith(b"HTTP/1.1 404 ") and time.monotonic() - t0 < 2
    assert get(port, b"/docs/a.txt").endswith(b"alpha\n")


def test_no_scheme_relative_redirect_and_absolute_form_targets(server):
    _, port = server
    out = get(port, b"//docs")
    assert out.startswith(b"HTTP/1.1 301 ") and b"\r\nLocation: /docs/\r\n" in out
    out = get(port, b"http://x/docs/a.txt")
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"alpha\n")


def test_dotfiles_are_hidden_unless_enabled(spawn, site):
    (site / ".env").write_text("SECRET=1\n")
    (site / "docs" / ".hidden").mkdir()
    (site / "docs" / ".hidden" / "x.txt").write_text("x\n")
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", f"http.root={site}",
                          "--set", "http.listing=true"])
    ((_, port),) = proc.listening(1)
    for target in (b"/.env", b"/docs/.hidden/x.txt", b"/%2eenv"):
        assert get(port, target).startswith(
            b"HTTP/1.1 404 "), target
    assert b".hidden" not in get(port, b"/docs/")
    proc2 = spawn(MODULE, ["--listen", "127.0.0.1:0", "--set", f"http.root={site}",
                           "--set", "http.hidden_files=true"])
    ((_, port2),) = proc2.listening(1)
    assert get(port2, b"/.env").endswith(b"SECRET=1\n")


def test_no_root_configured_serves_a_page_not_the_working_directory(spawn, tmp_path):
    (tmp_path / "secret.txt").write_text("do not serve\n")
    proc = spawn(MODULE, ["--listen", "127.0.0.1:0"], cwd=tmp_path)
    ((_, port),) = proc.listening(1)
    out = get(port, b"/")
    assert out.startswith(b"HTTP/1.1 200 ") and b"No <code>http.root</code>" in out
    assert get(port, b"/secret.txt").startswith(
        b"HTTP/1.1 404 ")


def test_app_type_auto_tells_asgi_from_native_and_refuses_neither(spawn, tmp_path):
    for app, body in (("tests.support.apps:native", b"native hello\n"),
                      ("tests.support.apps:starlette_app", None),
                      ("tests.support.apps:scheme", b"4\r\nhttp\r\n0\r\n\r\n")):
        proc = spawn(MODULE, ["--listen", "127.0.0.1:0", "--app", app])
        ((_, port),) = proc.listening(1)
        out = get(port, b"/")
        assert b"HTTP/1.1 500" not in out, (app, out[:80])
        if body:
            assert out.endswith(body)
        proc.stop()
    (tmp_path / "oddapp.py").write_text("def handler(a, b):\n    pass\n")
    r = subprocess.run([sys.executable, "-m", MODULE, "--app", "oddapp:handler",
                        "--check-config"], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert r.returncode == 2
    assert "is neither an ASGI 3 application (scope, receive, send) nor a native handler" \
        in r.stderr


def test_absolute_form_takes_the_host_from_the_target():
    from netkit.proto.http.codec import Headers, Request
    from netkit.servers.http.app import asgi_scope

    request = Request(b"GET", b"http://real.example:8080/p?q=1",
                      Headers([(b"Host", b"other.example"), (b"Accept", b"*/*")]))
    scope = asgi_scope(request, ("127.0.0.1", 1), ("127.0.0.1", 2))
    assert scope["path"] == "/p" and scope["query_string"] == b"q=1"
    assert scope["headers"] == [(b"host", b"real.example:8080"), (b"accept", b"*/*")]
