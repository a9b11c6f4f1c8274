"""Applications the HTTP server tests serve: a Starlette (ASGI) app and a native handler."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from netkit.servers.http.app import AppRequest, AppResponse


async def hello(request: Request) -> Response:
    return PlainTextResponse(f"hello {request.query_params.get('name', 'world')}\n")


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, media_type="application/octet-stream",
                    headers={"X-Length": str(len(body))})


async def numbers(request: Request) -> Response:
    async def gen():  # type: ignore[no-untyped-def]
        for i in range(5):
            yield f"{i}\n".encode()
    return StreamingResponse(gen(), media_type="text/plain")


async def boom(request: Request) -> Response:
    raise RuntimeError("application bug")


starlette_app = Starlette(routes=[Route("/hello", hello), Route("/echo", echo, methods=["POST"]),
                                  Route("/numbers", numbers), Route("/boom", boom)])


async def native(request: AppRequest) -> AppResponse:
    if request.path == "/upper":
        return AppResponse(200, [(b"Content-Type", b"text/plain")],
                           (await request.body()).upper())
    return AppResponse(200, [(b"Content-Type", b"text/plain")], b"native hello\n")


async def bomb(request: AppRequest) -> AppResponse:
    """1 KiB on the wire, 10 MiB once decoded: a decompression bomb in miniature."""
    import gzip
    return AppResponse(200, [(b"Content-Encoding", b"gzip")],
                       gzip.compress(b"\0" * (10 << 20)))


async def injector(scope, receive, send):  # type: ignore[no-untyped-def]
    """A raw ASGI app that tries to split its response with a CR LF in a header value."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"x-note", b"a\r\nSet-Cookie: stolen=1")]})
    await send({"type": "http.response.body", "body": b"never\n"})


async def whoami(request: AppRequest) -> AppResponse:
    """The worker's PID: which process of a --workers group answered."""
    import os
    return AppResponse(200, [(b"Content-Type", b"text/plain")], b"%d" % os.getpid())


async def scheme(scope, receive, send):  # type: ignore[no-untyped-def]
    """A raw ASGI app that answers with the scope's scheme (https behind [http.tls])."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["scheme"].encode()})


async def big(request: AppRequest) -> AppResponse:
    """200 KiB: an answer that fills a socket buffer quickly."""
    return AppResponse(200, [(b"Content-Type", b"application/octet-stream")], b"x" * 204800)
