"""The HTTP forward proxy against netkit's HTTP server as the origin: forwarding, hop-by-hop
fields, Via, keep-alive and pipelining, CONNECT with half-close, the safety checks
(allow, deny_destinations, loops) and the errors (400, 403, 502, 504, 508)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from netkit.clients.http import Client
from netkit.testing import serve_in_thread
from netkit.testing.dns import DNSZones
from tests.support import badpeers

MIB = 1 << 20
BIG_MIB = int(os.environ.get("NETKIT_PROXY_TEST_MIB", "48"))


async def inspect(request: StarletteRequest) -> Response:
    body = await request.body()
    return JSONResponse({"method": request.method, "target": request.url.path,
                         "query": request.url.query, "headers": dict(request.headers),
                         "raw_headers": [[k.decode(), v.decode()] for k, v in
                                         request.headers.raw],
                         "length": len(body)},
                        headers={"Connection": "X-Hop", "X-Hop": "secret", "X-Kept": "yes"})


async def download(request: StarletteRequest) -> Response:
    mib = int(request.query_params["mib"])

    async def chunks():  # type: ignore[no-untyped-def]
        block = bytes(range(256)) * 4096
        for _ in range(mib):
            yield block
    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def upload(request: StarletteRequest) -> Response:
    n = 0
    async for chunk in request.stream():
        n += len(chunk)
    return JSONResponse({"received": n})


app = Starlette(routes=[Route("/inspect", inspect, methods=["GET", "POST", "HEAD"]),
                        Route("/download", download), Route("/upload", upload,
                                                            methods=["POST", "PUT"])])


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with serve_in_thread("http", {"http": {"max_body": 0}}, app=app) as server:
        yield server.url


def open_proxy(**settings: object):  # type: ignore[no-untyped-def]
    """A proxy allowed to reach loopback origins (the default denies them)."""
    return serve_in_thread("proxy", {"proxy": {"deny_destinations": [], **settings}})


@pytest.fixture(scope="module")
def proxy() -> Iterator[str]:
    with open_proxy() as server:
        yield server.url


def raw(proxy_url: str, data: bytes, *, until_close: bool = True, timeout: float = 5) -> bytes:
    host, port = proxy_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        if not until_close:
            return s.recv(65536)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_forwarding_strips_hop_by_hop_and_adds_via(proxy: str, origin: str) -> None:
    async def main() -> None:
        async with Client(proxy=proxy) as c:
            r = await c.get(f"{origin}/inspect?q=1", headers={
                "Connection": "X-Private, keep-alive", "X-Private": "no", "Keep-Alive": "5",
                "TE": "trailers", "Proxy-Authorization": "Basic eDp5", "X-Public": "yes"})
            seen = r.json()
            assert seen["target"] == "/inspect" and seen["query"] == "q=1"
            for gone in ("x-private", "keep-alive", "te", "proxy-authorization",
                         "proxy-connection"):
                assert gone not in seen["headers"], gone
            assert seen["headers"]["x-public"] == "yes"
            assert seen["headers"]["via"] == "1.1 netkit"
            assert seen["headers"]["host"] == origin.removeprefix("http://")
            assert r.headers["Via"] == "1.1 netkit" and r.headers["Server"] == "netkit"
            for _ in range(5):  # keep-alive on the client side
                assert (await c.get(f"{origin}/inspect")).status_code == 200
            assert c.connections_made == 1
    anyio.run(main)


def test_the_origins_hop_by_hop_fields_stay_behind(proxy: str) -> None:
    """A raw origin that answers with Connection-named and hop-by-hop fields, chunked: the
    client gets neither, and the body re-framed by the proxy."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: X-Hop, keep-alive\r\nX-Hop: secret\r\n"
                         b"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n"
                         b"Trailer: X-T\r\nX-Kept: yes\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
    t = threading.Thread(target=answer)
    t.start()
    out = raw(proxy, f"GET http://127.0.0.1:{listener.getsockname()[1]}/ HTTP/1.1\r\n"
              "Host: x\r\nConnection: close\r\n\r\n".encode())
    t.join(5)
    listener.close()
    head, body = out.split(b"\r\n\r\n", 1)
    lowered = head.lower()
    for gone in (b"x-hop", b"keep-alive", b"proxy-authenticate", b"trailer:"):
        assert gone not in lowered, gone
    assert b"x-kept: yes" in lowered and b"via: 1.1 netkit" in lowered
    assert body == b"5\r\nhello\r\n0\r\n\r\n"  # re-chunked by the proxy itself


