"""DNS over HTTPS (RFC 8484) for the resolver: a native application on netkit's own HTTP
server, at /dns-query on `dns.https_listen`, over TLS with `[dns.tls]`.

    GET  /dns-query?dns=<the query, base64url without padding>
    POST /dns-query   Content-Type: application/dns-message   (the query as the body)

Answers are application/dns-message with Cache-Control max-age from the smallest TTL
in the answer (RFC 8484 5.1); a query that is not one gets 400, another path 404,
another method 405, another content type 415. The query goes the same way as one over
TCP (the answer cache first, then the resolver; no size limit but DNS's own).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import TYPE_CHECKING

from netkit.config import Size
from netkit.proto.dns.wire import smallest_ttl
from netkit.servers.http.app import AppRequest, AppResponse
from netkit.servers.http.server import Config as HTTPConfig

if TYPE_CHECKING:
    from .service import Config, DNSService

PATH = "/dns-query"
MESSAGE = b"application/dns-message"
MAX_MESSAGE = 65535


def http_config(config: Config) -> HTTPConfig:
    """The HTTP server's settings for the DoH listeners."""
    from .service import _with_alpn
    return HTTPConfig(listen=config.https_listen, tls=_with_alpn(config.tls, ("http/1.1",)),
                      app_type="native", max_body=Size(MAX_MESSAGE), limits=config.tcp)


def _plain(status: int, text: str, *extra: tuple[bytes, bytes]) -> AppResponse:
    return AppResponse(status, [(b"content-type", b"text/plain; charset=utf-8"), *extra],
                       text.encode() + b"\n")


class DoH:
    """The application: one DNS message in, one out."""

    def __init__(self, service: DNSService) -> None:
        self.service = service
        self.queries = 0
        self.bad_requests = 0

    async def __call__(self, request: AppRequest) -> AppResponse:
        if request.path != PATH:
            return _plain(404, f"DNS over HTTPS is at {PATH}")
        if request.method == "GET":
            query = _from_get(request.query_string)
        elif request.method == "POST":
            kind = (request.headers.get(b"content-type") or b"").split(b";")[0].strip()
            if kind.lower() != MESSAGE:
                return _plain(415, "POST takes Content-Type: application/dns-message")
            query = await request.body()
        else:
            return _plain(405, "GET or POST", (b"allow", b"GET, POST"))
        if query is None or len(query) < 12:
            self.bad_requests += 1
            return _plain(400, "no DNS query (GET: ?dns=<base64url>; POST: the message)")
        self.queries += 1
        answer = await self.answer(query, request.client[0])
        if answer is None:
            return _plain(400, "not a DNS query")
        if not answer:
            return _plain(403, "dropped by policy")
        ttl = smallest_ttl(answer)
        return AppResponse(200, [(b"content-type", MESSAGE),
                                 (b"cache-control", b"max-age=%d" % ttl)], answer)

    async def answer(self, query: bytes, client: str) -> bytes | None:
        """The answer as over TCP; None when the server drops the message (a response,
        garbage without a header)."""
        service = self.service
        out, plain = service.fast_answer(query, client)
        if out is not None:
            service.cache_hits += 1
            service.rcodes[out[3] & 15] += 1
            return out
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def reply(data: bytes) -> None:
            if not future.done():
                future.set_result(data)
        before = service.stats["dropped"]
        service.handle(query, client, reply, None, plain)
        if not future.done() and service.stats["dropped"] != before:
            return None
        data = await future
        if data:
            service.rcodes[data[3] & 15] += 1
        return data


def _from_get(query_string: bytes) -> bytes | None:
    for part in query_string.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == b"dns":
            try:  # base64url, padding left out (RFC 8484 4.1); tolerated if present
                return base64.urlsafe_b64decode(value + b"=" * (-len(value) % 4))
            except (binascii.Error, ValueError):
                return None
    return None
