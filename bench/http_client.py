"""Our HTTP client against httpx and aiohttp's client, on the same local server.

Each client runs alone in a process on core 1 and makes keep-alive GETs to nginx on core
0 for SECONDS, one at a time (C=1) and ten at once on one client (C=10); the synchronous
face (SyncClient) against requests (a Session), sequential GETs. requests/s per client.
Rounds alternate.

    python bench/http_client.py [--seconds 3] [--rounds 3]
prints  http-client-c1-vs-httpx ours/peer = ... (c1, c10; vs httpx and aiohttp) and
        http-client-sync-vs-requests ours/peer = ...
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LOAD_CORE, ROOT, free_port, pinned, report, require, start, stop, wait_port


async def _spread(concurrency: int, seconds: float, one) -> int:  # type: ignore[no-untyped-def]
    """`concurrency` tasks each making requests with `one()` until the time is up."""
    import asyncio
    end = time.monotonic() + seconds

    async def worker() -> int:
        n = 0
        while time.monotonic() < end:
            await one()
            n += 1
        return n
    return sum(await asyncio.gather(*(worker() for _ in range(concurrency))))


async def loop_ours(url: str, seconds: float, concurrency: int) -> int:
    sys.path.insert(0, str(ROOT))
    from netkit.clients.http import Client
    async with Client() as c:
        async def one() -> None:
            r = await c.get(url)
            assert r.status_code == 200
        return await _spread(concurrency, seconds, one)


async def loop_httpx(url: str, seconds: float, concurrency: int) -> int:
    import httpx
    async with httpx.AsyncClient() as c:
        async def one() -> None:
            r = await c.get(url)
            assert r.status_code == 200
        return await _spread(concurrency, seconds, one)


async def loop_aiohttp(url: str, seconds: float, concurrency: int) -> int:
    import aiohttp
    async with aiohttp.ClientSession() as s:
        async def one() -> None:
            async with s.get(url) as r:
                await r.read()
                assert r.status == 200
        return await _spread(concurrency, seconds, one)


def loop_ours_sync(url: str, seconds: float) -> int:
    sys.path.insert(0, str(ROOT))
    from netkit.clients.http import SyncClient
    n = 0
    with SyncClient() as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert c.get(url).status_code == 200
            n += 1
    return n


def loop_requests(url: str, seconds: float) -> int:
    import requests
    n = 0
    with requests.Session() as s:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert s.get(url).status_code == 200
            n += 1
    return n


def client_main(kind: str, url: str, seconds: float, concurrency: int) -> None:
    if kind in ("ours-sync", "requests"):
        n = {"ours-sync": loop_ours_sync, "requests": loop_requests}[kind](url, seconds)
    else:
        import uvloop
        n = uvloop.run({"ours": loop_ours, "httpx": loop_httpx, "aiohttp": loop_aiohttp}[kind](
            url, seconds, concurrency))
    print(n / seconds)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client")
    parser.add_argument("--url")
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    if args.client:
        client_main(args.client, args.url, args.seconds, args.concurrency)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-client-"))
    tmp.chmod(0o755)
    www = tmp / "www"
    www.mkdir(mode=0o755)
    (www / "hello.txt").write_text("Hello, world!\n")
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off; keepalive_requests 1000000;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{ listen 127.0.0.1:{port}; root {www}; }}
}}
""")
    nginx = start([require("nginx"), "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"])
    url = f"http://127.0.0.1:{port}/hello.txt"
    runs = [(kind, c) for c in (1, 10) for kind in ("ours", "httpx", "aiohttp")] + \
        [("ours-sync", 1), ("requests", 1)]
    results: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
    try:
        wait_port(port)
        for _ in range(args.rounds):
            for kind, concurrency in runs:
                out = subprocess.run(pinned(LOAD_CORE, [sys.executable, __file__, "--client",
                                                        kind, "--url", url, "--seconds",
                                                        str(args.seconds), "--concurrency",
                                                        str(concurrency)]),
                                     capture_output=True, text=True, timeout=args.seconds + 60,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT)))
                if out.returncode != 0:
                    raise SystemExit(f"bench: {kind} client failed:\n{out.stderr}")
                results[kind, concurrency].append(float(out.stdout.strip()))
    finally:
        stop(nginx)
    for c in (1, 10):
        report(f"http-client-c{c}-vs-httpx", results["ours", c], results["httpx", c], "req/s")
        report(f"http-client-c{c}-vs-aiohttp", results["ours", c], results["aiohttp", c],
               "req/s")
    report("http-client-sync-vs-requests", results["ours-sync", 1], results["requests", 1],
           "req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
