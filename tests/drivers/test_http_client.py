"""The HTTP client against nginx, our own server, and our TLS wrapper for HTTPS."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netkit.clients.http import Client, Timeout
from netkit.errors import ConnectError, ProtocolError, ReadTimeout, TLSError
from tests.peers.test_tls_wrapper import start_wrapper
from tests.support.fixtures import free_port, need, wait_listening


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = need("nginx")
    d = tmp_path_factory.mktemp("nginx")
    d.chmod(0o755)
    www = d / "www"
    www.mkdir(mode=0o755)
    (www / "index.html").write_text("<h1>nginx home</h1>\n" * 50)
    (www / "big.txt").write_text("line of text\n" * 100_000)
    (www / "blob.bin").write_bytes(bytes(range(256)) * (12 << 12))  # 12 MiB, Content-Length
    port = free_port()
    # workers as root: pytest's temp dirs are 0700, so nobody could not read the files
    (d / "nginx.conf").write_text(f"""user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  gzip on; gzip_min_length 0; gzip_types text/plain;
  server {{
    listen 127.0.0.1:{port};
    root {www};
    location = /moved {{ return 301 /index.html; }}
    location = /post-here {{ return 302 /index.html; }}
    location = /loop {{ return 302 /loop; }}
  }}
}}
""")
    proc = subprocess.Popen([binary, "-c", str(d / "nginx.conf"), "-p", str(d), "-g",
                             "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(proc, port, "nginx")
    yield port
    proc.terminate()
    proc.wait(10)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


@pytest.mark.peer
def test_keep_alive_reuse_and_gzip(nginx):
    async def main() -> tuple[list, int]:
        async with Client() as c:
            rs = [await c.get(f"http://127.0.0.1:{nginx}/big.txt") for _ in range(3)]
            return rs, c.connections_made
    rs, made = run(main())
    assert made == 1  # one connection, reused
    for r in rs:
        assert r.status == 200 and r.content == b"line of text\n" * 100_000
        assert r.headers.get(b"content-encoding") == b"gzip"  # decoded for us


@pytest.mark.peer
def test_redirects_and_their_limit(nginx):
    async def main():  # type: ignore[no-untyped-def]
        async with Client() as c:
            moved = await c.get(f"http://127.0.0.1:{nginx}/moved")
            posted = await c.post(f"http://127.0.0.1:{nginx}/post-here", content=b"x=1")
            with pytest.raises(ProtocolError, match="more than 10 redirects"):
                await c.get(f"http://127.0.0.1:{nginx}/loop")
            return moved, posted
    moved, posted = run(main())
    assert moved.status == 200 and [r.status for r in moved.history] == [301]
    assert moved.url.endswith("/index.html") and b"nginx home" in moved.content
    assert posted.status == 200 and posted.history[0].status == 302  # POST became GET


@pytest.mark.peer
def test_sync_face_against_nginx(nginx, tmp_path):
    """The synchronous client on real nginx: the response helpers, HEAD and OPTIONS, a
    12 MiB body with Content-Length streamed to disk (larger than any parser limit),
    and TooManyRedirects naming the URL."""
    from netkit.clients.http import SyncClient, TooManyRedirects
    base = f"http://127.0.0.1:{nginx}"
    with SyncClient(base_url=base) as c:
        r = c.get("/index.html")
        assert r.status_code == 200 and r.http_version == "HTTP/1.1"
        assert r.headers["content-type"] == "text/html" and r.encoding is None
        assert r.text.startswith("<h1>nginx home</h1>") and r.headers["Server"]
        identity = {"Accept-Encoding": "identity"}  # else nginx gzips it (chunked)
        head = c.head("/blob.bin", headers=identity)
        assert head.content == b"" and head.headers["Content-Length"] == str(12 << 20)
        with c.stream("GET", "/blob.bin", headers=identity) as streamed, \
                (tmp_path / "b").open("wb") as f:
            for chunk in streamed.iter_bytes():
                f.write(chunk)
        assert (tmp_path / "b").read_bytes() == bytes(range(256)) * (12 << 12)
        assert c.options("/index.html").status_code in (200, 405)
        with pytest.raises(TooManyRedirects, match=f"GET {base}/loop: more than 10"):
            c.get("/loop")
        assert c.connections_made <= 2


def test_chunked_responses_and_stale_connection_retry(spawn):
    proc = spawn("netkit.servers.http", ["--listen", "127.0.0.1:0", "--app",
                                         "tests.support.apps:starlette_app",
                                         "--set", "http.limits.idle_timeout=0.3"])
    ((_, port),) = proc.listening(1)

    async def main():  # type: ignore[no-untyped-def]
        async with Client() as c:
            first = await c.get(f"http://127.0.0.1:{port}/numbers")
            await asyncio.sleep(0.8)  # the server closes the idle pooled connection
            second = await c.get(f"http://127.0.0.1:{port}/numbers")
            return first, second, c.connections_made
    first, second, made = run(main())
    assert first.content == second.content == b"0\n1\n2\n3\n4\n"
    assert made == 2  # the stale one was noticed and replaced, the request retried


def test_decompression_bomb_is_capped(spawn):
    proc = spawn("netkit.servers.http", ["--listen", "127.0.0.1:0",
                                         "--app", "tests.support.apps:bomb",
                                         "--set", "http.app_type=native"])
    ((_, port),) = proc.listening(1)

    async def main() -> None:
        async with Client(max_decoded=1 << 20) as c:
            await c.get(f"http://127.0.0.1:{port}/")
    with pytest.raises(ProtocolError,
                       match=r"larger than 1048576 bytes \(the client.s max_decoded\)"):
        run(main())


def https_in_front_of(port: int, spawn, tmp_path: Path, pki) -> int:  # type: ignore[no-untyped-def]
    """Our TLS wrapper (server mode, the test CA's localhost certificate) before `port`."""
    body = f"""
[[tls.tunnel]]
listen = ["127.0.0.1:0"]
forward = "127.0.0.1:{port}"
cert = "{pki.server_cert}"
key = "{pki.server_key}"
"""
    _, (tls_port,) = start_wrapper(spawn, tmp_path, body)
    return tls_port


@pytest.mark.peer
def test_https_verified_and_wrong_ca_refused(spawn, tmp_path, pki, nginx):
    port = https_in_front_of(nginx, spawn, tmp_path, pki)

    async def get(verify):  # type: ignore[no-untyped-def]
        async with Client(verify=verify) as c:
            return await c.get(f"https://localhost:{port}/index.html")
    assert b"nginx home" in run(get(pki.ca)).content
    with pytest.raises(TLSError, match="unknown CA") as caught:
        run(get(pki.other_ca))
    assert str(caught.value).startswith(f"GET https://localhost:{port}/index.html: ")


def test_read_timeout_on_a_silent_server():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()

        async def main() -> None:
            async with Client(timeout=Timeout(read=0.3)) as c:
                await c.get(f"http://127.0.0.1:{silent.getsockname()[1]}/")
        t0 = time.monotonic()
        with pytest.raises(ReadTimeout):
            run(main())
        assert time.monotonic() - t0 < 3


def test_connection_refused_is_reported():
    async def main() -> None:
        async with Client() as c:
            await c.get(f"http://127.0.0.1:{free_port()}/")
    with pytest.raises(ConnectError):
        run(main())


@pytest.mark.peer
def test_curl_like_command(nginx, tmp_path):
    cmd = [sys.executable, "-m", "netkit.clients.http"]
    r = subprocess.run([*cmd, "-i", f"http://127.0.0.1:{nginx}/index.html"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    out = tmp_path / "page.html"
    r = subprocess.run([*cmd, "-L", "-o", str(out), f"http://127.0.0.1:{nginx}/moved"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0 and out.read_bytes() == Path(out).read_bytes()
    assert b"nginx home" in out.read_bytes()
    r = subprocess.run([*cmd, f"http://127.0.0.1:{nginx}/missing"], capture_output=True,
                       timeout=30)
    assert r.returncode == 0 and b"404" in r.stdout  # as curl: an HTTP answer is success
    r = subprocess.run([*cmd, "-f", f"http://127.0.0.1:{nginx}/missing"],
                       capture_output=True, timeout=30)
    assert r.returncode == 22 and r.stdout == b""  # curl -f: 22, no body
    assert b"returned error: 404" in r.stderr
    r = subprocess.run([*cmd, f"http://127.0.0.1:{free_port()}/"], capture_output=True,
                       timeout=30)
    assert r.returncode == 7  # could not connect
    r = subprocess.run([*cmd, "ftp://x/"], capture_output=True, timeout=30)
    assert r.returncode == 3  # a URL it cannot use


def test_our_server_is_a_fine_peer_too(spawn, tmp_path):
    (tmp_path / "f.txt").write_text("from netkit\n")
    proc = spawn("netkit.servers.http", ["--listen", "127.0.0.1:0", "--set",
                                         f"http.root={tmp_path}"])
    ((_, port),) = proc.listening(1)

    async def main():  # type: ignore[no-untyped-def]
        async with Client() as c:
            return [await c.get(f"http://127.0.0.1:{port}/f.txt") for _ in range(5)], \
                c.connections_made
    rs, made = run(main())
    assert all(r.content == b"from netkit\n" for r in rs) and made == 1



def test_cancelled_or_timed_out_requests_leave_nothing_in_the_pool():
    import threading

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        held: list[socket.socket] = []

        def serve() -> None:  # sends half a response, then nothing
            for _ in range(2):
                conn, _ = srv.accept()
                held.append(conn)
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")

        threading.Thread(target=serve, daemon=True).start()

        async def main() -> dict:
            async with Client() as c:
                with pytest.raises(TimeoutError):
                    await c.get(f"http://127.0.0.1:{port}/", timeout=Timeout(total=0.3))
                task = asyncio.ensure_future(c.get(f"http://127.0.0.1:{port}/"))
                await asyncio.sleep(0.2)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                return {k: list(v) for k, v in c.pool.items()}
        assert all(not conns for conns in run(main()).values())
        for conn in held:
            conn.close()


@pytest.fixture(scope="module")
def tinyproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = need("tinyproxy")
    d = tmp_path_factory.mktemp("tinyproxy")
    port = free_port()
    # no ConnectPort lines: CONNECT is allowed to any port (our TLS wrapper's is random)
    (d / "tinyproxy.conf").write_text(f"""Port {port}
Listen 127.0.0.1
Timeout 30
LogLevel Info
MaxClients 20
Allow 127.0.0.1
PidFile "{d}/tinyproxy.pid"
""")
    proc = subprocess.Popen([binary, "-d", "-c", str(d / "tinyproxy.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(proc, port, "tinyproxy")
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.mark.peer
def test_through_an_http_proxy_both_schemes(spawn, tmp_path, pki, nginx, tinyproxy):
    tls_port = https_in_front_of(nginx, spawn, tmp_path, pki)

    async def main():  # type: ignore[no-untyped-def]
        async with Client(proxy=f"127.0.0.1:{tinyproxy}", verify=pki.ca) as c:
            plain = await c.get(f"http://127.0.0.1:{nginx}/index.html")
            tunneled = await c.get(f"https://localhost:{tls_port}/index.html")
            return plain, tunneled
    plain, tunneled = run(main())
    assert b"nginx home" in plain.content and b"nginx home" in tunneled.content
    assert plain.headers.get(b"via") is not None  # tinyproxy added itself: it was used

    async def wrong_ca() -> None:
        async with Client(proxy=f"127.0.0.1:{tinyproxy}", verify=pki.other_ca) as c:
            await c.get(f"https://localhost:{tls_port}/index.html")
    with pytest.raises(TLSError, match="unknown CA"):  # verified end to end, not by the proxy
        run(wrong_ca())


@pytest.mark.peer
def test_streaming_download_and_upload(nginx, spawn):
    proc = spawn("netkit.servers.http", ["--listen", "127.0.0.1:0", "--app",
                                         "tests.support.apps:starlette_app"])
    ((_, port),) = proc.listening(1)

    async def upload_body():  # type: ignore[no-untyped-def]
        for i in range(50):  # length unknown in advance: sent chunked
            yield b"%04d" % i * 1000

    async def main():  # type: ignore[no-untyped-def]
        async with Client() as c:
            got = 0
            async with c.stream("GET", f"http://127.0.0.1:{nginx}/big.txt") as r:
                async for chunk in r.aiter_bytes():
                    got += len(chunk)
            pooled_after_full_read = len(c.pool[("http", "127.0.0.1", nginx)])
            async with c.stream("GET", f"http://127.0.0.1:{nginx}/big.txt") as r:
                async for _ in r.aiter_bytes():
                    break  # stop early: that connection cannot be reused
            pooled_after_early_exit = len(c.pool[("http", "127.0.0.1", nginx)])
            echoed = await c.post(f"http://127.0.0.1:{port}/echo", content=upload_body())
            return got, pooled_after_full_read, pooled_after_early_exit, echoed
    got, full, early, echoed = run(main())
    assert got == len(b"line of text\n") * 100_000
    assert full == 1 and early == 0
    assert echoed.content == b"".join(b"%04d" % i * 1000 for i in range(50))


def test_retry_policy_with_retry_after():
    import threading

    from netkit.clients.http import Retry

    seen: list[float] = []
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]

        def serve() -> None:
            for i in range(3):
                conn, _ = srv.accept()
                with conn:
                    conn.recv(4096)
                    seen.append(time.monotonic())
                    if i < 2:
                        conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0.2\r\n"
                                     b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                    else:
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

        threading.Thread(target=serve, daemon=True).start()

        async def main():  # type: ignore[no-untyped-def]
            async with Client(retry=Retry(attempts=3)) as c:
                return await c.get(f"http://127.0.0.1:{port}/")
        r = run(main())
    assert r.status == 200 and r.content == b"ok" and len(seen) == 3
    assert seen[1] - seen[0] >= 0.18 and seen[2] - seen[1] >= 0.18  # Retry-After honoured
    assert Retry(backoff=0.5).delay(2, None) == 2.0 and Retry().delay(0, b"7") == 7.0
