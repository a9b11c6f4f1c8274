"""The synchronous face of the HTTP client: the same `Client`, run on the private loop
thread (`netkit.clients.background`), so there is one implementation.

    with SyncClient(base_url="https://api.example.test") as c:
        c.get("/users").json()

    get("https://example.test/", params={"q": "x"})     # a client for that one call

A SyncClient may be shared by threads: their requests run concurrently on the loop
and share its pool.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ...proto.http.cookies import CookieJar
from ..background import portal
from .client import Client, StreamingResponse
from .models import Response

#: the keywords of the module-level functions that configure the one-call client
_CLIENT_KEYS = {"verify", "proxy", "retry", "max_redirects", "max_decoded", "base_url",
                "event_hooks"}


class SyncClient:
    """`Client`'s methods without `await` (`stream` is a plain context manager)."""

    def __init__(self, **client_options: Any) -> None:
        self._portal = portal()
        self._client = Client(**client_options)

    @property
    def cookies(self) -> CookieJar:
        return self._client.cookies

    @property
    def connections_made(self) -> int:
        return self._client.connections_made

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._portal.call(self._client.aclose)

    def request(self, method: str, url: str, **kw: Any) -> Response:
        return self._portal.call(functools.partial(self._client.request, method, url, **kw))

    def get(self, url: str, **kw: Any) -> Response:
        return self.request("GET", url, **kw)

    def head(self, url: str, **kw: Any) -> Response:
        return self.request("HEAD", url, **kw)

    def options(self, url: str, **kw: Any) -> Response:
        return self.request("OPTIONS", url, **kw)

    def post(self, url: str, **kw: Any) -> Response:
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw: Any) -> Response:
        return self.request("PUT", url, **kw)

    def patch(self, url: str, **kw: Any) -> Response:
        return self.request("PATCH", url, **kw)

    def delete(self, url: str, **kw: Any) -> Response:
        return self.request("DELETE", url, **kw)

    @contextmanager
    def stream(self, method: str, url: str, **kw: Any) -> Iterator[SyncStreamingResponse]:
        """``with c.stream("GET", url) as r: for chunk in r.iter_bytes(): ...``"""
        with self._portal.wrap_async_context_manager(
                self._client.stream(method, url, **kw)) as response:
            yield SyncStreamingResponse(response, self._portal)


class SyncStreamingResponse:
    """A StreamingResponse read from a plain thread: its head's attributes, and
    `iter_bytes()`, `read()` in place of the async ones."""

    def __init__(self, response: StreamingResponse, portal: Any) -> None:
        self._response, self._portal = response, portal

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    def iter_bytes(self) -> Iterator[bytes]:
        chunks = self._response.aiter_bytes()
        while True:
            try:
                yield self._portal.call(chunks.__anext__)
            except StopAsyncIteration:
                return

    def read(self) -> Response:
        return self._portal.call(self._response.read)


def request(method: str, url: str, **kw: Any) -> Response:
    """One request with a client of its own (requests' habit: nothing kept between calls)."""
    options = {k: kw.pop(k) for k in list(kw) if k in _CLIENT_KEYS}
    with SyncClient(**options) as client:
        return client.request(method, url, **kw)


@contextmanager
def stream(method: str, url: str, **kw: Any) -> Iterator[SyncStreamingResponse]:
    options = {k: kw.pop(k) for k in list(kw) if k in _CLIENT_KEYS}
    with SyncClient(**options) as client, client.stream(method, url, **kw) as response:
        yield response


def get(url: str, **kw: Any) -> Response:
    return request("GET", url, **kw)


def head(url: str, **kw: Any) -> Response:
    return request("HEAD", url, **kw)


def options(url: str, **kw: Any) -> Response:
    return request("OPTIONS", url, **kw)


def post(url: str, **kw: Any) -> Response:
    return request("POST", url, **kw)


def put(url: str, **kw: Any) -> Response:
    return request("PUT", url, **kw)


def patch(url: str, **kw: Any) -> Response:
    return request("PATCH", url, **kw)


def delete(url: str, **kw: Any) -> Response:
    return request("DELETE", url, **kw)
