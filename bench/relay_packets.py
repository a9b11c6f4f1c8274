"""The relay's packet mode against the kernel's own masquerade (nftables), same load.

Two set-ups of namespaces made here (root), deleted after: inside host -> router ->
outside host. Ours: the relay (core 0) between two TUN devices (the inside host's and the
outside host's links). The kernel's: a router namespace with veth pairs, forwarding on,
and an nftables masquerade rule. iperf3 (client in the inside host, server in the
outside host, both core 1): TCP throughput for SECONDS, and UDP datagrams of 64 bytes
as fast as they go (datagrams/s that arrived). For ours also the CPU per packet.

    python bench/relay_packets.py [--seconds 5] [--rounds 3]
prints  relay-packet-tcp-vs-nftables, relay-packet-udp-vs-nftables, and CPU per packet
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LOAD_CORE, cpu_seconds, pinned, report, require, start, stop

INSIDE, ROUTER, FAR = "10.1.0.2", "10.1.0.1", "203.0.113.2"
OUTSIDE = "203.0.113.1"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


class Setup:
    def __init__(self, kind: str) -> None:
        tag = secrets.token_hex(2)
        self.kind = kind
        self.r, self.i, self.o = (f"nkp{tag}{x}" for x in "rio")
        for ns in (self.r, self.i, self.o):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.proc: subprocess.Popen | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-packets-"))

    def ours(self) -> None:
        tun_in, tun_out = f"{self.r}ti", f"{self.r}to"
        conf = self.tmp / "relay.toml"
        conf.write_text(f"""[relay]
[relay.packet]
tun = "{tun_in}"
outside_tun = "{tun_out}"
outside = "{OUTSIDE}"
inside_router = "{ROUTER}"
""")
        self.proc = start(["ip", "netns", "exec", self.r, sys.executable, "-m",
                           "netkit.servers.relay", "--config", str(conf), "--log-level",
                           "warning"])
        deadline = time.monotonic() + 15
        while True:  # the relay makes its TUN devices at start
            r = subprocess.run(["ip", "-n", self.r, "link", "show", tun_out],
                               capture_output=True)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit("bench: the relay made no TUN device")
            time.sleep(0.1)
        time.sleep(0.3)
        for dev, ns, addr in ((tun_in, self.i, INSIDE), (tun_out, self.o, FAR)):
            sh("ip", "-n", self.r, "link", "set", dev, "netns", ns)
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", self.i, "route", "add", "default", "via", ROUTER)

    def kernel(self) -> None:
        pairs = ((self.i, INSIDE, "a", ROUTER), (self.o, FAR, "b", OUTSIDE))
        for ns, addr, side, router_addr in pairs:
            inner, outer = f"{self.r}{side}0", f"{self.r}{side}1"
            sh("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "link", "set", outer, "netns", self.r)
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", inner)
            sh("ip", "-n", ns, "link", "set", inner, "up")
            sh("ip", "-n", self.r, "addr", "add", f"{router_addr}/24", "dev", outer)
            sh("ip", "-n", self.r, "link", "set", outer, "up")
        sh("ip", "-n", self.i, "route", "add", "default", "via", ROUTER)
        sh("ip", "netns", "exec", self.r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        rules = self.tmp / "nat.nft"
        rules.write_text(f"table ip nat {{\n  chain post {{\n    type nat hook postrouting "
                         f'priority 100;\n    oifname "{self.r}b1" masquerade\n  }}\n}}\n')
        sh("ip", "netns", "exec", self.r, require("nft"), "-f", str(rules))

    def iperf(self, seconds: float, udp: bool) -> float:
        server = subprocess.Popen(["ip", "netns", "exec", self.o, *pinned(
            LOAD_CORE, [require("iperf3"), "-s", "-1", "-B", FAR])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        args = ["-u", "-b", "0", "-l", "64"] if udp else []
        r = subprocess.run(["ip", "netns", "exec", self.i, *pinned(LOAD_CORE, [
            require("iperf3"), "-c", FAR, "-t", str(int(seconds)), "-J", *args])],
            capture_output=True, text=True, timeout=seconds + 60)
        server.wait(30)
        result = json.loads(r.stdout)
        if "error" in result:
            raise SystemExit(f"bench: iperf3: {result['error']}")
        end = result["end"]
        if udp:
            s = end["sum"]
            return (s["packets"] - s["lost_packets"]) / s["seconds"]
        return end["sum_received"]["bits_per_second"] / 8 / (1 << 20)

    def close(self) -> None:
        if self.proc is not None:
            stop(self.proc)
        for ns in (self.r, self.i, self.o):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tcp: dict[str, list[float]] = {"ours": [], "nft": []}
    udp: dict[str, list[float]] = {"ours": [], "nft": []}
    cpu: list[float] = []
    for _ in range(args.rounds):
        for kind in ("ours", "nft"):
            s = Setup(kind)
            try:
                s.ours() if kind == "ours" else s.kernel()
                tcp[kind].append(s.iperf(args.seconds, udp=False))
                c0 = cpu_seconds(s.proc.pid) if s.proc else 0.0
                rate = s.iperf(args.seconds, udp=True)
                udp[kind].append(rate)
                if s.proc:
                    # two packets per datagram through the router: only the sent one here
                    cpu.append((cpu_seconds(s.proc.pid) - c0) / (rate * args.seconds) * 1e6)
            finally:
                s.close()
    report("relay-packet-tcp-vs-nftables", tcp["ours"], tcp["nft"], "MiB/s")
    report("relay-packet-udp-vs-nftables", udp["ours"], udp["nft"], "datagrams/s")
    cpu.sort()
    print(f"relay-packet-cpu-per-datagram ours = {cpu[len(cpu) // 2]:.1f} us (median)",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
