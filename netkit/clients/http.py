"""An HTTP/1.1 client driving the client side of the HTTP engine
(`proto/http/connection.py`): a pool per origin, HTTPS verified by default.

    async with Client() as client:
        r = await client.get("https://example.test/", timeout=Timeout(total=10))
        print(r.status, r.headers.get(b"content-type"), r.content)

    python -m netkit.clients.http URL [-i] [-I] [-X M] [-H 'N: V'] [-d DATA] [-o FILE]
                                       [-x PROXY] [--cacert CA] [-L] [--max-time S]

Keep-alive connections are pooled per origin and reused; an idempotent request
that fails on a reused connection before any byte came back is retried once on
a new one (the server may have closed it while idle). gzip and deflate bodies
are decoded with a cap on the decoded size. Redirects follow RFC 9110 15.4
(303, and 301/302 after POST, become GET). Through an HTTP proxy, http:// URLs
go in absolute-form and https:// through a CONNECT tunnel, TLS verified end to
end. Bodies stream both ways (`stream()`, async iterable `content`), and `Retry`
retries idempotent requests on connection errors and 429/502/503/504 with backoff.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import ssl
import sys
import time
import urllib.parse
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from netkit.proto.http import codec as h
from netkit.proto.http.connection import HTTPConnection, Role
from netkit.transport.connect import connect_stream

from ..config import Address
from ..errors import (
    ConnectError,
    NetkitError,
    NetkitTimeout,
    ProtocolError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    TLSError,
    WriteError,
)
from ..transport.errors import map_errors

IDEMPOTENT = {b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"}


@dataclass(frozen=True, slots=True)
class Timeout:
    connect: float = 10.0
    read: float = 30.0  # between two reads
    total: float | None = None  # the whole request, redirects included


@dataclass
class Response:
    status: int
    reason: bytes
    headers: h.Headers
    url: str
    content: bytes
    history: list[Response]

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Conn:
    """One pooled connection: a byte stream and the client side of the HTTP engine."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.http = HTTPConnection(Role.CLIENT)
        self.reusable = True

    async def aclose(self) -> None:
        self.reusable = False
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()


@dataclass(frozen=True, slots=True)
class Retry:
    """Retrying idempotent requests on connection errors and these statuses, with backoff
    (doubling from `backoff` seconds) or the server's Retry-After, capped at `max_wait`."""

    attempts: int = 3
    backoff: float = 0.5
    statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    max_wait: float = 60.0

    def delay(self, attempt: int, retry_after: bytes | None) -> float:
        if retry_after is not None:
            try:
                return min(self.max_wait, max(0.0, float(retry_after.strip())))
            except ValueError:
                try:  # the HTTP-date form (RFC 9110 10.2.3)
                    when = email.utils.parsedate_to_datetime(retry_after.decode("latin-1"))
                    return min(self.max_wait, max(0.0, when.timestamp() - time.time()))
                except (TypeError, ValueError):
                    pass
        return min(self.max_wait, self.backoff * 2 ** attempt)


