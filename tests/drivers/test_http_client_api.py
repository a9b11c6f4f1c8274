"""The HTTP client's script-facing API against netkit's own server running a Starlette app:
request options as the server saw them, response helpers, cookies, redirects, errors, and
the synchronous face from several threads."""

from __future__ import annotations

import base64
import os
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from netkit.clients import http
from netkit.clients.http import (
    BearerAuth,
    Client,
    ConnectError,
    HTTPStatusError,
    ReadTimeout,
    SyncClient,
    Timeout,
    TooManyRedirects,
)
from netkit.testing import serve_in_thread

pytestmark = pytest.mark.anyio


async def inspect_request(request: StarletteRequest) -> Response:
    """Everything the server saw, as JSON; multipart and urlencoded forms parsed by
    Starlette (python-multipart)."""
    form: dict[str, object] = {}
    ctype = request.headers.get("content-type", "")
    body = b""
    if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        async with request.form(max_part_size=64 << 20) as parsed:
            for name, value in parsed.multi_items():
                if isinstance(value, str):
                    form.setdefault(name, []).append(value)  # type: ignore[union-attr]
                else:
                    data = await value.read()
                    form.setdefault(name, []).append(  # type: ignore[union-attr]
                        {"filename": value.filename, "type": value.content_type,
                         "size": len(data), "head": data[:32].decode("latin-1")})
    else:
        body = await request.body()
    return JSONResponse({
        "method": request.method, "path": request.url.path,
        "query": list(map(list, request.query_params.multi_items())),
        "headers": {k: v for k, v in request.headers.items()},
        "cookies": request.cookies, "body": body.decode("latin-1"), "form": form})


async def set_cookies(request: StarletteRequest) -> Response:
    r = PlainTextResponse("set\n")
    r.set_cookie("session", "abc", path="/")
    r.set_cookie("scoped", "1", path="/account")
    r.set_cookie("secret", "2", secure=True)  # over plain http: a client must drop it
    return r


async def latin1(request: StarletteRequest) -> Response:
    return Response("café".encode("latin-1"), media_type="text/plain; charset=iso-8859-1")


async def no_charset(request: StarletteRequest) -> Response:
    return Response("naïve \xff".encode()[:-2] + b"\xff", headers={"Content-Type": "text/plain"})


async def status(request: StarletteRequest) -> Response:
    return PlainTextResponse("no\n", status_code=int(request.path_params["code"]))


async def redirect(request: StarletteRequest) -> Response:
    to = request.query_params["to"]
    return RedirectResponse(to, status_code=int(request.query_params.get("code", "302")))


async def loop(request: StarletteRequest) -> Response:
    return RedirectResponse("/loop", status_code=302)


async def slow(request: StarletteRequest) -> Response:
    await anyio.sleep(2)
    return PlainTextResponse("late\n")


