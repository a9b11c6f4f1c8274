"""Our HTTP client against httpx and aiohttp's client, on the same local server.

Each client runs alone in a process on core 1 and makes sequential keep-alive GETs to
nginx on core 0 for SECONDS; requests/s per client. Rounds alternate.

    python bench/http_client.py [--seconds 3] [--rounds 3]
prints  http-client-vs-httpx ours/peer = ...  and  http-client-vs-aiohttp ours/peer = ...
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


async def loop_ours(url: str, seconds: float) -> int:
    sys.path.insert(0, str(ROOT))
    from netkit.clients.http import Client
    n = 0
    async with Client() as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r = await c.get(url)
            assert r.status == 200
            n += 1
    return n


async def loop_httpx(url: str, seconds: float) -> int:
    import httpx
    n = 0
    async with httpx.AsyncClient() as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r = await c.get(url)
            assert r.status_code == 200
            n += 1
    return n


async def loop_aiohttp(url: str, seconds: float) -> int:
    import aiohttp
    n = 0
    async with aiohttp.ClientSession() as s:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            async with s.get(url) as r:
                await r.read()
                assert r.status == 200
            n += 1
    return n


def client_main(kind: str, url: str, seconds: float) -> None:
    import uvloop
    n = uvloop.run({"ours": loop_ours, "httpx": loop_httpx, "aiohttp": loop_aiohttp}[kind](
        url, seconds))
    print(n / seconds)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--client")
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.client:
        client_main(args.client, args.url, args.seconds)
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
    results: dict[str, list[float]] = {"ours": [], "httpx": [], "aiohttp": []}
    try:
        wait_port(port)
        for _ in range(args.rounds):
            for kind in results:
                out = subprocess.run(pinned(LOAD_CORE, [sys.executable, __file__, "--client",
                                                        kind, "--url", url, "--seconds",
                                                        str(args.seconds)]),
                                     capture_output=True, text=True, timeout=args.seconds + 60,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT)))
                if out.returncode != 0:
                    raise SystemExit(f"bench: {kind} client failed:\n{out.stderr}")
                results[kind].append(float(out.stdout.strip()))
    finally:
        stop(nginx)
    report("http-client-vs-httpx", results["ours"], results["httpx"], "req/s")
    report("http-client-vs-aiohttp", results["ours"], results["aiohttp"], "req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
