"""netkit's HTTP client: httpx's API and requests' habits, asynchronous and synchronous.

    from netkit.clients import http

    r = http.get("https://api.example.test/users", params={"page": 2})   # sync
    r.raise_for_status(); print(r.json())

    async with http.Client(base_url="https://api.example.test") as client:   # async
        r = await client.post("/users", json={"name": "ann"})

    python -m netkit.clients.http URL ...        (curl's options; --help lists them)

See docs/clients.md.
"""

from ...errors import (
    ConnectError,
    ConnectTimeout,
    HTTPStatusError,
    NetkitError,
    ReadError,
    ReadTimeout,
    TLSError,
    TooManyRedirects,
    WriteError,
)
from ...proto.http.cookies import Cookie, CookieJar
from .client import BasicAuth, BearerAuth, Client, StreamingResponse
from .models import Headers, Request, Response, Retry, Timeout
from .sync import (
    SyncClient,
    SyncStreamingResponse,
    delete,
    get,
    head,
    options,
    patch,
    post,
    put,
    request,
    stream,
)

__all__ = [
    "BasicAuth", "BearerAuth", "Client", "ConnectError", "ConnectTimeout", "Cookie",
    "CookieJar", "HTTPStatusError", "Headers", "NetkitError", "ReadError", "ReadTimeout",
    "Request", "Response", "Retry", "StreamingResponse", "SyncClient", "SyncStreamingResponse",
    "TLSError", "Timeout", "TooManyRedirects", "WriteError", "delete", "get", "head",
    "options", "patch", "post", "put", "request", "stream",
]