app = Starlette(routes=[
    Route("/inspect", inspect_request,
          methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    Route("/account/inspect", inspect_request), Route("/cookies", set_cookies),
    Route("/latin1", latin1), Route("/no-charset", no_charset),
    Route("/status/{code:int}", status, methods=["GET", "POST"]),
    Route("/redirect", redirect, methods=["GET", "POST"]),
    Route("/loop", loop), Route("/slow", slow)])


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_in_thread("http", {"http": {"max_body": "8MiB"}}, app=app) as server:
        yield server.url.rstrip("/")


@pytest.fixture(scope="module")
def other_base() -> Iterator[str]:
    """A second origin (another port), for redirects that change origin."""
    with serve_in_thread("http", app=app) as server:
        yield server.url.rstrip("/")


async def test_request_options_as_the_server_saw_them(base: str) -> None:
    async with Client(base_url=base, headers={"X-Client": "yes"}, params={"v": 1}) as c:
        r = await c.get("/inspect?a=1", params=[("b", "2"), ("b", "3"), ("flag", True)],
                        headers={"X-Str": "s", b"X-Bytes": b"b"})
        seen = r.json()
        assert seen["query"] == [["a", "1"], ["v", "1"], ["b", "2"], ["b", "3"],
                                 ["flag", "true"]]
        assert seen["headers"]["x-str"] == "s" and seen["headers"]["x-bytes"] == "b"
        assert seen["headers"]["x-client"] == "yes"
        # a request's header replaces the client's of the same name
        seen = (await c.get("/inspect", headers=[("x-client", "override")])).json()
        assert seen["headers"]["x-client"] == "override"

        seen = (await c.post("/inspect", json={"name": "ann", "tags": ["a", "é"]})).json()
        assert seen["headers"]["content-type"] == "application/json"
        assert seen["body"].encode("latin-1").decode() == '{"name":"ann","tags":["a","é"]}'

        seen = (await c.post("/inspect", data={"q": "a b&c", "n": [1, 2]})).json()
        assert seen["form"] == {"q": ["a b&c"], "n": ["1", "2"]}
        seen = (await c.put("/inspect", data=b"raw bytes")).json()
        assert (seen["method"], seen["body"]) == ("PUT", "raw bytes")

        for method in ("PATCH", "DELETE", "OPTIONS"):
            r = await getattr(c, method.lower())("/inspect")
            assert r.json()["method"] == method
        r = await c.head("/inspect")
        assert r.status_code == 200 and r.content == b""


async def test_files_are_multipart_that_a_real_parser_reads(base: str, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    note = tmp_path / "note.txt"
    note.write_text("hello from a file\n")
    read_end, write_end = os.pipe()  # size unknown: the body goes chunked
    os.write(write_end, b"piped data")
    os.close(write_end)
    seen_lengths = []

    async with Client(event_hooks={"request": [
            lambda req: seen_lengths.append(req.headers.get("content-length"))]}) as c:
        with note.open("rb") as f:
            r = await c.post(f"{base}/inspect", data={"title": "report"},
                             files={"big": big, "note": f,
                                    "inline": ("data.csv", b"a,b\n1,2\n", "text/csv")})
        form = r.json()["form"]
        assert form["title"] == ["report"]
        assert form["big"] == [{"filename": "big.bin", "type": "application/octet-stream",
                                "size": 3 << 20,
                                "head": big.read_bytes()[:32].decode("latin-1")}]
        assert form["note"][0]["filename"] == "note.txt"
        assert form["note"][0]["head"] == "hello from a file\n"
        assert form["inline"][0] == {"filename": "data.csv", "type": "text/csv",
                                     "size": 8, "head": "a,b\n1,2\n"}
        assert seen_lengths[-1] is not None  # every size known: Content-Length

        with os.fdopen(read_end, "rb") as pipe:
            r = await c.post(f"{base}/inspect", files=[("p", ("p.txt", pipe))])
        assert r.json()["form"]["p"][0]["head"] == "piped data"
        assert seen_lengths[-1] is None  # a pipe: chunked


async def test_auth_basic_and_a_hook_for_other_schemes(base: str) -> None:
    async with Client(auth=("ann", "pässword")) as c:
        seen = (await c.get(f"{base}/inspect")).json()
        assert seen["headers"]["authorization"] == \
            "Basic " + base64.b64encode("ann:pässword".encode()).decode()
        seen = (await c.get(f"{base}/inspect", auth=BearerAuth("t0k"))).json()
        assert seen["headers"]["authorization"] == "Bearer t0k"

        def sign(request: http.Request) -> None:
            request.headers.set("X-Signature", f"{request.method} {request.url}")
        seen = (await c.get(f"{base}/inspect", auth=sign)).json()
        assert seen["headers"]["x-signature"] == f"GET {base}/inspect"
        assert "authorization" not in seen["headers"]


async def test_response_helpers(base: str) -> None:
    async with Client() as c:
        r = await c.get(f"{base}/latin1")
        assert r.headers["Content-Type"] == "text/plain; charset=iso-8859-1"
        assert r.headers["CONTENT-TYPE"] == r.headers.get("content-type")
        assert r.headers.get(b"content-type") == b"text/plain; charset=iso-8859-1"
        assert "content-type" in r.headers and b"Content-Type" in r.headers
        assert r.encoding == "iso-8859-1" and r.text == "café"
        assert r.status == r.status_code == 200 and r.http_version == "HTTP/1.1"
        assert r.elapsed.total_seconds() > 0 and r.url == f"{base}/latin1"
        assert r.raise_for_status() is r
        with pytest.raises(KeyError):
            r.headers["x-absent"]
        r = await c.get(f"{base}/no-charset")
        assert r.encoding is None and r.text == "naïve \ufffd"  # UTF-8, bad bytes replaced
        r = await c.get(f"{base}/status/404")
        with pytest.raises(HTTPStatusError) as caught:
            r.raise_for_status()
        assert caught.value.response is r
        assert str(caught.value) == f"client error 404 Not Found for GET {base}/status/404"
        r = await c.post(f"{base}/status/503")
        with pytest.raises(HTTPStatusError, match="server error 503"):
            r.raise_for_status()


async def test_cookie_jar_follows_domain_path_and_secure(base: str) -> None:
    async with Client() as c:
        await c.get(f"{base}/cookies")
        assert c.cookies.get("session") == "abc" and c.cookies.get("secret") is None
        seen = (await c.get(f"{base}/inspect")).json()
        assert seen["cookies"] == {"session": "abc"}  # /account's cookie not on /inspect
        seen = (await c.get(f"{base}/account/inspect")).json()
        assert seen["headers"]["cookie"] == "scoped=1; session=abc"  # longest path first
        seen = (await c.get(f"{base}/inspect", cookies={"extra": "x"})).json()
        assert seen["cookies"] == {"session": "abc", "extra": "x"}
        # another host name for the same server: host-only cookies stay behind
        other = base.replace("127.0.0.1", "localhost")
        seen = (await c.get(f"{other}/inspect")).json()
        assert seen["cookies"] == {}


async def test_redirects(base: str, other_base: str) -> None:
    async with Client(auth=("ann", "pw")) as c:
        r = await c.post(f"{base}/redirect?to=/inspect&code=303", json={"x": 1})
        assert r.json()["method"] == "GET" and r.json()["body"] == ""
        assert [h.status_code for h in r.history] == [303] and r.url == f"{base}/inspect"
        r = await c.post(f"{base}/redirect?to=/inspect&code=307", json={"x": 1})
        assert r.json()["method"] == "POST" and r.json()["body"] == '{"x":1}'
        # same origin keeps the credentials; another origin does not get them
        r = await c.get(f"{base}/redirect?to=/inspect")
        assert "authorization" in r.json()["headers"]
        r = await c.get(f"{base}/redirect?to={other_base}/inspect")
        assert r.url == f"{other_base}/inspect" and "authorization" not in r.json()["headers"]
        r = await c.get(f"{base}/redirect?to=/inspect", follow_redirects=False)
        assert r.status_code == 302 and r.is_redirect
    async with Client(max_redirects=3) as c:
        with pytest.raises(TooManyRedirects) as caught:
            await c.get(f"{base}/loop")
        assert str(caught.value) == f"GET {base}/loop: more than 3 redirects"


async def test_timeouts_and_errors_name_the_url(base: str) -> None:
    assert Timeout(5) == Timeout(connect=5, read=5)
    async with Client() as c:
        with pytest.raises(ReadTimeout, match=f"{base}/slow"):
            await c.get(f"{base}/slow", timeout=0.3)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, not listening: refused
            with pytest.raises(ConnectError) as caught:
                await c.get(f"http://127.0.0.1:{port}/x")
        assert str(caught.value).startswith(f"GET http://127.0.0.1:{port}/x: ")
        assert "refused" in str(caught.value)
    async with Client(timeout=None) as c:  # None: no limits at all
        assert c.timeout == Timeout(None) and c.timeout.read is None


def test_sync_face_from_many_threads(base: str) -> None:
    r = http.get(f"{base}/inspect", params={"one": "call"})
    assert r.status_code == 200 and r.json()["query"] == [["one", "call"]]
    assert http.post(f"{base}/inspect", json=[1]).json()["body"] == "[1]"
    with SyncClient(base_url=base, max_per_origin=8) as c:
        def work(i: int) -> tuple[int, str]:
            r = c.get("/inspect", params={"i": i})
            return r.status_code, r.json()["query"][0][1]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(200)))
        assert results == [(200, str(i)) for i in range(200)]
        # eight threads at once needed at most eight connections, not two hundred
        assert c.connections_made <= 8
        assert threading.active_count() < 20
        with c.stream("GET", "/latin1") as streamed:
            assert streamed.status_code == 200
            assert b"".join(streamed.iter_bytes()) == "café".encode("latin-1")
        with pytest.raises(HTTPStatusError):
            c.get("/status/500").raise_for_status()


