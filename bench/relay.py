"""The NAT relay's forwards against socat (fork per connection) and rinetd, same load.

Relays on core 0, forwarding to backends on core 1; the loads on core 1:
  - TCP bulk: MIB MiB pushed through a forward to a counting sink (MiB/s);
  - new connections/s: wrk with "Connection: close" through a forward to nginx (every
    request a new TCP connection through the relay);
  - UDP datagrams/s: dnsperf through a UDP forward to an NSD root server (each query a
    datagram each way); socat only (rinetd's UDP forwarding is not compared).

    python bench/relay.py [--mib 512] [--seconds 5] [--rounds 3]   (root: NSD on port 53)
prints  relay-tcp-bulk-vs-socat, relay-connections-vs-socat, relay-connections-vs-rinetd,
        relay-connections-bare-uvloop-vs-rinetd (a 60-line uvloop relay, BARE below: the
        floor of any relay on asyncio's protocols), relay-udp-vs-socat
"""

from __future__ import annotations

import argparse
import os
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

sys.path.insert(0, str(ROOT))
from netkit.testing.nsd import start_hierarchy

BARE = """
# The least a uvloop TCP relay does for a connection: accept, connect onward, copy both
# ways with half-close. No firewall, table, limits, timers or counters: the floor of a
# relay on asyncio's protocols, measured beside ours and rinetd.
import asyncio, sys
import uvloop


class Side(asyncio.Protocol):
    def __init__(self, other=None):
        self.other, self.t, self.ready, self.pending, self.eof = other, None, False, [], False

    def connection_made(self, t):
        self.t = t

    def data_received(self, d):
        if self.other is not None and self.other.ready:
            self.other.t.write(d)
        else:
            self.pending.append(d)

    def eof_received(self):
        self.eof = True
        if self.other is not None and self.other.ready:
            self.other.t.write_eof()
            if self.other.eof:
                self.t.close()
                self.other.t.close()
        return True

    def connection_lost(self, exc):
        if self.other is not None and self.other.t is not None:
            self.other.t.close()


async def main(port, target):
    loop = asyncio.get_running_loop()

    async def connect(inside):
        out = Side(inside)
        try:
            await loop.create_connection(lambda: out, "127.0.0.1", target)
        except OSError:
            inside.t.abort()
            return
        inside.other = out
        for side, other in ((inside, out), (out, inside)):
            for d in side.pending:
                other.t.write(d)
            if side.eof:
                other.t.write_eof()
        inside.ready = out.ready = True
        if inside.eof and out.eof:
            inside.t.close()
            out.t.close()
        inside.t.resume_reading()

    class Inside(Side):
        def connection_made(self, t):
            self.t = t
            t.pause_reading()
            loop.create_task(connect(self))

    server = await loop.create_server(Inside, "127.0.0.1", port, backlog=1024)
    await server.serve_forever()

uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


def wrk_close(port: int, seconds: float) -> float:
    """Requests/s with a new connection per request (wrk, Connection: close)."""
    argv = [require("wrk"), "-t1", "-c50", f"-d{int(seconds)}s", "-H", "Connection: close",
            f"http://127.0.0.1:{port}/hello.txt"]
    out = subprocess.run(pinned(LOAD_CORE, argv), capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rate or "Non-2xx" in out:
        raise SystemExit(f"bench: wrk through a relay failed:\n{out}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    if errors and int(errors.group(1)) + int(errors.group(4)) > 100:
        raise SystemExit(f"bench: wrk saw connect errors or timeouts:\n{out}")
    return float(rate.group(1))


def dnsperf(port: int, queries: Path, seconds: float) -> float:
    argv = [require("dnsperf"), "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
            "-q", "200", "-t", "2", "-l", str(int(seconds))]
    out = subprocess.run(pinned(LOAD_CORE, argv), capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    if not qps:
        raise SystemExit(f"bench: dnsperf printed no result:\n{out}")
    return float(qps.group(1))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(LOAD_CORE)})  # the pushing client in this process
    tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-relay-"))
    tmp.chmod(0o755)
    www = tmp / "www"
    www.mkdir(mode=0o755)
    (www / "hello.txt").write_text("Hello, world!\n")
    hierarchy = start_hierarchy(tmp / "nsd")
    dns_target = f"{hierarchy.addr(2)}:53"
    queries = tmp / "queries.txt"
    queries.write_text(". SOA\n. NS\ncom. NS\n")
    nginx, sink = free_port(), free_port()
    ports = {name: {kind: free_port() for kind in ("bulk", "conn", "udp")}
             for name in ("ours", "socat", "rinetd", "bare")}
    (tmp / "bare.py").write_text(BARE)
    (tmp / "nginx.conf").write_text(f"""worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{ listen 127.0.0.1:{nginx} backlog=4096; root {www}; }}
}}
""")
    p = ports["rinetd"]
    (tmp / "rinetd.conf").write_text(f"127.0.0.1 {p['bulk']} 127.0.0.1 {sink}\n"
                                     f"127.0.0.1 {p['conn']} 127.0.0.1 {nginx}\n")
    p = ports["ours"]
    forwards = (f'[{{listen = "127.0.0.1:{p["bulk"]}", to = "127.0.0.1:{sink}"}}, '
                f'{{listen = "127.0.0.1:{p["conn"]}", to = "127.0.0.1:{nginx}"}}, '
                f'{{proto = "udp", listen = "127.0.0.1:{p["udp"]}", to = "{dns_target}"}}]')
    s = ports["socat"]
    procs = [
        start([require("nginx"), "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-g",
               "daemon off;"], core=LOAD_CORE),
        start([sys.executable, str(ROOT / "bench" / "common.py"), "--sink", str(sink)],
              core=LOAD_CORE),
        start([sys.executable, "-m", "netkit.servers.relay", "--set",
               f"relay.forward={forwards}", "--set", "relay.max_per_source=4096",
               "--set", "relay.tcp.max_connections=4096", "--log-level", "warning"]),
        start([require("socat"), f"TCP4-LISTEN:{s['bulk']},fork,reuseaddr,backlog=1024",
               f"TCP4:127.0.0.1:{sink}"]),
        start([require("socat"), f"TCP4-LISTEN:{s['conn']},fork,reuseaddr,backlog=1024",
               f"TCP4:127.0.0.1:{nginx}"]),
        start([require("socat"), "-T", "60", f"UDP4-LISTEN:{s['udp']},fork,reuseaddr",
               f"UDP4:{dns_target}"]),
        start([require("rinetd"), "-f", "-c", str(tmp / "rinetd.conf")]),
        start([sys.executable, str(tmp / "bare.py"), str(ports["bare"]["conn"]), str(nginx)]),
    ]
    bulk: dict[str, list[float]] = {"ours": [], "socat": []}
    conns: dict[str, list[float]] = {"ours": [], "socat": [], "rinetd": [], "bare": []}
    udp: dict[str, list[float]] = {"ours": [], "socat": []}
    try:
        wait_port(nginx)
        wait_port(sink)
        for name in ("ours", "socat", "rinetd"):
            wait_port(ports[name]["bulk"])
            wait_port(ports[name]["conn"])
        wait_port(ports["bare"]["conn"])
        for _ in range(args.rounds):
            for name in ("ours", "socat"):
                bulk[name].append(push(ports[name]["bulk"], args.mib))
            for name in ("ours", "socat", "rinetd", "bare"):
                conns[name].append(wrk_close(ports[name]["conn"], args.seconds))
            for name in ("ours", "socat"):
                udp[name].append(dnsperf(ports[name]["udp"], queries, args.seconds))
    finally:
        for proc in procs:
            stop(proc)
        hierarchy.stop()
    report("relay-tcp-bulk-vs-socat", bulk["ours"], bulk["socat"], "MiB/s")
    report("relay-connections-vs-socat", conns["ours"], conns["socat"], "conn/s")
    report("relay-connections-vs-rinetd", conns["ours"], conns["rinetd"], "conn/s")
    # the floor of any relay on asyncio's protocols: what 1x rinetd would ask of ours
    report("relay-connections-bare-uvloop-vs-rinetd", conns["bare"], conns["rinetd"],
           "conn/s")
    report("relay-udp-vs-socat", udp["ours"], udp["socat"], "queries/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
