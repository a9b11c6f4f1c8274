"""DNS over TLS: the resolver against Unbound's DoT, on the same certificate, with dnsperf
(-m dot) asking 100 names already in both caches.

Servers on core 0; dnsperf and the NSD authorities on core 1. dnsperf keeps its TLS
connections open (`-c` clients), 100 queries in flight: queries/s of answers from the
cache over TLS. Needs root (NSD on port 53 of 127.X.Y.2-7), nsd, unbound, dnsperf.

    python bench/dns_tls.py [--seconds 5] [--rounds 3] [--clients 4]
prints  dns-dot-cache-hit ours/peer = ...
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LOAD_CORE, ROOT, pinned, report, require, start, stop
from dns import ours_argv, wait_dns

sys.path.insert(0, str(ROOT))
from netkit.testing.ca import DevCA
from netkit.testing.nsd import free_udp_tcp_port as free_port
from netkit.testing.nsd import start_hierarchy, unbound_config


def dnsperf_dot(port: int, queries: Path, clients: int, seconds: int | None) -> float:
    argv = [require("dnsperf"), "-m", "dot", "-s", "127.0.0.1", "-p", str(port), "-d",
            str(queries), "-c", str(clients), "-q", "100", "-t", "5"]
    argv += ["-l", str(seconds)] if seconds else ["-n", "1"]
    out = subprocess.run(pinned(LOAD_CORE, argv), capture_output=True, text=True,
                         timeout=(seconds or 60) + 60).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    completed = re.search(r"Queries completed:\s+(\d+)", out)
    if not (qps and lost and completed) or int(completed.group(1)) == 0:
        raise SystemExit(f"bench: dnsperf printed no result:\n{out}")
    if int(lost.group(1)) > int(completed.group(1)) // 100:
        raise SystemExit(f"bench: more than 1% of queries lost:\n{out}")
    return float(qps.group(1))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-dot-"))
    records = "".join(f"h{i:05d}.example.com. 300 IN A 192.0.2.{i % 250 + 1}\n"
                      for i in range(100))
    hierarchy = start_hierarchy(tmp / "nsd", {"example.com.": records})
    for p in hierarchy.processes:
        subprocess.run(["taskset", "-p", "-c", LOAD_CORE, str(p.pid)], capture_output=True)
    hot = tmp / "hot.txt"
    hot.write_text("".join(f"h{i:05d}.example.com A\n" for i in range(100)))
    cert, key = DevCA(tmp).issue("127.0.0.1", "localhost")
    results: dict[str, list[float]] = {}
    try:
        for _ in range(args.rounds):
            for who in ("netkit", "unbound"):
                port, dot = free_port(), free_port()
                if who == "unbound":
                    conf = unbound_config(tmp / f"unbound-{port}", port, hierarchy.root_hints)
                    text = conf.read_text().replace(
                        f"  interface: 127.0.0.1@{port}\n",
                        f"  interface: 127.0.0.1@{port}\n  interface: 127.0.0.1@{dot}\n"
                        f"  tls-port: {dot}\n  tls-service-pem: \"{cert}\"\n"
                        f"  tls-service-key: \"{key}\"\n")
                    conf.write_text(text)
                    argv = [require("unbound"), "-d", "-c", str(conf)]
                else:
                    argv = [
                        *ours_argv(port, hierarchy.root_hints),
                        "--set", f'dns.tls_listen=["127.0.0.1:{dot}"]',
                        "--set", f"dns.tls.cert={cert}", "--set", f"dns.tls.key={key}"]
                proc = start(argv, log=tmp / f"{who}-{port}.log")
                try:
                    wait_dns(port)
                    dnsperf_dot(dot, hot, args.clients, None)  # warm both caches
                    results.setdefault(who, []).append(
                        dnsperf_dot(dot, hot, args.clients, args.seconds))
                finally:
                    stop(proc)
    finally:
        hierarchy.stop()
    report("dns-dot-cache-hit", results["netkit"], results["unbound"], "q/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