async def test_retries_never_resend_a_streamed_body(tmp_path: Path) -> None:
    """A 503 to a PUT of files is retried only when the body can be sent again: a file
    streamed once is not, so the 503 is the answer (and the server saw one request)."""
    from netkit.testing.http import HTTPOrigin

    upload = tmp_path / "u.txt"
    upload.write_text("once\n")
    origin = HTTPOrigin()
    origin.expect("PUT", "/files").respond(503)
    origin.expect("PUT", "/bytes", times=3).respond(503)
    with serve_in_thread("http", app=origin.handler) as server:
        async with Client(retry=http.Retry(attempts=3, backoff=0)) as c:
            r = await c.put(server.url + "/files", files={"f": upload})
            assert r.status_code == 503
            r = await c.put(server.url + "/bytes", content=b"again and again")
            assert r.status_code == 503  # bytes can be resent: three tries
    origin.check()


def test_the_client_runs_on_trio_too(base: str) -> None:
    """On trio the client takes anyio's streams (the protocol stream is asyncio's)."""
    async def main() -> tuple[int, int, object]:
        async with Client() as c:
            first = await c.get(f"{base}/inspect", params={"on": "trio"})
            await c.get(f"{base}/latin1")
            return first.status_code, c.connections_made, first.json()["query"]
    assert anyio.run(main, backend="trio") == (200, 1, [["on", "trio"]])
