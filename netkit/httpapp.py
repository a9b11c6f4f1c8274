"""Applications on the HTTP server: a small native API, and an ASGI 3 adapter over it.

    async def handler(request: AppRequest) -> AppResponse

The request body streams (`async for chunk in request.stream()`, or
`await request.body()`); the response body is bytes (sent with Content-Length)
or an async iterable of bytes (sent chunked). `asgi(app)` turns an ASGI 3
application (Starlette, FastAPI, Django's ASGI handler ...) into such a handler.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import RemoteProtocolError
from .proto.http import Headers

log = logging.getLogger("netkit.http")


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


def asgi(app: Any) -> Handler:
    """An ASGI 3 application as a native handler (HTTP scope only; no lifespan)."""

    async def handle(request: AppRequest) -> AppResponse:
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.version.decode(), "method": request.method,
            "scheme": "http", "path": request.path, "raw_path": request.raw_path,
            "query_string": request.query_string, "root_path": "",
            "headers": [(n.lower(), v) for n, v in request.headers],
            "client": request.client, "server": request.server,
        }
        body = request.stream()
        body_done = False
        started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = \
            asyncio.get_running_loop().create_future()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)

        async def receive() -> dict[str, Any]:
            nonlocal body_done
            if body_done:
                await request.disconnected.wait()
                return {"type": "http.disconnect"}
            try:
                chunk = await body.__anext__()
            except StopAsyncIteration:
                body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": chunk, "more_body": True}

        completed = False

        async def send(message: dict[str, Any]) -> None:
            nonlocal completed
            if message["type"] == "http.response.start":
                started.set_result((message["status"],
                                    [(bytes(n), bytes(v)) for n, v in message.get("headers", [])]))
            elif message["type"] == "http.response.body":
                data = bytes(message.get("body", b""))
                if data:
                    await chunks.put(data)
                if not message.get("more_body", False):
                    completed = True
                    await chunks.put(None)

        async def run() -> None:
            try:
                await app(scope, receive, send)
            except Exception:
                if not completed:
                    raise
                # the response went out whole (Starlette's error middleware sends a 500 and
                # then re-raises): log it like uvicorn does, the client is served
                log.exception("http: the application failed on %s %s (after its response)",
                              request.method, request.target.decode("latin-1"))
            finally:
                if not started.done():
                    started.set_exception(RuntimeError("the ASGI app sent no response"))
                await chunks.put(None)

        task = asyncio.get_running_loop().create_task(run())
        status, headers = await started

        async def stream_out() -> AsyncIterator[bytes]:
            while True:
                chunk = await chunks.get()
                if chunk is None:
                    break
                yield chunk
            await task  # an exception after the response started ends the connection

        return AppResponse(status, headers, stream_out())

    return handle
