"""A blocklist of a million names on the resolver's cache-hit path, against Unbound with
the same names as an RPZ zone (respip iterator), and our resolver with no policy; load
time and memory of the list for both.

  cache-hit   dnsperf -l SECONDS over 100 names (none listed) already in the cache
  load        seconds from start to the first answer, minus the same without the list
  memory      resident memory once answering, minus the same without the list

Servers on core 0; dnsperf and the NSD authorities on core 1. Needs root (NSD on port
53), nsd, unbound, dnsperf.

    python bench/dns_policy.py [--names 1000000] [--seconds 5] [--rounds 3]
prints  dns-policy-cache-hit ours/peer = ...  (and -vs-no-policy, load, memory)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LOAD_CORE, ROOT, report, require, start, stop
from dns import dnsperf, ours_argv, wait_dns

sys.path.insert(0, str(ROOT))
from netkit.testing.nsd import free_udp_tcp_port as free_port
from netkit.testing.nsd import start_hierarchy, unbound_config


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_one(argv: list[str], port: int, hot: Path, seconds: int, log: Path
            ) -> tuple[float, float, float]:
    """(seconds to the first answer, resident MiB then, cache-hit queries/s)."""
    t0 = time.monotonic()
    proc = start(argv, log=log)
    try:
        wait_dns(port, timeout=300)
        loaded = time.monotonic() - t0
        dnsperf(port, hot)  # warm
        memory = rss_mib(proc.pid)
        qps, _ = dnsperf(port, hot, seconds=seconds)
        return loaded, memory, qps
    finally:
        stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-policy-"))
    tmp.chmod(0o755)
    hierarchy = start_hierarchy(tmp / "nsd", {"example.com.": "".join(
        f"h{i:05d}.example.com. 300 IN A 192.0.2.{i % 250 + 1}\n" for i in range(100))})
    for p in hierarchy.processes:
        subprocess.run(["taskset", "-p", "-c", LOAD_CORE, str(p.pid)], capture_output=True)
    hot = tmp / "hot.txt"
    hot.write_text("".join(f"h{i:05d}.example.com A\n" for i in range(100)))
    names = [f"n{i:07d}.ads{i % 977}.example" for i in range(args.names)]
    listed = tmp / "block.txt"
    listed.write_text("".join(n + "\n" for n in names))
    zone = tmp / "block.rpz"
    zone.write_text("$TTL 60\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\n"
                    "  NS localhost.\n" + "".join(f"{n} CNAME .\n" for n in names))
    results: dict[str, list[tuple[float, float, float]]] = {}
    try:
        for _ in range(args.rounds):
            for who in ("netkit", "netkit+list", "unbound", "unbound+rpz"):
                port = free_port()
                if who.startswith("unbound"):
                    conf = unbound_config(tmp / f"unbound-{port}", port, hierarchy.root_hints,
                                          rpz=zone if who == "unbound+rpz" else None)
                    argv = [require("unbound"), "-d", "-c", str(conf)]
                else:
                    argv = ours_argv(port, hierarchy.root_hints)
                    if who == "netkit+list":
                        argv += ["--set", f'dns.policy=[{{name="block", source="{listed}", '
                                          f'format="domains"}}]']
                results.setdefault(who, []).append(
                    run_one(argv, port, hot, args.seconds, tmp / f"{who}-{port}.log"))
    finally:
        hierarchy.stop()

    def col(who: str, i: int) -> list[float]:
        return [r[i] for r in results[who]]
    report("dns-policy-cache-hit", col("netkit+list", 2), col("unbound+rpz", 2), "q/s")
    report("dns-policy-cache-hit-vs-no-policy", col("netkit+list", 2), col("netkit", 2), "q/s")
    load_ours = [a - b for a, b in zip(col("netkit+list", 0), col("netkit", 0), strict=True)]
    load_peer = [a - b for a, b in zip(col("unbound+rpz", 0), col("unbound", 0), strict=True)]
    report("dns-policy-load-seconds", load_ours, load_peer, "s")
    mem_ours = [a - b for a, b in zip(col("netkit+list", 1), col("netkit", 1), strict=True)]
    mem_peer = [a - b for a, b in zip(col("unbound+rpz", 1), col("unbound", 1), strict=True)]
    report("dns-policy-memory-mib", mem_ours, mem_peer, "MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
