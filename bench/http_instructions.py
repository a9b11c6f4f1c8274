"""Instructions per HTTP request, counted by callgrind: repeatable where timings are not.

A socket-less driver: the real HTTP server connection (`servers/http/server.py`) and the
real application path, fed wrk's request (or a browser's eleven-field head) N times on
one connection, its responses collected by a stand-in transport. Run under callgrind at
two N and differenced, the start-up cost cancels out and what is left is one request.

    python bench/http_instructions.py [--app asgi|native] [--head wrk|browser]
    python bench/http_instructions.py --inner N ...   (what callgrind runs)

Needs valgrind (Debian package `valgrind`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEADS = {
    "wrk": b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    "browser": (b"GET /index.html?q=%d HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 "
                b"Firefox/120.0\r\nAccept: text/html,application/xhtml+xml,application/xml;"
                b"q=0.9,image/avif,image/webp,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\n"
                b"Accept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n"
                b"Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n"
                b"Sec-Fetch-Mode: navigate\r\nSec-Fetch-Site: none\r\nSec-Fetch-User: ?1\r\n"
                b"\r\n"),
}


class StandIn:
    """What the server's connection handler needs of a transport `Connection`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.peer = ("127.0.0.1", 40000)
        self.local = ("127.0.0.1", 8080)
        self.out = bytearray()
        self.responses = 0
        self.tls_info = None
        self.last_io = 0.0

    def write(self, data: bytes) -> None:
        self.out += data
        self.responses += 1

    def close(self) -> None:
        raise AssertionError("closed")

    def abort(self) -> None:
        raise AssertionError("aborted")

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def drive(n: int, app: str, head: str) -> None:
    try:
        from netkit.servers.http import server
    except ImportError:  # the layout before servers/http/ was a package
        import netkit.servers.http as server  # type: ignore[no-redef]

    config = server.Config(app=f"bench.http_apps:{app}_hello",
                           app_type="asgi" if app == "asgi" else "native")
    service = server.HTTPService(config)
    service.access_logged = False
    handler = server._HTTPConnection(service)
    conn = StandIn(asyncio.get_running_loop())
    handler.connection_made(conn)  # type: ignore[arg-type]
    template = HEADS[head]
    for i in range(n):
        data = template % i if b"%d" in template else template
        handler.data_received(data)
        while conn.responses <= i:
            await asyncio.sleep(0)
    assert conn.out.count(b"HTTP/1.1 200 OK") == n, conn.out[:300]


def count(n: int, app: str, head: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        sys.executable, __file__, "--inner", str(n), "--app", app,
                        "--head", head], check=True, capture_output=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
        m = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
        assert m, "no totals in the callgrind output"
        return int(m.group(1))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--inner", type=int)
    p.add_argument("--app", default="asgi", choices=["asgi", "native"])
    p.add_argument("--head", default="wrk", choices=sorted(HEADS))
    p.add_argument("--n", type=int, nargs=2, default=[2000, 6000])
    args = p.parse_args()
    if args.inner is not None:
        import uvloop
        uvloop.run(drive(args.inner, args.app, args.head))
        return 0
    lo, hi = args.n
    per = (count(hi, args.app, args.head) - count(lo, args.app, args.head)) / (hi - lo)
    print(f"http-instructions-{args.app}-{args.head} = {per:,.0f} instructions a request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
