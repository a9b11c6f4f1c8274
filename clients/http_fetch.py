"""Fetch with netkit's HTTP client, from an HTTP origin this script starts.

    python clients/http_fetch.py

The origin is the `netkit_http` fixture's (netkit.testing.http.HTTPOrigin on the HTTP
server, in-process, 127.0.0.1 port 0), told what to expect; the client
(`netkit.clients.http.Client`) makes the requests, and the origin checks at the end
that each expected request came.
"""

from __future__ import annotations

import json
import sys

import anyio

from netkit.clients.http import Client
from netkit.testing import serve_in_thread
from netkit.testing.http import HTTPOrigin


async def fetch(base: str) -> None:
    async with Client() as client:
        listing = await client.get(base + "/users?page=1")
        print(listing.status, listing.text.strip())
        created = await client.post(base + "/users", content=json.dumps({"name": "ann"}).encode(),
                                    headers=[("content-type", "application/json")])
        print(created.status, created.text.strip())
        print(f"{client.connections_made} connection(s) for 2 requests (keep-alive)")


def main() -> int:
    origin = HTTPOrigin()
    origin.expect("GET", "/users", query={"page": "1"}).respond(json=[{"id": 1}])
    origin.expect("POST", "/users", json={"name": "ann"}).respond(201, json={"id": 2})
    with serve_in_thread("http", app=origin.handler) as server:
        anyio.run(fetch, server.url)
    origin.check()  # AssertionError if a request was missing or unexpected
    print("every expected request came")
    return 0


if __name__ == "__main__":
    sys.exit(main())
