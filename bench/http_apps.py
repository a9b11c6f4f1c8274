"""Hello-world applications for bench/http_server.py: the same answer from every server."""

from __future__ import annotations

from netkit.servers.http.app import AppRequest, AppResponse

BODY = b"Hello, world!\n"


async def asgi_hello(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", b"%d" % len(BODY))]})
    await send({"type": "http.response.body", "body": BODY})


async def native_hello(request: AppRequest) -> AppResponse:
    return AppResponse(200, [(b"Content-Type", b"text/plain")], BODY)


def aiohttp_main(port: int) -> None:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
