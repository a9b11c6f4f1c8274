"""DHCP leases in PostgreSQL: our server and Kea's (kea-dhcp4, its PostgreSQL lease
backend), one server and two servers sharing one database, on the same load.

One PostgreSQL (Debian's, fsync on, reached over its Unix socket from the servers'
namespaces) for both, a fresh database per run. Servers on core 0, perfdhcp and
PostgreSQL on core 1. Each server has its own namespace and veth pair to a client
namespace where perfdhcp acts as a relay agent (avalanche: all DISCOVERs at once, then
retries until every client holds a lease); with two servers, two perfdhcp with distinct
client MACs run at once, one per server, on one pool (Kea: halves of it, see
KEA_HALVES). leases/s = all clients / the time the slower one took.

    python bench/dhcp_shared.py [--clients 2000] [--rounds 3]
prints  dhcp-pg-one ours/peer = ...  and  dhcp-pg-two ours/peer = ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import LOAD_CORE, SERVER_CORE, pinned, report, require
from dhcp import NET, POOL, Pair, perfdhcp

from netkit.testing.postgres import PostgresServer

# one pool in 10.80.0.0/16; each server-client pair has its own link addresses in it
LINKS = [("10.80.0.1", "10.80.0.2"), ("10.80.0.3", "10.80.0.4")]
# Kea 2.2's only allocator walks the pool from its start: two Kea on one pool offer the
# same addresses, the one that loses the insert drops the REQUEST, and perfdhcp (which
# repeats the REQUEST, never the DISCOVER) never finishes (measured: 40-60% of REQUESTs
# unanswered). So two Kea get half the pool each, as Kea deployments split pools; ours
# share the whole pool.
KEA_HALVES = ["10.80.1.0 - 10.80.20.255", "10.80.21.0 - 10.80.40.255"]


def create_db(pg: PostgresServer, name: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(pg.dsn)
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
    asyncio.run(run())


def start_ours(pair: Pair, d: Path, pg: PostgresServer, db: str, i: int,
               servers: int) -> subprocess.Popen:
    conf = d / f"dhcp{i}.toml"
    dsn = f"postgresql://netkit@/{db}?host={pg.dir}&port={pg.port}"
    conf.write_text(f"""[dhcp]
interface = "{pair.s_if}"
subnet = "{NET}"
pool = ["{POOL[0]}-{POOL[1]}"]
router = ["{pair.server_ip}"]
lease_time = "1h"
lease_db = "{dsn}"
max_offers = 20000
""")
    return subprocess.Popen(["ip", "netns", "exec", pair.server, *pinned(
        SERVER_CORE, [sys.executable, "-m", "netkit.servers.dhcp", "--config", str(conf),
                      "--log-level", "warning"])], stdout=subprocess.DEVNULL,
        stderr=open(d / f"ours{i}.log", "wb"))


def start_kea(pair: Pair, d: Path, pg: PostgresServer, db: str, i: int,
              servers: int) -> subprocess.Popen:
    if i == 0:
        subprocess.run([require("kea-admin"), "db-init", "pgsql", "-u", "netkit", "-n", db,
                        "-h", str(pg.dir), "-P", str(pg.port)], check=True,
                       capture_output=True)
    conf = d / f"kea{i}.json"
    pool = f"{POOL[0]} - {POOL[1]}" if servers == 1 else KEA_HALVES[i]
    conf.write_text(json.dumps({"Dhcp4": {
        "interfaces-config": {"interfaces": [pair.s_if], "dhcp-socket-type": "udp"},
        "lease-database": {"type": "postgresql", "name": db, "user": "netkit",
                           "host": str(pg.dir), "port": pg.port},
        "valid-lifetime": 3600,
        "subnet4": [{"id": 1, "subnet": NET, "pools": [{"pool": pool}],
                     "option-data": [{"name": "routers", "data": pair.server_ip}]}],
        "loggers": [{"name": "kea-dhcp4", "severity": "WARN",
                     "output_options": [{"output": str(d / f"kea{i}.log")}]}]}}))
    env = dict(os.environ, KEA_PIDFILE_DIR=str(d / f"k{i}"), KEA_LOCKFILE_DIR=str(d / f"k{i}"))
    (d / f"k{i}").mkdir()
    return subprocess.Popen(["ip", "netns", "exec", pair.server, *pinned(
        SERVER_CORE, [require("kea-dhcp4"), "-c", str(conf)])], stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT, env=env)


def avalanche(pairs: list[Pair], clients: int) -> float:
    """All pairs at once; leases/s over the slowest."""
    took: list[tuple[int, float]] = []

    def one(k: int, pair: Pair) -> None:
        out = perfdhcp(pair, "--scenario", "avalanche", "-R", str(clients),
                       "-b", f"mac=00:0c:0{k + 1}:00:00:00")
        m = re.search(r"It took (\d+):(\d+):([\d.]+) to provision (\d+) clients", out)
        if not m:
            raise SystemExit(f"bench: perfdhcp said:\n{out[-2000:]}")
        took.append((int(m.group(4)), int(m.group(1)) * 3600 + int(m.group(2)) * 60 +
                     float(m.group(3))))
    threads = [threading.Thread(target=one, args=(k, p)) for k, p in enumerate(pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(took) != len(pairs):
        raise SystemExit("bench: a perfdhcp run failed")
    return sum(n for n, _ in took) / max(s for _, s in took)


def one_run(start, pg: PostgresServer, servers: int, clients: int, tag: str) -> float:  # type: ignore[no-untyped-def]
    db = f"b_{tag}_{time.monotonic_ns()}"
    create_db(pg, db)
    d = Path(tempfile.mkdtemp(prefix="netkit-bench-dhcppg-"))
    pairs = [Pair(*LINKS[i]) for i in range(servers)]
    procs = []
    try:
        for i, pair in enumerate(pairs):
            procs.append(start(pair, d, pg, db, i, servers))
            time.sleep(1.0)
        time.sleep(1.0)
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"bench: a DHCP server did not start ({d})")
        return avalanche(pairs, clients)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        for pair in pairs:
            pair.close()
        shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=2000, help="per server")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: network namespaces need root")
    with PostgresServer(durable=True) as pg:
        assert pg.proc is not None
        subprocess.run(["taskset", "-a", "-p", "-c", LOAD_CORE, str(pg.proc.pid)],
                       check=True, capture_output=True)
        results: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for servers in (1, 2):
                for name, start in (("ours", start_ours), ("kea", start_kea)):
                    key = f"{name}{servers}"
                    results.setdefault(key, []).append(
                        one_run(start, pg, servers, args.clients, key))
    report("dhcp-pg-one", results["ours1"], results["kea1"], "leases/s")
    report("dhcp-pg-two", results["ours2"], results["kea2"], "leases/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
