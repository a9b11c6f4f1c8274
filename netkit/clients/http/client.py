"""The asynchronous HTTP/1.1 client, driving the client side of the HTTP engine
(`proto/http/connection.py`): a pool per origin, HTTPS verified by default.

    async with Client(base_url="https://api.example.test", auth=("ann", "pw")) as client:
        r = await client.get("/users", params={"page": 2}, timeout=10)
        r.raise_for_status()
        print(r.status_code, r.headers["Content-Type"], r.json())

Keep-alive connections are pooled per origin and reused; an idempotent request
that fails on a reused connection before any byte came back is retried once on
a new one (the server may have closed it while idle). gzip and deflate bodies
are decoded with a cap on the decoded size. Redirects follow RFC 9110 15.4
(303, and 301/302 after POST, become GET; Authorization is dropped when the
origin changes). Cookies are kept in `client.cookies` by RFC 6265's rules.
Through an HTTP proxy, http:// URLs go in absolute-form and https:// through a
CONNECT tunnel, TLS verified end to end. Bodies stream both ways (`stream()`,
`files=` read from disk as sent), and `Retry` retries idempotent requests on
connection errors and 429/502/503/504 with backoff.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import functools
import inspect
import ssl
import time
import urllib.parse
import zlib
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from ...config import Address
from ...errors import (
    ConnectError,
    NetkitError,
    NetkitTimeout,
    ProtocolError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    TooManyRedirects,
    WriteError,
)
from ...proto.http import codec as h
from ...proto.http.connection import HTTPConnection, Role
from ...proto.http.cookies import CookieJar
from ...transport.connect import connect_stream
from ...transport.errors import map_errors
from ...transport.stream import ProtocolStream, open_stream
from .models import (
    Headers,
    HeaderTypes,
    ParamTypes,
    Request,
    Response,
    ResponseHead,
    Retry,
    Timeout,
    _pairs,
    form_body,
    json_body,
    merge_params,
)
from .multipart import Multipart

IDEMPOTENT = {b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"}
#: "the client's own setting" where None means something (timeout=None: no limit)
DEFAULT: Any = type("UseClientDefault", (), {"__repr__": lambda self: "DEFAULT"})()
DEFAULT_TIMEOUT = Timeout()
_NO_LIMIT = contextlib.nullcontext()
#: a response body streams to the caller, so the parser sets it no limit (the server's
#: 1 MiB request-body default would stop downloads); `read()` has `max_decoded`
_RESPONSE_LIMITS = h.Limits(max_body=0)
_INFLATE_STEP = 1 << 20
Auth = Callable[[Request], Any]
Hook = Callable[[Any], Any]


class BasicAuth:
    """`auth=("user", "password")` is this: Basic credentials (RFC 7617), UTF-8."""

    def __init__(self, username: str, password: str) -> None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._value = f"Basic {token}"

    def __call__(self, request: Request) -> Request:
        request.headers.set("Authorization", self._value)
        return request


class BearerAuth:
    """`auth=BearerAuth(token)`: an OAuth 2.0 bearer token (RFC 6750). Any callable that
    takes the Request and sets its headers is an auth scheme in the same way."""

    def __init__(self, token: str) -> None:
        self._value = f"Bearer {token}"

    def __call__(self, request: Request) -> Request:
        request.headers.set("Authorization", self._value)
        return request


def _auth(auth: Auth | tuple[str, str] | None) -> Auth | None:
    return BasicAuth(*auth) if isinstance(auth, tuple) else auth


async def _call(hook: Hook, arg: Any) -> None:
    result = hook(arg)
    if inspect.isawaitable(result):
        await result


@functools.lru_cache(maxsize=512)
def _split(url: str) -> tuple[tuple[str, str, int], bytes, bytes]:
    """(scheme, host, port), the request target and the Host field of a URL; a script
    asks the same few URLs again and again, so the parse is kept."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"not a port number in {url!r}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.hostname if port in (80, 443) else f"{parts.hostname}:{port}"
    return (parts.scheme, parts.hostname, port), target.encode(), host.encode("idna")


@contextlib.contextmanager
def _overall(timeout: Timeout, request: Request) -> Iterator[None]:
    """`timeout.total` over a whole request: ReadTimeout naming it when it runs out."""
    if not timeout.total:
        yield
        return
    try:
        with anyio.fail_after(timeout.total):
            yield
    except TimeoutError as exc:
        if isinstance(exc, NetkitTimeout):
            raise
        raise ReadTimeout(f"{request.method} {request.url}: not done within "
                          f"{timeout.total} s") from None


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio
        return False
    return True


