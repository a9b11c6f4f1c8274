"""Applications on the HTTP server: a small native API, and an ASGI 3 adapter over it.

    async def handler(request: AppRequest) -> AppResponse

The request body streams (`async for chunk in request.stream()`, or
`await request.body()`); the response body is bytes (sent with Content-Length)
or an async iterable of bytes (sent chunked). ASGI 3 applications
(Starlette, FastAPI, Django's ASGI handler ...) are run by the server itself
(`servers/http.py`), whose `send` writes straight to the connection.
"""

from __future__ import annotations

import asyncio
import importlib
import urllib.parse
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from netkit.errors import RemoteProtocolError
from netkit.memo import Memo
from netkit.proto.http.codec import Headers, Request, origin_form

#: method names as str, decoded once (a dict lookup costs less than a decode)
_METHODS = {m: m.decode() for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH",
                                    b"OPTIONS")}
_VERSIONS = {b"1.1": "1.1", b"1.0": "1.0"}


def method_name(method: bytes) -> str:
    return _METHODS.get(method) or method.decode("ascii")


#: targets already split (a site's requests name the same few paths again and again);
#: split targets, bounded (netkit/memo.py)
_TARGETS = Memo()


def split_target(target: bytes) -> tuple[str, bytes, bytes]:
    """A request target -> (path with %-escapes decoded, raw path, query string)."""
    parts = _TARGETS.get(target)
    if parts is None:
        raw_path, _, query = origin_form(target).partition(b"?")
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = urllib.parse.unquote(path)
        parts = path, raw_path, query
        _TARGETS.remember(target, parts, len(target))
    return parts


@dataclass
class AppResponse:
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes | AsyncIterable[bytes] = b""


class AppRequest:
    """One request as an application sees it; the body arrives as the client sends it.

    Nothing asynchronous is made up front (no queue, no event): most requests have no
    body and are answered without the application ever waiting on one."""

    __slots__ = ("_chunks", "_disconnected", "_expect_continue", "_max_body", "_on_consumed",
                 "_send_continue", "_waiter", "client", "complete", "headers", "method",
                 "path", "query_string", "raw_path", "server", "target", "version")

    def __init__(self, method: bytes, target: bytes, headers: Headers, version: bytes,
                 client: tuple[str, int], server: tuple[str, int], *,
                 on_consumed: Callable[[], None], send_continue: Callable[[], None],
                 max_body: int) -> None:
        self.method = method_name(method)
        self.target = target
        self.path, self.raw_path, self.query_string = split_target(target)
        self.headers = headers
        self.version = version
        self.client = client
        self.server = server
        self.complete = False  # the whole body has arrived
        self._chunks: deque[bytes | None] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._disconnected: asyncio.Event | bool = False
        self._on_consumed = on_consumed
        self._send_continue = send_continue
        self._expect_continue = headers.has(b"expect") and \
            b"100-continue" in headers.tokens(b"expect")
        self._max_body = max_body

    # driver side
    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._wake()

    def finish(self) -> None:
        self.complete = True
        self._chunks.append(None)
        self._wake()

    def disconnect(self) -> None:
        """The client went away (the server also cancels the application's task)."""
        if isinstance(self._disconnected, asyncio.Event):
            self._disconnected.set()
        else:
            self._disconnected = True

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def buffered(self) -> int:
        return len(self._chunks)

    @property
    def disconnected(self) -> asyncio.Event:
        """Set when the client has closed the connection (made on first use)."""
        event = self._disconnected
        if not isinstance(event, asyncio.Event):
            self._disconnected = asyncio.Event()
            if event:
                self._disconnected.set()
            return self._disconnected
        return event

    # application side
    async def stream(self) -> AsyncIterator[bytes]:
        if self._expect_continue:
            self._expect_continue = False
            self._send_continue()  # RFC 9110 10.1.1: the client waits for this
        seen = 0
        chunks = self._chunks
        while True:
            while not chunks:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
            chunk = chunks[0]
            if chunk is None:  # left in place: a second stream() ends at once
                self._on_consumed()
                return
            chunks.popleft()
            self._on_consumed()
            seen += len(chunk)
            if self._max_body and seen > self._max_body:
                raise RemoteProtocolError("request body over the limit", reply_hint=413)
            yield chunk

    async def body(self) -> bytes:
        return b"".join([chunk async for chunk in self.stream()])


Handler = Callable[[AppRequest], Awaitable[AppResponse]]


def load(spec: str) -> Any:
    """``package.module:attribute`` -> the object (as uvicorn's --app does)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"expected MODULE:ATTRIBUTE, got {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def asgi_scope(request: Request, client: tuple[str, int],
               server: tuple[str, int], scheme: str = "http") -> dict[str, Any]:
    """The ASGI 3 HTTP connection scope for a request (ASGI spec 2.3)."""
    path, raw_path, query = split_target(request.target)
    headers = request.headers.lowered()
    if request.target[0] != 47:  # not "/": an absolute-form target (int compare: no slice)
        headers = absolute_form_host(request.target, headers)
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": _VERSIONS.get(request.version) or request.version.decode(),
        "method": method_name(request.method),
        "scheme": scheme, "path": path, "raw_path": raw_path, "query_string": query,
        "root_path": "", "headers": headers,
        "client": client, "server": server,
    }


def absolute_form_host(target: bytes, headers: list[tuple[bytes, bytes]]
                       ) -> list[tuple[bytes, bytes]]:
    """RFC 9112 3.2.2: for an absolute-form target (``http://host:port/path``) the
    target's authority is the host, whatever the Host field said."""
    if b"://" not in target[:12]:
        return headers
    authority = target.partition(b"://")[2].split(b"/", 1)[0].split(b"?", 1)[0]
    return [(b"host", authority), *((n, v) for n, v in headers if n != b"host")]