def test_pipelined_requests_are_answered_in_order(proxy: str, origin: str) -> None:
    reqs = b"".join(b"GET %s/inspect?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (origin.encode(), i)
                    for i in range(5))
    out = raw(proxy, reqs + b"GET " + origin.encode() + b"/inspect?n=last HTTP/1.1\r\n"
              b"Host: x\r\nConnection: close\r\n\r\n")
    queries = [json.loads(part.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1", 1)[0])["query"]
               for part in out.split(b"HTTP/1.1 200 OK")[1:]]
    assert queries == [f"n={i}" for i in range(5)] + ["n=last"]


@pytest.mark.parametrize(("request_line", "status", "why"), [
    (b"GET /inspect HTTP/1.1", 400, b"must be an absolute http:// URL"),
    (b"GET https://example.com/ HTTP/1.1", 400, b"https:// URLs go through CONNECT"),
    (b"GET http://user:pw@example.com/ HTTP/1.1", 400, b"credentials"),
    (b"CONNECT example.com HTTP/1.1", 400, b"needs host:port"),
    (b"CONNECT example.com:25 HTTP/1.1", 403, b"CONNECT to port 25 is not allowed"),
])
def test_requests_a_proxy_refuses(proxy: str, request_line: bytes, status: int,
                                  why: bytes) -> None:
    out = raw(proxy, request_line + b"\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 %d " % status) and why in out


def test_smuggling_never_reaches_the_origin(proxy: str, origin: str) -> None:
    attack = (b"POST " + origin.encode() + b"/inspect HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"0\r\n\r\nGET " + origin.encode() + b"/inspect?smuggled HTTP/1.1\r\n\r\n")
    out = raw(proxy, attack)
    assert out.startswith(b"HTTP/1.1 400 ") and b"smuggled" not in out
    assert out.count(b"HTTP/1.1") == 1


def test_loops_are_508(proxy: str, origin: str) -> None:
    out = raw(proxy, b"GET " + proxy.encode() + b"/ HTTP/1.1\r\nHost: x\r\n"
              b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 508 ")
    out = raw(proxy, b"GET " + origin.encode() + b"/inspect HTTP/1.1\r\nHost: x\r\n"
              b"Via: 1.1 other, 1.1 netkit\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 508 ")


def test_clients_outside_allow_get_403(origin: str) -> None:
    with open_proxy(allow=["10.0.0.0/8"]) as px:
        out = raw(px.url, b"GET " + origin.encode() + b"/inspect HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 403 ") and b"does not serve your address" in out
        assert px.counters["refused_clients"] == 1


def test_denied_destinations_by_address_and_by_name(origin: str) -> None:
    port = origin.rsplit(":", 1)[1]
    with DNSZones() as zones:
        zones.add("innocent.test", "A", "127.0.0.1")  # a name for a denied address
        zones.add("meta.test", "A", "169.254.169.254")
        with serve_in_thread("proxy", {"proxy": {
                "resolver": [f"127.0.0.1:{zones.port}"]}}) as px:
            for url in (f"{origin}/inspect", f"http://innocent.test:{port}/inspect",
                        "http://meta.test/latest/meta-data/"):
                out = raw(px.url, f"GET {url} HTTP/1.1\r\nHost: x\r\n"
                          "Connection: close\r\n\r\n".encode())
                assert out.startswith(b"HTTP/1.1 403 ") and b"is denied" in out, url
            assert px.counters["denied"] == 3
        with open_proxy(resolver=[f"127.0.0.1:{zones.port}"]) as px:
            out = raw(px.url, f"GET http://innocent.test:{port}/inspect HTTP/1.1\r\n"
                      "Host: x\r\nConnection: close\r\n\r\n".encode())
            assert out.startswith(b"HTTP/1.1 200 ")  # resolved by the configured resolver
            out = raw(px.url, b"GET http://missing.test/ HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
            assert out.startswith(b"HTTP/1.1 502 ") and b"cannot resolve missing.test" in out


def test_origin_down_is_502_and_silent_is_504(origin: str) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does), never answers
    try:
        with open_proxy(origin_timeout=0.5) as px:
            out = raw(px.url, f"GET http://127.0.0.1:{dead}/ HTTP/1.1\r\nHost: x\r\n"
                      "Connection: close\r\n\r\n".encode())
            assert out.startswith(b"HTTP/1.1 502 ")
            assert out.endswith(f"cannot connect to 127.0.0.1:{dead}: Connection refused\n"
                                .encode())
            t0 = time.monotonic()
            out = raw(px.url, f"GET http://127.0.0.1:{silent.getsockname()[1]}/ HTTP/1.1\r\n"
                      "Host: x\r\nConnection: close\r\n\r\n".encode())
            assert out.startswith(b"HTTP/1.1 504 ") and time.monotonic() - t0 < 3
            # the client's connection survives a 502 where HTTP allows
            host, p = px.url.removeprefix("http://").rsplit(":", 1)
            with socket.create_connection((host, int(p)), timeout=5) as s:
                s.sendall(f"GET http://127.0.0.1:{dead}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                first = s.recv(65536)
                s.sendall(b"GET " + origin.encode() + b"/inspect HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
                rest = b""
                while chunk := s.recv(65536):
                    rest += chunk
            assert first.startswith(b"HTTP/1.1 502 ") and rest.startswith(b"HTTP/1.1 200 ")
            assert px.counters["bad_gateway"] >= 2 and px.counters["gateway_timeout"] == 1
    finally:
        silent.close()


def test_connect_is_byte_exact_with_half_close(make_backend) -> None:
    backend = make_backend("echo")
    port = backend.port
    with open_proxy(connect_ports=[port]) as px:
        host, p = px.url.removeprefix("http://").rsplit(":", 1)
        payload = os.urandom(3 * MIB)
        with socket.create_connection((host, int(p)), timeout=10) as s:
            # the tunnel's first bytes ride with the CONNECT head: they must not be lost
            s.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode() +
                      payload[:1000])
            head = b""
            while b"\r\n\r\n" not in head:
                head += s.recv(1)
            assert head == b"HTTP/1.1 200 Connection established\r\n\r\n"
            got = bytearray()

            def reader() -> None:
                while chunk := s.recv(65536):
                    got.extend(chunk)
            t = threading.Thread(target=reader)
            t.start()
            s.sendall(payload[1000:])
            s.shutdown(socket.SHUT_WR)  # our half-close reaches the backend ...
            t.join(20)
        # ... which echoed everything, said it saw our EOF, and closed its side
        assert bytes(got) == payload + b"[eof]"


def test_connect_answers_only_once_the_origin_is_up() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
    with open_proxy(connect_ports=[dead]) as px:
        out = raw(px.url, f"CONNECT 127.0.0.1:{dead} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert out.startswith(b"HTTP/1.1 502 ") and b"200" not in out.split(b"\r\n")[0]


def test_big_bodies_stream_both_ways_with_flat_memory(spawn, origin: str) -> None:
    proc = spawn("netkit.servers.proxy", ["--listen", "127.0.0.1:0",
                                          "--set", "proxy.deny_destinations=[]"])
    ((_, port),) = proc.listening(1)
    url = f"http://127.0.0.1:{port}"
    before = badpeers.rss_kib(proc.proc.pid)

    async def main() -> None:
        async with Client(proxy=url, timeout=60) as c:
            async with c.stream("GET", f"{origin}/download?mib={BIG_MIB}") as r:
                n = 0
                async for chunk in r.aiter_bytes():
                    n += len(chunk)
            assert n == BIG_MIB * MIB

            async def body():  # type: ignore[no-untyped-def]
                block = b"u" * MIB
                for _ in range(BIG_MIB):
                    yield block
            r = await c.post(f"{origin}/upload", content=body())  # chunked in
            assert r.json() == {"received": BIG_MIB * MIB}
    anyio.run(main)
    grown = badpeers.rss_kib(proc.proc.pid) - before
    assert grown < 16_000, f"RSS grew by {grown} KiB for {BIG_MIB} MiB each way"
    assert f'"GET {origin}/download?mib={BIG_MIB}" 200 up=0 down={BIG_MIB * MIB}' in proc.log


def htpasswd(tmp_path, *lines: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "users"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_proxy_authorization_407_then_200(spawn, tmp_path, origin: str) -> None:
    import bcrypt
    from passlib.hash import sha256_crypt

    users = htpasswd(tmp_path, "# users of the proxy",
                     "ann:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
                     .replace("$2b$", "$2y$"),  # as htpasswd -B writes it
                     "bob:" + sha256_crypt.using(rounds=5000).hash("hunter2"))
    proc = spawn("netkit.servers.proxy", ["--listen", "127.0.0.1:0",
                                          "--set", "proxy.deny_destinations=[]",
                                          "--set", f"proxy.auth_file={users}"])
    ((_, port),) = proc.listening(1)
    url = f"http://127.0.0.1:{port}"
    req = f"GET {origin}/inspect HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"

    def ask(credentials: str | None) -> bytes:
        auth = "" if credentials is None else \
            "Proxy-Authorization: Basic " + base64.b64encode(credentials.encode()).decode() + \
            "\r\n"
        return raw(url, (req + auth + "\r\n").encode())

    out = ask(None)
    assert out.startswith(b"HTTP/1.1 407 ")
    assert b'Proxy-Authenticate: Basic realm="netkit proxy"' in out
    assert ask("ann:wrong").startswith(b"HTTP/1.1 407 ")
    assert ask("nobody:s3cret").startswith(b"HTTP/1.1 407 ")
    out = ask("ann:s3cret")
    assert out.startswith(b"HTTP/1.1 200 ")
    assert b"proxy-authorization" not in out.lower()  # not passed on to the origin
    assert ask("bob:hunter2").startswith(b"HTTP/1.1 200 ")
    assert ask("bob:hunter2").startswith(b"HTTP/1.1 200 ")  # remembered: no second check
    assert "s3cret" not in proc.log and "hunter2" not in proc.log
    assert "YW5uOnMzY3JldA" not in proc.log  # nor the encoded header


def test_an_htpasswd_with_plaintext_is_refused(tmp_path) -> None:
    from netkit.errors import ConfigError
    from netkit.servers import proxy

    users = htpasswd(tmp_path, "ann:plaintext", "bob:$apr1$x$y")
    with pytest.raises(ConfigError) as caught:
        proxy.create({"proxy": {"auth_file": str(users)}})
    assert caught.value.problems == [
        f"proxy.auth_file: {users}:1: user 'ann' has no bcrypt or SHA-256-crypt hash "
        "(plaintext and older schemes are refused)",
        f"proxy.auth_file: {users}:2: user 'bob' has no bcrypt or SHA-256-crypt hash "
        "(plaintext and older schemes are refused)"]


@pytest.mark.parametrize(("mode", "field", "value"), [
    ("x-forwarded-for", "x-forwarded-for", "127.0.0.1"),
    ("forwarded", "forwarded", "for=127.0.0.1"),
    ("off", None, None),
])
def test_the_client_address_is_told_only_when_configured(origin: str, mode: str,
                                                          field: str | None,
                                                          value: str | None) -> None:
    with open_proxy(forwarded=mode) as px:
        out = raw(px.url, b"GET " + origin.encode() + b"/inspect HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
    seen = json.loads(out.split(b"\r\n\r\n", 1)[1])["headers"]
    if field is None:
        assert "x-forwarded-for" not in seen and "forwarded" not in seen
    else:
        assert seen[field] == value


def test_origin_connections_are_pooled() -> None:
    with serve_in_thread("http", app=app) as web, open_proxy() as px:
        async def main() -> None:
            async with Client(proxy=px.url) as c:
                for _ in range(20):
                    assert (await c.get(f"{web.url}/inspect")).status_code == 200
        anyio.run(main)
        assert web.counters["accepted"] == 1  # twenty requests, one origin connection


def test_sighup_with_a_broken_auth_file_keeps_serving(spawn, tmp_path, origin: str) -> None:
    conf = tmp_path / "proxy.toml"
    good = '[proxy]\nlisten = ["127.0.0.1:0"]\ndeny_destinations = []\n'
    conf.write_text(good)
    proc = spawn("netkit.servers.proxy", ["--config", str(conf)])
    ((_, port),) = proc.listening(1)
    req = b"GET " + origin.encode() + b"/inspect HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert raw(f"http://127.0.0.1:{port}", req).startswith(b"HTTP/1.1 200 ")
    users = tmp_path / "users"
    users.write_text("ann:plaintext\n")
    conf.write_text(good + f'auth_file = "{users}"\n')
    start = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"reload failed, keeping the running configuration", start=start)
    proc.wait_for(r"plaintext and older schemes are refused", start=start)
    assert proc.proc.poll() is None
    assert raw(f"http://127.0.0.1:{port}", req).startswith(b"HTTP/1.1 200 ")  # old config
    r = subprocess.run([sys.executable, "-m", "netkit.servers.proxy", "--config", str(conf),
                        "--check-config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "plaintext and older schemes are refused" in r.stderr


def test_a_slow_reader_leaves_a_pooled_origin_that_still_reads(origin: str) -> None:
    """A client too slow for a download pauses the origin connection; a response that
    ends while it is paused must leave the pooled connection reading again, or the next
    request on it waits for ever. (A 60 s stall seen once in the 48 MiB test; this test
    exercises the path but did not reproduce the stall without the fix.)"""
    with open_proxy(origin_timeout=3) as px:
        host, p = px.url.removeprefix("http://").rsplit(":", 1)
        get = (b"GET " + origin.encode() + b"/download?mib=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(4):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.settimeout(10)
                s.connect((host, int(p)))
                for _ in range(3):
                    s.sendall(get)
                    time.sleep(0.2)  # the proxy's write buffer fills: it pauses the origin
                    got = b""
                    while not got.endswith(b"0\r\n\r\n"):
                        chunk = s.recv(1 << 20)
                        assert chunk, "closed"
                        got += chunk
                    assert got.startswith(b"HTTP/1.1 200 "), got[:60]


def test_behind_a_load_balancer_the_proxy_header_names_the_client(origin: str) -> None:
    from netkit.proto.proxy import encode_v2

    with open_proxy(accept_proxy=True, allow=["127.0.0.60/32"],
                    forwarded="x-forwarded-for") as px:
        request = b"GET " + origin.encode() + b"/inspect HTTP/1.1\r\nHost: x\r\n" \
            b"Connection: close\r\n\r\n"
        port = int(px.url.rsplit(":", 1)[1])
        out = raw(px.url, encode_v2(("127.0.0.60", 40000), ("127.0.0.1", port)) + request)
        assert out.startswith(b"HTTP/1.1 200")
        seen = json.loads(out.split(b"\r\n\r\n", 1)[1])["headers"]
        assert seen["x-forwarded-for"] == "127.0.0.60"  # not the balancer's address
        out = raw(px.url, encode_v2(("127.0.0.61", 40000), ("127.0.0.1", port)) + request)
        assert out.startswith(b"HTTP/1.1 403")  # `allow` judged the header's source