def _with_url(exc: NetkitError, method: bytes, url: str) -> NetkitError:
    """The same error, its message naming the request (connect errors name an address)."""
    if url not in str(exc):
        exc.args = (f"{method.decode()} {url}: {exc.args[0] if exc.args else exc}",
                    *exc.args[1:])
    return exc


class _Conn:
    """One pooled connection: a byte stream and the client side of the HTTP engine."""

    def __init__(self, stream: anyio.abc.ByteStream | ProtocolStream) -> None:
        self.stream = stream
        self.http = HTTPConnection(Role.CLIENT, _RESPONSE_LIMITS)
        self.reusable = True
        self._fast = isinstance(stream, ProtocolStream)

    async def receive(self, timeout: float | None) -> bytes:
        if self._fast:  # the deadline is a timer in the stream, not a cancel scope
            return await self.stream.receive(timeout)  # type: ignore[call-arg]
        with anyio.fail_after(timeout):
            return await self.stream.receive()

    @property
    def closed_by_peer(self) -> bool:
        """Known to be closed by the server (a protocol stream sees the EOF come)."""
        return self._fast and self.stream.at_eof  # type: ignore[union-attr]

    async def aclose(self) -> None:
        self.reusable = False
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()


class Client:
    """An asynchronous HTTP client with httpx's manners. Per-client settings (`headers`,
    `params`, `cookies`, `auth`, `timeout`, `follow_redirects`) are defaults each request
    may override; `base_url` is joined with relative URLs."""

    def __init__(self, *, base_url: str | None = None, headers: HeaderTypes = None,
                 params: ParamTypes = None,
                 cookies: Mapping[str, str] | CookieJar | None = None,
                 auth: Auth | tuple[str, str] | None = None,
                 verify: bool | str | Path | ssl.SSLContext = True,
                 timeout: Timeout | float | None = DEFAULT_TIMEOUT, retry: Retry | None = None,
                 max_redirects: int = 10, max_decoded: int = 64 << 20,
                 follow_redirects: bool = True, proxy: str | None = None,
                 max_per_origin: int = 10,
                 event_hooks: Mapping[str, Iterable[Hook]] | None = None) -> None:
        self.base_url = base_url
        self.headers = Headers(_pairs(headers))
        self.params = params
        self.cookies = cookies if isinstance(cookies, CookieJar) else CookieJar()
        # cookies given as a mapping go to every host, as httpx sends them
        self._fixed_cookies = dict(cookies) if isinstance(cookies, Mapping) else {}
        self.auth = _auth(auth)
        self.timeout = Timeout.of(timeout)
        self.max_redirects = max_redirects
        self.retry = retry
        self.max_decoded = max_decoded
        self.follow_redirects = follow_redirects
        self.proxy = Address.parse(proxy.removeprefix("http://").rstrip("/"),
                                   default_port=8080) if proxy else None
        self.max_per_origin = max_per_origin
        hooks = event_hooks or {}
        self._request_hooks = list(hooks.get("request", ()))
        self._response_hooks = list(hooks.get("response", ()))
        if isinstance(verify, ssl.SSLContext):
            self.ssl = verify
        elif verify is False:
            self.ssl = ssl.create_default_context()
            self.ssl.check_hostname = False
            self.ssl.verify_mode = ssl.CERT_NONE
        elif verify is True:
            self.ssl = ssl.create_default_context()
        else:
            self.ssl = ssl.create_default_context(cafile=str(verify))
        self.pool: dict[tuple[str, str, int], list[_Conn]] = {}
        self.connections_made = 0

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for conns in self.pool.values():
            for conn in conns:
                await conn.aclose()
        self.pool.clear()

    async def get(self, url: str, **kw: Any) -> Response:
        return await self.request("GET", url, **kw)

    async def head(self, url: str, **kw: Any) -> Response:
        return await self.request("HEAD", url, **kw)

    async def options(self, url: str, **kw: Any) -> Response:
        return await self.request("OPTIONS", url, **kw)

    async def post(self, url: str, **kw: Any) -> Response:
        return await self.request("POST", url, **kw)

    async def put(self, url: str, **kw: Any) -> Response:
        return await self.request("PUT", url, **kw)

    async def patch(self, url: str, **kw: Any) -> Response:
        return await self.request("PATCH", url, **kw)

    async def delete(self, url: str, **kw: Any) -> Response:
        return await self.request("DELETE", url, **kw)

    def build_request(self, method: str, url: str, *, params: ParamTypes = None,
                      headers: HeaderTypes = None, content: bytes | str |
                      AsyncIterable[bytes] | None = None, data: Any = None,
                      files: Any = None, json: Any = None) -> Request:
        """The Request `request()` would send: URL joined and queried, body encoded."""
        if self.base_url is not None:
            url = urllib.parse.urljoin(self.base_url.rstrip("/") + "/", url.lstrip("/")) \
                if "://" not in url else url
        if self.params:
            url = merge_params(url, self.params)
        if params:
            url = merge_params(url, params)
        fields = _pairs(headers)
        if self.headers:
            given = {n.lower() for n, _ in fields}
            fields = [(n, v) for n, v in self.headers if n.lower() not in given] + fields
        request = Request(method.upper(), url, Headers(fields))
        ctype = None
        if json is not None:
            request.content, ctype = json_body(json), b"application/json"
        elif files or (files is not None and data):  # an empty files= still asks multipart
            form = Multipart(data, files)
            request.content, request.content_length = form.stream(), form.length
            ctype = form.content_type.encode()
        elif data is not None:
            if isinstance(data, bytes | str):
                request.content = data.encode() if isinstance(data, str) else data
            else:
                request.content, ctype = form_body(data), b"application/x-www-form-urlencoded"
        elif content is not None:
            request.content = content.encode() if isinstance(content, str) else \
                bytes(content) if isinstance(content, bytearray | memoryview) else content
        if ctype is not None and not request.headers.has(b"content-type"):
            request.headers.add(b"Content-Type", ctype)
        return request

    async def request(self, method: str, url: str, *, params: ParamTypes = None,
                      headers: HeaderTypes = None,
                      content: bytes | str | AsyncIterable[bytes] | None = None,
                      data: Any = None, files: Any = None, json: Any = None,
                      cookies: Mapping[str, str] | None = None,
                      auth: Auth | tuple[str, str] | None = DEFAULT,
                      follow_redirects: bool = DEFAULT,
                      timeout: Timeout | float | None = DEFAULT) -> Response:
        """Send a request and read the whole response (redirects and retries applied)."""
        request = self.build_request(method, url, params=params, headers=headers,
                                     content=content, data=data, files=files, json=json)
        return await self.send(request, auth=auth, cookies=cookies, timeout=timeout,
                               follow_redirects=follow_redirects)

    async def send(self, request: Request, *, auth: Auth | tuple[str, str] | None = DEFAULT,
                   cookies: Mapping[str, str] | None = None,
                   follow_redirects: bool = DEFAULT,
                   timeout: Timeout | float | None = DEFAULT) -> Response:
        timeout = self.timeout if timeout is DEFAULT else Timeout.of(timeout)
        retry = self.retry
        attempts = retry.attempts if retry and request.method.encode() in IDEMPOTENT else 1
        with _overall(timeout, request) if timeout.total else _NO_LIMIT:
            for attempt in range(attempts):
                try:
                    streamed = await self._follow(request, auth, cookies, follow_redirects,
                                                  timeout)
                    response = await streamed.read()
                except ConnectError:
                    if attempt == attempts - 1:
                        raise
                    await anyio.sleep(retry.delay(attempt, None))  # type: ignore[union-attr]
                    continue
                if retry is None or attempt == attempts - 1 or \
                        response.status not in retry.statuses or \
                        not isinstance(request.content, bytes | None):
                    return response  # (a streamed body is gone once sent: not resent)
                await anyio.sleep(retry.delay(attempt, response.headers.get(b"retry-after")))
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def stream(self, method: str, url: str, *, params: ParamTypes = None,
                     headers: HeaderTypes = None,
                     content: bytes | str | AsyncIterable[bytes] | None = None,
                     data: Any = None, files: Any = None, json: Any = None,
                     cookies: Mapping[str, str] | None = None,
                     auth: Auth | tuple[str, str] | None = DEFAULT,
                     follow_redirects: bool = DEFAULT,
                     timeout: Timeout | float | None = DEFAULT
                     ) -> AsyncIterator[StreamingResponse]:
        """``async with client.stream("GET", url) as r: async for chunk in r.aiter_bytes()``;
        the connection goes back to the pool once the body is read, else it is closed."""
        request = self.build_request(method, url, params=params, headers=headers,
                                     content=content, data=data, files=files, json=json)
        timeout = self.timeout if timeout is DEFAULT else Timeout.of(timeout)
        with _overall(timeout, request):  # the body's reading included
            response = await self._follow(request, auth, cookies, follow_redirects, timeout)
            try:
                yield response
            finally:
                await response.aclose()

    async def _follow(self, request: Request, auth: Auth | tuple[str, str] | None,
                      cookies: Mapping[str, str] | None, follow_redirects: bool,
                      timeout: Timeout) -> StreamingResponse:
        auth = self.auth if auth is DEFAULT else _auth(auth)
        if auth is not None:
            request = auth(request) or request
        follow = self.follow_redirects if follow_redirects is DEFAULT else follow_redirects
        history: list[Response] = []
        while True:
            response = await self._once(request, cookies, timeout)
            response.history = list(history)
            location = response.headers.get(b"location")
            content = request.content
            replayable = content is None or isinstance(content, bytes)
            if not (follow and location and response.status in (301, 302, 303, 307, 308)) or \
                    (response.status in (307, 308) and not replayable):
                return response
            if len(history) >= self.max_redirects:
                await response.aclose()
                first = history[0].url if history else request.url
                raise TooManyRedirects(f"{request.method} {first}: more than "
                                       f"{self.max_redirects} redirects")
            history.append(await response.read())
            request = self._redirected(request, response.status,
                                       urllib.parse.urljoin(request.url,
                                                            location.decode("latin-1")))

    @staticmethod
    def _redirected(request: Request, status: int, url: str) -> Request:
        """The next request of a redirect chain (RFC 9110 15.4)."""
        method, content = request.method, request.content
        headers = Headers(list(request.headers))
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, content = "GET", None
            for name in (b"content-type", b"content-length", b"transfer-encoding"):
                headers.remove(name)
        old, new = urllib.parse.urlsplit(request.url), urllib.parse.urlsplit(url)
        if (old.scheme, old.hostname, old.port) != (new.scheme, new.hostname, new.port):
            headers.remove(b"authorization")  # credentials stay with their origin
        return Request(method, url, headers, content, request.content_length)

    # --- one exchange ---

    async def _once(self, request: Request, cookies: Mapping[str, str] | None,
                    timeout: Timeout) -> StreamingResponse:
        url = request.url
        method = request.method.encode()
        origin, target, host = _split(url)
        if self.proxy is not None and origin[0] == "http":
            target = url.split("#", 1)[0].encode()  # absolute-form (RFC 9112 3.2.2)
        given = request.headers
        fields = [(b"Host", host)]
        if not given.has(b"accept-encoding"):
            fields.append((b"Accept-Encoding", b"gzip, deflate"))
        if not given.has(b"user-agent"):
            fields.append((b"User-Agent", b"netkit"))
        fields += given
        if cookies or self._fixed_cookies or self.cookies:
            cookie = self._cookie_field(url, cookies)
            if cookie:
                fields.append((b"Cookie", cookie.encode("latin-1")))
        content = request.content
        streaming_upload = content is not None and not isinstance(content, bytes)
        if isinstance(content, bytes):
            fields.append((b"Content-Length", b"%d" % len(content)))
        elif streaming_upload:
            if request.content_length is not None:
                fields.append((b"Content-Length", b"%d" % request.content_length))
            else:
                fields.append((b"Transfer-Encoding", b"chunked"))  # length unknown
        for hook in self._request_hooks:
            await _call(hook, Request(request.method, url, Headers(fields), content))
        started = time.perf_counter()
        for attempt in (0, 1):
            conn, reused = await self._checkout(origin, method, url, timeout)
            http = conn.http
            try:
                wire = http.send_request(method, target, fields)
                with map_errors("write", f"{request.method} {url}"):
                    if streaming_upload:
                        await conn.stream.send(wire)
                        async for chunk in content:  # type: ignore[union-attr]
                            if chunk:
                                await conn.stream.send(http.send_data(chunk))
                        await conn.stream.send(http.end_request())
                    else:
                        await conn.stream.send(wire + (content or b""))  # type: ignore
                        http.end_request()
                head, decoder = await self._read_head(conn, method, url, timeout)
            except (ReadError, WriteError) as exc:
                await conn.aclose()
                # a pooled connection the server closed while idle: retry once, if safe
                if reused and attempt == 0 and method in IDEMPOTENT and not streaming_upload \
                        and not isinstance(exc, NetkitTimeout):
                    continue
                raise
            except BaseException:
                await conn.aclose()  # cancelled, timed out, garbage: never pooled half-read
                raise
            response = StreamingResponse(self, origin, conn, head, decoder, url, timeout)
            response.request = request
            response.elapsed = datetime.timedelta(seconds=time.perf_counter() - started)
            if head.headers.has(b"set-cookie"):
                self.cookies.extract(url, response.headers.get_list("set-cookie"), time.time())
            for hook in self._response_hooks:
                await _call(hook, response)
            return response
        raise AssertionError("unreachable")

    def _cookie_field(self, url: str, cookies: Mapping[str, str] | None) -> str | None:
        if not (self.cookies or self._fixed_cookies or cookies):
            return None
        pairs = dict(self._fixed_cookies)
        stored = self.cookies.header_for(url, time.time())
        field = "; ".join(filter(None, [stored, "; ".join(
            f"{n}={v}" for n, v in {**pairs, **(cookies or {})}.items())]))
        return field or None

    def _release(self, origin: tuple[str, str, int], conn: _Conn) -> bool:
        """Keep an idle connection for reuse; False when the origin has enough idle ones
        (the caller closes it)."""
        idle = self.pool.setdefault(origin, [])
        if len(idle) >= self.max_per_origin:
            return False
        idle.append(conn)
        return True

    async def _checkout(self, origin: tuple[str, str, int], method: bytes, url: str,
                        timeout: Timeout) -> tuple[_Conn, bool]:
        idle = self.pool.get(origin, [])
        while idle:
            conn = idle.pop()
            if conn.reusable and not conn.closed_by_peer:
                return conn, True
            await conn.aclose()  # the server closed it while it sat idle: no retry needed
        scheme, host, port = origin
        try:
            if self.proxy is not None:
                stream = await connect_stream(self.proxy, timeout=timeout.connect)
                if scheme == "https":
                    with anyio.fail_after(timeout.connect):
                        stream = await self._tunnel(stream, host, port)
            elif _on_asyncio():
                stream = await open_stream(Address(host, port),
                                           tls=self.ssl if scheme == "https" else None,
                                           server_hostname=host, timeout=timeout.connect)
            else:  # trio: anyio's streams
                stream = await connect_stream(Address(host, port),
                                              tls=self.ssl if scheme == "https" else False,
                                              server_hostname=host, timeout=timeout.connect)
        except NetkitError as exc:
            raise _with_url(exc, method, url) from exc.__cause__
        self.connections_made += 1
        return _Conn(stream), False

    async def _tunnel(self, stream: anyio.abc.ByteStream, host: str,
                      port: int) -> anyio.abc.ByteStream:
        """CONNECT through the proxy, then TLS end to end with the origin (verified)."""
        authority = f"{host}:{port}".encode("idna")
        http = HTTPConnection(Role.CLIENT)
        await stream.send(http.send_request(b"CONNECT", authority, [(b"Host", authority)]))
        while True:
            ev = http.next_event()
            if ev is h.NEED_DATA:
                with map_errors("read", f"CONNECT {host}:{port}"):
                    try:
                        http.receive_data(await stream.receive())
                    except anyio.EndOfStream:
                        http.receive_eof()
            elif isinstance(ev, h.Response) and ev.status >= 300:
                await stream.aclose()
                raise ConnectError(f"the proxy refused CONNECT {host}:{port}: {ev.status}")
            elif ev is h.PAUSED:
                break
            elif not isinstance(ev, h.Response):
                await stream.aclose()
                raise ConnectError(f"the proxy answered CONNECT {host}:{port} with a body")
        try:
            with map_errors("connect", f"TLS through the proxy to {host}:{port}"):
                return await TLSStream.wrap(stream, server_side=False, hostname=host,
                                            ssl_context=self.ssl)
        except BaseException:
            await stream.aclose()
            raise

    async def _read_head(self, conn: _Conn, method: bytes, url: str,
                         timeout: Timeout) -> tuple[h.Response, Any]:
        while True:
            ev = await _next(conn, url, timeout)
            if isinstance(ev, h.Response):
                if ev.status < 200:
                    continue  # 100 Continue and friends
                encoding = (ev.headers.get(b"content-encoding") or b"").strip().lower()
                decoder = None
                if encoding in (b"gzip", b"x-gzip"):
                    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
                elif encoding == b"deflate":
                    decoder = zlib.decompressobj()
                return ev, decoder
            if ev is h.CLOSED:
                # what a pooled connection the server timed out looks like: retried if safe
                raise ReadError(f"{url}: connection closed without a response")
            raise RemoteProtocolError(f"{url}: unexpected {ev!r} before the response")