class Client:
    def __init__(self, *, verify: bool | str | Path = True, timeout: Timeout = Timeout(),
                 retry: Retry | None = None,
                 max_redirects: int = 10, max_decoded: int = 64 << 20,
                 follow_redirects: bool = True, proxy: str | None = None,
                 max_per_origin: int = 10) -> None:
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.retry = retry
        self.max_decoded = max_decoded
        self.follow_redirects = follow_redirects
        self.proxy = Address.parse(proxy.removeprefix("http://").rstrip("/"),
                                   default_port=8080) if proxy else None
        self.max_per_origin = max_per_origin
        if verify is False:
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

    async def get(self, url: str, **kw: object) -> Response:
        return await self.request("GET", url, **kw)  # type: ignore[arg-type]

    async def post(self, url: str, **kw: object) -> Response:
        return await self.request("POST", url, **kw)  # type: ignore[arg-type]

    async def request(self, method: str, url: str, *,
                      headers: list[tuple[str, str]] | None = None,
                      content: bytes | AsyncIterable[bytes] | None = None,
                      timeout: Timeout | None = None) -> Response:
        """Send a request and read the whole response (redirects and retries applied)."""
        timeout = timeout or self.timeout
        retry = self.retry
        attempts = retry.attempts if retry and method.upper().encode() in IDEMPOTENT else 1
        with anyio.fail_after(timeout.total) if timeout.total else contextlib.nullcontext():
            for attempt in range(attempts):
                try:
                    streamed = await self._follow(method, url, headers or [], content, timeout)
                    response = await streamed.read()
                except ConnectError:
                    if attempt == attempts - 1:
                        raise
                    await anyio.sleep(retry.delay(attempt, None))  # type: ignore[union-attr]
                    continue
                if retry is None or attempt == attempts - 1 or \
                        response.status not in retry.statuses:
                    return response
                await anyio.sleep(retry.delay(attempt, response.headers.get(b"retry-after")))
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def stream(self, method: str, url: str, *,
                     headers: list[tuple[str, str]] | None = None,
                     content: bytes | AsyncIterable[bytes] | None = None,
                     timeout: Timeout | None = None) -> AsyncIterator[StreamingResponse]:
        """``async with client.stream("GET", url) as r: async for chunk in r.aiter_bytes()``;
        the connection goes back to the pool once the body is read, else it is closed."""
        response = await self._follow(method, url, headers or [], content,
                                      timeout or self.timeout)
        try:
            yield response
        finally:
            await response.aclose()

    async def _follow(self, method: str, url: str, headers: list[tuple[str, str]],
                      content: bytes | AsyncIterable[bytes] | None,
                      timeout: Timeout) -> StreamingResponse:
        history: list[Response] = []
        while True:
            response = await self._once(method.upper().encode(), url, headers, content,
                                        timeout)
            response.history = list(history)
            location = response.headers.get(b"location")
            replayable = content is None or isinstance(content, bytes)
            if not (self.follow_redirects and location and
                    response.status in (301, 302, 303, 307, 308)) or \
                    (response.status in (307, 308) and not replayable):
                return response
            if len(history) >= self.max_redirects:
                await response.aclose()
                raise ProtocolError(f"more than {self.max_redirects} redirects from {url}")
            history.append(await response.read())
            url = urllib.parse.urljoin(url, location.decode("latin-1"))
            if response.status == 303 or (response.status in (301, 302)
                                          and method.upper() == "POST"):
                method, content = ("GET" if method.upper() != "HEAD" else "HEAD"), None

    # --- one exchange ---

    async def _once(self, method: bytes, url: str, headers: list[tuple[str, str]],
                    content: bytes | AsyncIterable[bytes] | None,
                    timeout: Timeout) -> StreamingResponse:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        origin = (parts.scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if self.proxy is not None and parts.scheme == "http":
            target = url.split("#", 1)[0]  # absolute-form to a proxy (RFC 9112 3.2.2)
        host = parts.hostname if port in (80, 443) else f"{parts.hostname}:{port}"
        fields = [(b"Host", host.encode("idna")), (b"Accept-Encoding", b"gzip, deflate")]
        names = {n.lower() for n, _ in headers}
        if "user-agent" not in names:
            fields.append((b"User-Agent", b"netkit"))
        fields += [(n.encode(), v.encode("latin-1")) for n, v in headers]
        streaming_upload = content is not None and not isinstance(content, bytes)
        if isinstance(content, bytes):
            fields.append((b"Content-Length", b"%d" % len(content)))
        elif streaming_upload:
            fields.append((b"Transfer-Encoding", b"chunked"))  # length unknown
        for attempt in (0, 1):
            conn, reused = await self._checkout(origin, timeout)
            http = conn.http
            try:
                wire = http.send_request(method, target.encode(), fields)
                with map_errors("write", f"{method.decode()} {url}"):
                    if streaming_upload:
                        await conn.stream.send(wire)
                        async for chunk in content:  # type: ignore[union-attr]
                            if chunk:
                                await conn.stream.send(http.send_data(chunk))
                        await conn.stream.send(http.end_request())
                    else:
                        await conn.stream.send(wire + (content or b""))  # type: ignore[operator]
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
            return StreamingResponse(self, origin, conn, head, decoder, url, timeout)
        raise AssertionError("unreachable")

    def _release(self, origin: tuple[str, str, int], conn: _Conn) -> None:
        self.pool.setdefault(origin, []).append(conn)
        del self.pool[origin][:-self.max_per_origin]

    async def _checkout(self, origin: tuple[str, str, int], timeout: Timeout
                        ) -> tuple[_Conn, bool]:
        idle = self.pool.get(origin, [])
        while idle:
            conn = idle.pop()
            if conn.reusable:
                return conn, True
        scheme, host, port = origin
        if self.proxy is not None:
            stream = await connect_stream(self.proxy, timeout=timeout.connect)
            if scheme == "https":
                with anyio.fail_after(timeout.connect):
                    stream = await self._tunnel(stream, host, port)
        else:
            stream = await connect_stream(Address(host, port),
                                          tls=self.ssl if scheme == "https" else False,
                                          server_hostname=host, timeout=timeout.connect)
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
                with anyio.fail_after(timeout.read):
                    data = await conn.stream.receive()
            except anyio.EndOfStream:
                http.receive_eof()
                continue
            except TimeoutError:
                raise ReadTimeout(f"{url}: nothing received for {timeout.read} s") from None
        http.receive_data(data)


class StreamingResponse:
    """A response whose body is still on the wire; `read()` or `aiter_bytes()` takes it."""

    def __init__(self, client: Client, origin: tuple[str, str, int], conn: _Conn,
                 head: h.Response, decoder: Any, url: str, timeout: Timeout) -> None:
        self.status, self.reason, self.headers = head.status, head.reason, head.headers
        self.url = url
        self.history: list[Response] = []
        self._client, self._origin, self._conn = client, origin, conn
        self._head, self._decoder, self._timeout = head, decoder, timeout
        self._done = False
        self._size = 0

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        conn = self._conn
        try:
            while not self._done:
                ev = await _next(conn, self.url, self._timeout)
                if isinstance(ev, h.Data):
                    data = ev.data
                    if self._decoder is not None:
                        # max_length caps what one step may inflate: a bomb stops here
                        data = self._decoder.decompress(
                            data, self._client.max_decoded - self._size + 1)
                    self._size += len(data)
                    if self._size > self._client.max_decoded:
                        raise ProtocolError(f"{self.url}: body larger than "
                                            f"{self._client.max_decoded} bytes once decoded")
                    if data:
                        yield data
                elif isinstance(ev, h.EndOfMessage):
                    self._done = True
                    conn.reusable = conn.http.reusable
                else:
                    raise RemoteProtocolError(f"{self.url}: connection closed mid-body")
        except BaseException:
            conn.reusable = False
            raise
        finally:
            await self.aclose()

    async def read(self) -> Response:
        body = b"".join([chunk async for chunk in self.aiter_bytes()])
        return Response(self.status, self.reason, self.headers, self.url, body, self.history)

    async def aclose(self) -> None:
        """Back to the pool when the body was read whole; closed otherwise."""
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is None:
            return
        if self._done and conn.reusable:
            self._client._release(self._origin, conn)
        else:
            await conn.aclose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m netkit.clients.http", description=__doc__)
    p.add_argument("url")
    p.add_argument("-i", "--include", action="store_true", help="print the response head")
    p.add_argument("-I", "--head", action="store_true", help="HEAD; print the head only")
    p.add_argument("-X", "--request", help="method")
    p.add_argument("-H", "--header", action="append", default=[])
    p.add_argument("-d", "--data", help="request body (@FILE reads a file)")
    p.add_argument("-o", "--output", type=Path)
    p.add_argument("--cacert", help="CA bundle to verify the server with")
    p.add_argument("-x", "--proxy", help="HTTP proxy HOST:PORT")
    p.add_argument("-L", "--location", action="store_true", help="follow redirects")
    p.add_argument("--max-time", type=float, default=None)
    p.add_argument("-f", "--fail", action="store_true",
                   help="exit 22 on an HTTP error (400 and above), printing no body")
    args = p.parse_args(argv)
    body = None
    if args.data is not None:
        body = Path(args.data[1:]).read_bytes() if args.data.startswith("@") else \
            args.data.encode()
    method = args.request or ("HEAD" if args.head else "POST" if body is not None else "GET")
    headers = [tuple(x.strip() for x in hv.split(":", 1)) for hv in args.header]

    async def run() -> Response:
        async with Client(verify=args.cacert or True, proxy=args.proxy,
                          follow_redirects=args.location,
                          timeout=Timeout(total=args.max_time)) as client:
            return await client.request(method, args.url, headers=headers,  # type: ignore
                                        content=body)

    try:
        r = asyncio.run(run())
    except (NetkitError, OSError, ValueError, TimeoutError) as exc:
        print(f"netkit http: {exc}", file=sys.stderr)
        return _curl_exit_code(exc)
    if args.fail and r.status >= 400:
        print(f"netkit http: the requested URL returned error: {r.status}", file=sys.stderr)
        return 22
    out = sys.stdout.buffer
    if args.include or args.head:
        out.write(b"HTTP/1.1 %d %s\r\n" % (r.status, r.reason))
        for n, v in r.headers:
            out.write(n + b": " + v + b"\r\n")
        out.write(b"\r\n")
    if not args.head:
        if args.output:
            args.output.write_bytes(r.content)
        else:
            out.write(r.content)
    out.flush()
    return 0  # any HTTP answer is a success, as curl has it (-f makes 400+ one)


def _curl_exit_code(exc: BaseException) -> int:
    """curl's exit codes for what went wrong: 3 bad URL, 6 name not resolved, 7 no
    connection, 28 timed out, 60 certificate not trusted, 35 other TLS failures, 56
    failure while receiving, 55 while sending."""
    if isinstance(exc, NetkitTimeout | TimeoutError):
        return 28
    if isinstance(exc, TLSError):
        return 60 if "certificate" in str(exc) else 35
    if isinstance(exc, ValueError):
        return 3
    if isinstance(exc, ConnectError):
        return 6 if "cannot resolve" in str(exc) else 7
    if isinstance(exc, ReadError):
        return 56
    if isinstance(exc, WriteError):
        return 55
    return 7


if __name__ == "__main__":
    sys.exit(main())
