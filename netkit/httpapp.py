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
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import RemoteProtocolError
from .proto.http import Headers


@dataclass
class AppResponse:
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes | AsyncIterable[bytes] = b""


class AppRequest:
    """One request as an application sees it; the body arrives as the client sends it."""

    def __init__(self, method: bytes, target: bytes, headers: Headers, version: bytes,
                 client: tuple[str, int], server: tuple[str, int], *,
                 on_consumed: Callable[[], None], send_continue: Callable[[], None],
                 max_body: int) -> None:
        self.method = method.decode("ascii")
        self.target = target
        path, _, query = target.partition(b"?")
        self.raw_path = path
        self.path = urllib.parse.unquote(path.decode("latin-1"))
        self.query_string = query
        self.headers = headers
        self.version = version
        self.client = client
        self.server = server
        self.complete = False  # the whole body has arrived
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._on_consumed = on_consumed
        self._send_continue = send_continue
        self._expect_continue = b"100-continue" in headers.tokens(b"expect")
        self._max_body = max_body
        self.disconnected = asyncio.Event()

    # driver side
    def feed(self, data: bytes) -> None:
        self._chunks.put_nowait(data)

    def finish(self) -> None:
        self.complete = True
        self._chunks.put_nowait(None)

    @property
    def buffered(self) -> int:
        return self._chunks.qsize()

    # application side
    async def stream(self) -> AsyncIterator[bytes]:
        if self._expect_continue:
            self._expect_continue = False
            self._send_continue()  # RFC 9110 10.1.1: the client waits for this
        seen = 0
        while True:
            chunk = await self._chunks.get()
            self._on_consumed()
            if chunk is None:
                self._chunks.put_nowait(None)  # a second stream() ends at once
                return
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


def asgi_scope(request: AppRequest) -> dict[str, Any]:
    """The ASGI 3 HTTP connection scope for a request (ASGI spec 2.3)."""
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.version.decode(), "method": request.method,
        "scheme": "http", "path": request.path, "raw_path": request.raw_path,
        "query_string": request.query_string, "root_path": "",
        "headers": [(n.lower(), v) for n, v in request.headers],
        "client": request.client, "server": request.server,
    }