async def _next(conn: _Conn, url: str, timeout: Timeout) -> object:
    """The engine's next event, reading from the connection as needed."""
    http = conn.http
    while True:
        ev = http.next_event()
        if ev is not h.NEED_DATA:
            return ev
        with map_errors("read", url):
            try:
                data = await conn.receive(timeout.read)
            except anyio.EndOfStream:
                http.receive_eof()
                continue
            except TimeoutError:
                raise ReadTimeout(f"{url}: nothing received for {timeout.read} s") from None
        http.receive_data(data)


class StreamingResponse(ResponseHead):
    """A response whose body is still on the wire; `read()` or `aiter_bytes()` takes it."""

    def __init__(self, client: Client, origin: tuple[str, str, int], conn: _Conn,
                 head: h.Response, decoder: Any, url: str, timeout: Timeout) -> None:
        self.status, self.reason = head.status, head.reason
        self.headers = Headers.of(head.headers)
        self.url = url
        self.http_version = "HTTP/" + head.version.decode()
        self.history: list[Response] = []
        self.request: Request | None = None
        self.elapsed = datetime.timedelta(0)
        self._client, self._origin, self._conn = client, origin, conn
        self._head, self._decoder, self._timeout = head, decoder, timeout
        self._done = False
        self._size = 0

    async def aiter_bytes(self, limit: int = 0) -> AsyncIterator[bytes]:
        """The body as it arrives (decoded). Streamed, it has no size limit: the caller
        holds what it keeps. `limit` (bytes, 0: none) is what `read()` holds whole."""
        try:
            while (pieces := await self._next_pieces(limit)) is not None:
                for data in pieces:
                    yield data
        except BaseException:
            if self._conn is not None:
                self._conn.reusable = False
            raise
        finally:
            await self.aclose()

    async def _next_pieces(self, limit: int) -> Iterable[bytes] | None:
        """The next decoded bytes of the body (maybe none); None once it has ended."""
        if self._done:
            return None
        conn = self._conn
        ev = await _next(conn, self.url, self._timeout)
        if isinstance(ev, h.Data):
            pieces = (ev.data,) if self._decoder is None else list(self._inflate(ev.data))
            for data in pieces:
                self._size += len(data)
                if limit and self._size > limit:
                    raise ProtocolError(f"{self.url}: body larger than {limit} "
                                        "bytes (the client's max_decoded)")
            return pieces
        if isinstance(ev, h.EndOfMessage):
            self._done = True
            conn.reusable = conn.http.reusable
            return None
        raise RemoteProtocolError(f"{self.url}: connection closed mid-body")

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        """Decompressed in steps of at most _INFLATE_STEP bytes: a bomb never sits whole in
        memory, and a limit stops it after one step."""
        decoder = self._decoder
        yield decoder.decompress(data, _INFLATE_STEP)
        while decoder.unconsumed_tail:
            yield decoder.decompress(decoder.unconsumed_tail, _INFLATE_STEP)

    async def read(self) -> Response:
        chunks: list[bytes] = []
        limit = self._client.max_decoded
        try:  # aiter_bytes without the async generator: this runs once per request
            while (pieces := await self._next_pieces(limit)) is not None:
                chunks.extend(pieces)
        except BaseException:
            if self._conn is not None:
                self._conn.reusable = False
            raise
        finally:
            await self.aclose()
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return Response(self.status, self.reason, self.headers, self.url, body, self.history,
                        request=self.request, elapsed=self.elapsed,
                        http_version=self.http_version)

    async def aclose(self) -> None:
        """Back to the pool when the body was read whole; closed otherwise."""
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is None:
            return
        if not (self._done and conn.reusable and self._client._release(self._origin, conn)):
            await conn.aclose()
