"""Our HTTP proxy against tinyproxy, and our CONNECT tunnel against a bare splice relay.

1. wrk (keep-alive, 50 connections, absolute-form requests through the proxy) on core 1
   with the nginx origin; the proxy on core 0. Requests/s and p99 latency.
2. CONNECT bulk: a client pushes MIB MiB through a tunnel to a sink that counts them,
   against the same push through a bare relay built from transport/splice.py (the
   lower bound of any relay here). MiB/s.

    python bench/proxy.py [--seconds 5] [--rounds 3] [--mib 512]
prints  proxy-vs-tinyproxy ours/peer = ...  proxy-p99-vs-tinyproxy (lower is better) and
        proxy-connect-vs-splice-relay ours/peer = ...
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    LOAD_CORE,
    ROOT,
    free_port,
    pinned,
    push,
    report,
    require,
    start,
    stop,
    wait_port,
)

WRK_SCRIPT = 'wrk.path = "{url}"\n'


def wrk_through(proxy_port: int, origin_url: str, seconds: float, tmp: Path
                ) -> tuple[float, float]:
    """(requests/s, p99 ms) from wrk sending absolute-form requests to the proxy."""
    script = tmp / "absolute.lua"
    script.write_text(WRK_SCRIPT.format(url=origin_url))
    argv = [require("wrk"), "-t1", "-c50", f"-d{int(seconds)}s", "--latency", "-s",
            str(script), f"http://127.0.0.1:{proxy_port}/"]
    out = subprocess.run(pinned(LOAD_CORE, argv), capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    if not rate or not p99 or "Non-2xx" in out:
        raise SystemExit(f"bench: wrk through the proxy failed:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return float(rate.group(1)), float(p99.group(1)) * scale


def relay_main(port: int, backend: int) -> None:
    """A bare relay: accept, connect to the backend, splice (transport/splice.py)."""
    sys.path.insert(0, str(ROOT))
    from netkit.config import Address
    from netkit.transport.connect import open_connection
    from netkit.transport.connection import Limits
    from netkit.transport.listeners import StreamServer
    from netkit.transport.splice import Splice

    async def main() -> None:
        def inbound(splice: Splice) -> None:
            splice.inbound.conn.pause_reading()
            asyncio.get_running_loop().create_task(connect(splice))

        async def connect(splice: Splice) -> None:
            await open_connection(Address("127.0.0.1", backend), splice.outbound)
            splice.attach()

        server = StreamServer("relay", lambda: Splice(on_inbound=inbound).inbound,
                              limits=Limits())
        await server.listen([Address("127.0.0.1", port)])
        await asyncio.Event().wait()
    import uvloop
    uvloop.run(main())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--relay", type=int, nargs=2)
    args = parser.parse_args()
    if args.relay:
        relay_main(*args.relay)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-proxy-"))
    tmp.chmod(0o755)
    www = tmp / "www"
    www.mkdir(mode=0o755)
    (www / "hello.txt").write_text("Hello, world!\n")
    nginx_port, ours, theirs, sink, relay = (free_port() for _ in range(5))
    (tmp / "nginx.conf").write_text(f"""worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; keepalive_requests 1000000;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{ listen 127.0.0.1:{nginx_port}; root {www}; }}
}}
""")
    (tmp / "tinyproxy.conf").write_text(f"""Port {theirs}
Listen 127.0.0.1
Timeout 30
MaxClients 200
Allow 127.0.0.1
LogLevel Critical
PidFile "{tmp}/tinyproxy.pid"
""")
    procs = [
        start([require("nginx"), "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-g",
               "daemon off;"], core=LOAD_CORE),
        start([sys.executable, "-m", "netkit.servers.proxy", "--listen", f"127.0.0.1:{ours}",
               "--set", "proxy.deny_destinations=[]", "--set", f"proxy.connect_ports=[{sink}]",
               "--set", "proxy.limits.max_connections=2048", "--log-level", "warning"]),
        start([require("tinyproxy"), "-d", "-c", str(tmp / "tinyproxy.conf")]),
        start([sys.executable, str(ROOT / "bench" / "common.py"), "--sink", str(sink)],
              core=LOAD_CORE),
        start([sys.executable, __file__, "--relay", str(relay), str(sink)]),
    ]
    rates: dict[str, list[float]] = {"ours": [], "tinyproxy": []}
    p99s: dict[str, list[float]] = {"ours": [], "tinyproxy": []}
    bulk: dict[str, list[float]] = {"connect": [], "relay": []}
    origin = f"http://127.0.0.1:{nginx_port}/hello.txt"
    try:
        for port in (nginx_port, ours, theirs, sink, relay):
            wait_port(port)
        for _ in range(args.rounds):
            for name, port in (("ours", ours), ("tinyproxy", theirs)):
                rate, p99 = wrk_through(port, origin, args.seconds, tmp)
                rates[name].append(rate)
                p99s[name].append(p99)
            bulk["connect"].append(push(ours, args.mib, sink))
            bulk["relay"].append(push(relay, args.mib, None))
    finally:
        for proc in procs:
            stop(proc)
    report("proxy-vs-tinyproxy", rates["ours"], rates["tinyproxy"], "req/s")
    # latency: lower is better, so a ratio under 1 is the win here
    report("proxy-p99-vs-tinyproxy", p99s["ours"], p99s["tinyproxy"], "ms")
    report("proxy-connect-vs-splice-relay", bulk["connect"], bulk["relay"], "MiB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
