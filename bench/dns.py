"""The resolver against Unbound (one thread), with dnsperf, on the local NSD hierarchy.

  cache-hit   dnsperf -l SECONDS over 100 names already in both caches: queries/s
  cold        a fresh server of each kind resolves N distinct names once
              (dnsperf -n 1, 100 in flight): names/s, i.e. the time to resolve all

Servers on core 0; dnsperf and the NSD authorities on core 1. Also per server
CPU-second. Needs root (NSD binds port 53 on 127.X.Y.2-7, X.Y random per run) and nsd,
unbound, dnsperf.

    python bench/dns.py [--seconds 5] [--names 4000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    LOAD_CORE,
    ROOT,
    cpu_seconds,
    pinned,
    report,
    require,
    start,
    stop,
)

sys.path.insert(0, str(ROOT))
from netkit.testing.nsd import free_udp_tcp_port as free_port
from netkit.testing.nsd import start_hierarchy, unbound_config


def dnsperf(port: int, queries: Path, *, seconds: int | None = None) -> tuple[float, float]:
    """(queries/s, run time) from dnsperf on the load core; exits on lost queries."""
    argv = [require("dnsperf"), "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
            "-q", "100", "-t", "5"]
    argv += ["-l", str(seconds)] if seconds else ["-n", "1"]
    out = subprocess.run(pinned(LOAD_CORE, argv), capture_output=True, text=True,
                         timeout=(seconds or 60) + 60).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    run = re.search(r"Run time \(s\):\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    completed = re.search(r"Queries completed:\s+(\d+)", out)
    if not (qps and run and lost and completed):
        raise SystemExit(f"bench: dnsperf printed no result:\n{out}")
    if int(lost.group(1)) > int(completed.group(1)) // 100:
        raise SystemExit(f"bench: more than 1% of queries lost:\n{out}")
    return float(qps.group(1)), float(run.group(1))


def ours_argv(port: int, hints: Path) -> list[str]:
    return [sys.executable, "-m", "netkit.servers.dns", "--listen", f"127.0.0.1:{port}",
            "--set", f"dns.root_hints={hints}", "--set", "dns.query_private_authorities=true",
            "--log-level", "warning"]


def unbound_argv(port: int, hints: Path, tmp: Path) -> list[str]:
    return [require("unbound"), "-d", "-c", str(unbound_config(tmp / f"unbound-{port}", port,
                                                               hints))]


def wait_dns(port: int, timeout: float = 15) -> None:
    probe = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x09localhost\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            try:
                s.sendto(probe, ("127.0.0.1", port))
                s.recv(512)
                return
            except OSError:
                time.sleep(0.05)
    raise SystemExit(f"bench: no DNS server on port {port}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--names", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--admin", action="store_true",
                        help="also ours with the admin endpoint on, scraped every second")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-dns-"))
    records = "".join(f"h{i:05d}.example.com. 300 IN A 192.0.2.{i % 250 + 1}\n"
                      for i in range(args.names))
    hierarchy = start_hierarchy(tmp / "nsd", {"example.com.": records})
    for p in hierarchy.processes:  # the authorities are load, not the server under test
        subprocess.run(["taskset", "-p", "-c", LOAD_CORE, str(p.pid)], capture_output=True)
    hot = tmp / "hot.txt"
    hot.write_text("".join(f"h{i:05d}.example.com A\n" for i in range(100)))
    cold = tmp / "cold.txt"
    cold.write_text("".join(f"h{i:05d}.example.com A\n" for i in range(args.names)))
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(args.rounds):
            for who in ("netkit", "unbound", *(("netkit+admin",) if args.admin else ())):
                port = free_port()
                argv = unbound_argv(port, hierarchy.root_hints, tmp) if who == "unbound" \
                    else ours_argv(port, hierarchy.root_hints)
                done = threading.Event()
                if who == "netkit+admin":
                    admin = free_port()
                    argv += ["--set", f"admin.listen=127.0.0.1:{admin}"]
                proc = start(argv, log=tmp / f"{who}-{port}.log")
                try:
                    wait_dns(port)
                    if who == "netkit+admin":
                        threading.Thread(target=scrape, args=(admin, done), daemon=True).start()
                    cpu0 = cpu_seconds(proc.pid)
                    _, run = dnsperf(port, cold)  # fresh cache: every name resolved
                    cpu = cpu_seconds(proc.pid) - cpu0
                    results.setdefault((who, "cold"), []).append(args.names / run)
                    results.setdefault((who, "cold-per-cpu"), []).append(
                        args.names / max(cpu, 1e-3))
                    dnsperf(port, hot)  # warm the 100 hot names
                    cpu0 = cpu_seconds(proc.pid)
                    qps, run = dnsperf(port, hot, seconds=args.seconds)
                    cpu = cpu_seconds(proc.pid) - cpu0
                    results.setdefault((who, "hit"), []).append(qps)
                    results.setdefault((who, "hit-per-cpu"), []).append(
                        qps * run / max(cpu, 1e-3))
                finally:
                    done.set()
                    stop(proc)
    finally:
        hierarchy.stop()
    report("dns-cache-hit", results["netkit", "hit"], results["unbound", "hit"], "q/s")
    report("dns-cache-hit-per-cpu", results["netkit", "hit-per-cpu"],
           results["unbound", "hit-per-cpu"], "q/cpu-s")
    report("dns-cold", results["netkit", "cold"], results["unbound", "cold"], "names/s")
    report("dns-cold-per-cpu", results["netkit", "cold-per-cpu"],
           results["unbound", "cold-per-cpu"], "names/cpu-s")
    if args.admin:
        report("dns-cache-hit-admin-on-vs-unbound", results["netkit+admin", "hit"],
               results["unbound", "hit"], "q/s")
        report("dns-cache-hit-admin-on-vs-off", results["netkit+admin", "hit"],
               results["netkit", "hit"], "q/s")
    return 0


def scrape(port: int, done: threading.Event) -> None:
    """GET /metrics once a second, as Prometheus would, until `done`."""
    import urllib.request
    while not done.wait(1.0):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert r.status == 200 and b"netkit_dns_" in r.read()


if __name__ == "__main__":
    sys.exit(main())
