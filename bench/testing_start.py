"""Start-to-first-answer time of servers for tests: `netkit.testing.serve("dns")` and
`serve("http")` in-process, against pytest-httpserver (werkzeug in a thread) started
the same way, in the same run.

    python bench/testing_start.py [--runs 200] [--cold 7]

Warm: in one process, after the first start (imports done), the median time from
"start" to the first answer read by a client. Cold: a fresh Python process each time,
from before the import of the library to the first answer (what a test session's first
server costs). The figure is starts per second; ours/peer above 1 means ours is faster.
The whole run is pinned to one core (server and client share the process).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

ZONE = {"dns": {"recursion": False, "zone": [{"name": "test", "records": ["api A 192.0.2.1"]}]}}
QUERY = bytes.fromhex("abcd01000001000000000000") + b"\x03api\x04test\x00\x00\x01\x00\x01"
GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def http_get(host: str, port: int) -> bytes:
    with socket.create_connection((host, port)) as s:
        s.sendall(GET)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.split(b" ", 2)[1] == b"200", data[:60]
    return data


def dns_ask(host: str, port: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(QUERY, (host, port))
        data = s.recv(512)
    assert data[:2] == b"\xab\xcd" and data[3] & 0x0F == 0, data
    return data


def ours_dns() -> float:
    from netkit.testing import serve_in_thread
    t = time.perf_counter()
    with serve_in_thread("dns", ZONE) as server:
        dns_ask(*server.addresses[0])
        return time.perf_counter() - t


def ours_dns_in_loop() -> float:
    """`async with serve("dns")` on the caller's own loop (the async form)."""
    import anyio

    from netkit.testing import serve

    async def once() -> float:
        t = time.perf_counter()
        async with serve("dns", ZONE) as server:
            udp = await anyio.create_connected_udp_socket(*server.addresses[0])
            async with udp:
                await udp.send(QUERY)
                await udp.receive()
            return time.perf_counter() - t

    return anyio.run(once)


def ours_http() -> float:
    from netkit.servers.http.app import AppResponse
    from netkit.testing import serve_in_thread

    async def hello(request: object) -> AppResponse:
        return AppResponse(200, [], b"hello")

    t = time.perf_counter()
    with serve_in_thread("http", app=hello) as server:
        http_get(*server.addresses[0])
        return time.perf_counter() - t


def peer_http() -> float:
    import logging

    from pytest_httpserver import HTTPServer
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access line per request
    t = time.perf_counter()
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        server.expect_request("/").respond_with_data("hello")
        http_get("127.0.0.1", server.port)
        return time.perf_counter() - t
    finally:
        server.stop()


CASES = {"ours-dns": ours_dns, "ours-dns-async": ours_dns_in_loop, "ours-http": ours_http,
         "peer-http": peer_http}


def warm(case: str, runs: int) -> float:
    CASES[case]()  # imports, first-use caches
    return statistics.median(CASES[case]() for _ in range(runs))


def cold(case: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, __file__, "--one", case], capture_output=True,
                             text=True, check=True, timeout=60)
        times.append(float(out.stdout))
    return statistics.median(times)


def line(name: str, ours: float, peer: float) -> None:
    print(f"{name} ours/peer = {peer / ours:.2f} (ours {1 / ours:,.1f} starts/s, "
          f"peer {1 / peer:,.1f} starts/s)")
    print(f"  {name}: ours {ours * 1000:.2f} ms, peer {peer * 1000:.2f} ms to the first answer")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--cold", type=int, default=7)
    p.add_argument("--one", choices=list(CASES))
    args = p.parse_args()
    if args.one:  # a fresh process: imports included
        t = time.perf_counter()
        CASES[args.one]()
        print(time.perf_counter() - t)
        return 0
    os.sched_setaffinity(0, {int(os.environ.get("BENCH_CORE", "1")) % (os.cpu_count() or 1)})
    w = {case: warm(case, args.runs) for case in CASES}
    c = {case: cold(case, args.cold) for case in CASES}
    line("testing-start-http", w["ours-http"], w["peer-http"])
    # pytest-httpserver has no DNS: our DNS start is set beside its HTTP start
    line("testing-start-dns-vs-httpserver", w["ours-dns"], w["peer-http"])
    line("testing-start-dns-async-vs-httpserver", w["ours-dns-async"], w["peer-http"])
    line("testing-start-http-cold", c["ours-http"], c["peer-http"])
    line("testing-start-dns-cold-vs-httpserver", c["ours-dns"], c["peer-http"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
