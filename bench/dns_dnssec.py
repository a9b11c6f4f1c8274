"""The resolver against Unbound, both validating DNSSEC, with dnsperf, on a signed local
hierarchy (netkit.testing.signed: BIND's dnssec-signzone, NSD; the zone secure.lab. with
N extra names, ED25519).

  cache-hit   dnsperf -l SECONDS over 100 validated names in both caches: queries/s
  cold        a fresh server of each kind resolves and validates N distinct names once
              (dnsperf -n 1, 100 in flight): names/s

Servers on core 0; dnsperf and NSD on core 1. Needs root (NSD on port 53), nsd, unbound,
dnsperf, dnssec-signzone.

    python bench/dns_dnssec.py [--seconds 5] [--names 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LOAD_CORE, ROOT, report, require, start, stop
from dns import dnsperf, wait_dns

sys.path.insert(0, str(ROOT))
from netkit.testing.nsd import free_udp_tcp_port as free_port
from netkit.testing.nsd import unbound_config
from netkit.testing.signed import SignedHierarchy


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--names", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-dnssec-"))
    os.chmod(tmp, 0o755)
    records = [f"h{i:05d}.secure.lab. 300 IN A 192.0.2.{i % 250 + 1}"
               for i in range(args.names)]
    hierarchy = SignedHierarchy(tmp / "signed", extra={"secure.lab.": records})
    (tmp / "signed").mkdir()
    hierarchy.start()
    assert hierarchy.hierarchy is not None
    for p in hierarchy.hierarchy.processes:
        subprocess.run(["taskset", "-p", "-c", LOAD_CORE, str(p.pid)], capture_output=True)
    hot = tmp / "hot.txt"
    hot.write_text("".join(f"h{i:05d}.secure.lab A\n" for i in range(100)))
    cold = tmp / "cold.txt"
    cold.write_text("".join(f"h{i:05d}.secure.lab A\n" for i in range(args.names)))
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(args.rounds):
            for who in ("netkit", "unbound"):
                port = free_port()
                if who == "unbound":
                    conf = unbound_config(tmp / f"unbound-{port}", port, hierarchy.root_hints,
                                          trust_anchor=hierarchy.trust_anchor)
                    argv = [require("unbound"), "-d", "-c", str(conf)]
                else:
                    argv = [sys.executable, "-m", "netkit.servers.dns", "--listen",
                            f"127.0.0.1:{port}", "--set",
                            f"dns.root_hints={hierarchy.root_hints}", "--set",
                            f"dns.trust_anchor={hierarchy.trust_anchor}", "--set",
                            "dns.query_private_authorities=true", "--log-level", "warning"]
                proc = start(argv, log=tmp / f"{who}-{port}.log")
                try:
                    wait_dns(port)
                    _, run = dnsperf(port, cold)
                    results.setdefault((who, "cold"), []).append(args.names / run)
                    dnsperf(port, hot)
                    qps, _ = dnsperf(port, hot, seconds=args.seconds)
                    results.setdefault((who, "hit"), []).append(qps)
                finally:
                    stop(proc)
    finally:
        hierarchy.stop()
    report("dnssec-cache-hit", results["netkit", "hit"], results["unbound", "hit"], "q/s")
    report("dnssec-cold", results["netkit", "cold"], results["unbound", "cold"], "names/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
