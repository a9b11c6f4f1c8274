"""Our DHCP server against Kea's (kea-dhcp4, memfile leases), on the same load.

Kea's `perfdhcp` (core 1) in one namespace, the server (core 0) in another, a veth pair
between them, made here and deleted after (root). Full DORA for CLIENTS simulated
clients, perfdhcp acting as a relay agent:
  - avalanche: all DISCOVERs at once, then each client retries with back-off until it
    holds a lease; leases/s = CLIENTS over the time it took;
  - rate: exchanges offered at RATE a second for SECONDS; the 4-way exchanges a second
    that completed.
Ours commits every lease to SQLite (WAL, synchronous=FULL) before its ACK; Kea's memfile
appends to its CSV without fsync. A fresh lease database for every round.

    python bench/dhcp.py [--clients 5000] [--rounds 3] [--rate 20000] [--seconds 10]
prints  dhcp-avalanche ours/peer = ...  and  dhcp-rate ours/peer = ...
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LOAD_CORE, SERVER_CORE, pinned, report, require

SERVER_IP, CLIENT_IP, NET = "10.80.0.1", "10.80.0.2", "10.80.0.0/16"
POOL = ("10.80.1.0", "10.80.40.255")  # 10,240 addresses


class Pair:
    """Two namespaces joined by a veth pair (server side `s0`, client side `c0`)."""

    def __init__(self, server_ip: str = SERVER_IP, client_ip: str = CLIENT_IP) -> None:
        self.server_ip, self.client_ip = server_ip, client_ip
        tag = secrets.token_hex(2)
        self.server, self.client = f"nkb{tag}s", f"nkb{tag}c"
        self.s_if, self.c_if = f"nkb{tag}s0", f"nkb{tag}c0"
        for cmd in (["netns", "add", self.server], ["netns", "add", self.client],
                    ["link", "add", self.s_if, "type", "veth", "peer", "name", self.c_if],
                    ["link", "set", self.s_if, "netns", self.server],
                    ["link", "set", self.c_if, "netns", self.client],
                    ["-n", self.server, "addr", "add", f"{server_ip}/16", "dev", self.s_if],
                    ["-n", self.client, "addr", "add", f"{client_ip}/16", "dev", self.c_if],
                    ["-n", self.server, "link", "set", self.s_if, "up"],
                    ["-n", self.client, "link", "set", self.c_if, "up"],
                    ["-n", self.server, "link", "set", "lo", "up"],
                    ["-n", self.client, "link", "set", "lo", "up"]):
            subprocess.run(["ip", *cmd], check=True, capture_output=True)

    def close(self) -> None:
        for ns in (self.server, self.client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def start_ours(pair: Pair, d: Path) -> subprocess.Popen:
    conf = d / "dhcp.toml"
    conf.write_text(f"""[dhcp]
interface = "{pair.s_if}"
subnet = "{NET}"
pool = ["{POOL[0]}-{POOL[1]}"]
router = ["{SERVER_IP}"]
lease_time = "1h"
lease_db = "{d / 'leases.db'}"
max_offers = 20000
""")
    return subprocess.Popen(["ip", "netns", "exec", pair.server, *pinned(
        SERVER_CORE, [sys.executable, "-m", "netkit.servers.dhcp", "--config", str(conf),
                      "--log-level", "warning"])], stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT)


def start_kea(pair: Pair, d: Path) -> subprocess.Popen:
    conf = d / "kea.json"
    conf.write_text(json.dumps({"Dhcp4": {
        "interfaces-config": {"interfaces": [pair.s_if], "dhcp-socket-type": "udp"},
        "lease-database": {"type": "memfile", "persist": True,
                           "name": str(d / "leases.csv"), "lfc-interval": 0},
        "valid-lifetime": 3600,
        "subnet4": [{"id": 1, "subnet": NET, "pools": [{"pool": f"{POOL[0]} - {POOL[1]}"}],
                     "option-data": [{"name": "routers", "data": SERVER_IP}]}],
        "loggers": [{"name": "kea-dhcp4", "severity": "WARN",
                     "output_options": [{"output": str(d / "kea.log")}]}]}}))
    env = dict(os.environ, KEA_PIDFILE_DIR=str(d), KEA_LOCKFILE_DIR=str(d))
    return subprocess.Popen(["ip", "netns", "exec", pair.server, *pinned(
        SERVER_CORE, [require("kea-dhcp4"), "-c", str(conf)])], stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT, env=env)


def perfdhcp(pair: Pair, *args: str) -> str:
    r = subprocess.run(["ip", "netns", "exec", pair.client, *pinned(
        LOAD_CORE, [require("perfdhcp"), "-4", "-l", pair.c_if, *args, pair.server_ip])],
        capture_output=True, text=True, timeout=600)
    return r.stdout + r.stderr


def avalanche(pair: Pair, clients: int) -> float:
    out = perfdhcp(pair, "--scenario", "avalanche", "-R", str(clients))
    m = re.search(r"It took (\d+):(\d+):([\d.]+) to provision (\d+) clients", out)
    if not m:
        raise SystemExit(f"bench: perfdhcp said:\n{out[-2000:]}")
    seconds = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return int(m.group(4)) / seconds


def rate(pair: Pair, clients: int, target: int, seconds: int) -> float:
    out = perfdhcp(pair, "-r", str(target), "-R", str(clients), "-p", str(seconds))
    m = re.search(r"Rate: ([\d.]+) 4-way exchanges/second", out)
    if not m:
        raise SystemExit(f"bench: perfdhcp said:\n{out[-2000:]}")
    return float(m.group(1))


def one_round(start, clients: int, target: int, seconds: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    results = []
    for run in ("avalanche", "rate"):
        pair = Pair()
        d = Path(tempfile.mkdtemp(prefix="netkit-bench-dhcp-"))
        proc = start(pair, d)
        try:
            time.sleep(1.5)
            if proc.poll() is not None:
                raise SystemExit("bench: a DHCP server did not start")
            results.append(avalanche(pair, clients) if run == "avalanche" else
                           rate(pair, clients, target, seconds))
        finally:
            proc.terminate()
            proc.wait(10)
            pair.close()
            shutil.rmtree(d, ignore_errors=True)
    return results[0], results[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=int, default=20000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: network namespaces need root")
    results: dict[str, list[tuple[float, float]]] = {"ours": [], "kea": []}
    for _ in range(args.rounds):
        results["ours"].append(one_round(start_ours, args.clients, args.rate, args.seconds))
        results["kea"].append(one_round(start_kea, args.clients, args.rate, args.seconds))
    report("dhcp-avalanche", [r[0] for r in results["ours"]],
           [r[0] for r in results["kea"]], "leases/s")
    report("dhcp-rate", [r[1] for r in results["ours"]], [r[1] for r in results["kea"]],
           "exchanges/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
