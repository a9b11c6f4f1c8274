"""Fetch JSON from an API with retries, synchronously, as a script would.

    python clients/fetch_json.py [URL]

With a URL, it GETs it (verified TLS, retries on 429/502/503/504 and on connection
errors, backing off or waiting what Retry-After says) and prints the JSON. Without one,
it starts an API of its own (netkit.testing's HTTPOrigin, in-process on 127.0.0.1) that
fails twice with 503 before it answers, and fetches from that.
"""

from __future__ import annotations

import json
import sys

from netkit.clients import http


def fetch(url: str) -> object:
    retry = http.Retry(attempts=4, backoff=0.1)
    with http.SyncClient(retry=retry, timeout=10) as client:
        r = client.get(url, params={"limit": 2}, headers={"Accept": "application/json"})
        r.raise_for_status()  # HTTPStatusError if it still failed after the retries
        took = r.elapsed.total_seconds() * 1000
        print(f"{r.status_code} in {took:.1f} ms", file=sys.stderr)
        return r.json()


def against_an_api_of_our_own() -> object:
    from netkit.testing import serve_in_thread
    from netkit.testing.http import HTTPOrigin

    origin = HTTPOrigin()
    origin.expect("GET", "/users").respond(503, headers={"Retry-After": "0"})
    origin.expect("GET", "/users").respond(503)
    origin.expect("GET", "/users", query={"limit": "2"}).respond(
        json=[{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}])
    with serve_in_thread("http", app=origin.handler) as server:
        data = fetch(server.url + "/users")
    origin.check()
    return data


def main(argv: list[str]) -> int:
    try:
        data = fetch(argv[0]) if argv else against_an_api_of_our_own()
    except http.NetkitError as exc:  # ConnectError, ReadTimeout, HTTPStatusError, ...
        print(f"fetch_json: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
