"""The relay's packet mode across network namespaces made here: an inside host behind
the relay's inside TUN device, an outside host behind its outside TUN device, the relay
in a namespace of its own; addresses only inside them, all deleted after. Real `ping`,
`curl`, `traceroute` and a UDP exchange go through it."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fixtures import need
from tests.support.netns import need_netns

pytestmark = pytest.mark.peer
INSIDE, ROUTER, OUTSIDE, FAR = "10.1.0.2", "10.1.0.1", "203.0.113.1", "203.0.113.2"

UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, addr = s.recvfrom(2048)
    s.sendto(data + b" from " + addr[0].encode(), addr)
"""


def ns_run(ns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True,
                          text=True, timeout=timeout)


class Net:
    def __init__(self) -> None:
        need_netns()
        tag = secrets.token_hex(2)
        self.relay, self.inside, self.outside = (f"nk{tag}{x}" for x in "rio")
        self.tun_in, self.tun_out = f"nk{tag}ti", f"nk{tag}to"
        self.names = [self.relay, self.inside, self.outside]
        for ns in self.names:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            ns_run(ns, "ip", "link", "set", "lo", "up")

    def wire(self) -> None:
        """Once the relay has opened its TUN devices: move them and give addresses."""
        for dev, ns, addr in ((self.tun_in, self.inside, INSIDE),
                              (self.tun_out, self.outside, FAR)):
            subprocess.run(["ip", "-n", self.relay, "link", "set", dev, "netns", ns],
                           check=True)
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev],
                           check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        subprocess.run(["ip", "-n", self.inside, "route", "add", "default", "via", ROUTER],
                       check=True)

    def close(self) -> None:
        for ns in self.names:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def net() -> Iterator[Net]:
    n = Net()
    yield n
    n.close()


def start_relay(spawn, net: Net, tmp_path: Path, rules: str = ""):  # type: ignore[no-untyped-def]
    conf = tmp_path / "relay.toml"
    conf.write_text(f"""[relay]
udp_idle_timeout = 5
[relay.packet]
tun = "{net.tun_in}"
outside_tun = "{net.tun_out}"
outside = "{OUTSIDE}"
inside_router = "{ROUTER}"
{rules}""")
    control = tmp_path / "ctl.sock"
    proc = spawn("netkit.servers.relay", ["--config", str(conf), "--control", str(control)],
                 prefix=["ip", "netns", "exec", net.relay])
    proc.wait_for(r"packet mode: inside")
    net.wire()
    return proc, control


def test_ping_curl_udp_and_traceroute_through_the_relay(spawn, net: Net, tmp_path: Path
                                                        ) -> None:
    for program in ("ping", "curl", "traceroute"):
        need(program)
    proc, control = start_relay(spawn, net, tmp_path)
    r = ns_run(net.inside, "ping", "-c", "2", "-W", "2", FAR)
    assert r.returncode == 0, r.stdout + r.stderr
    r = ns_run(net.inside, "ping", "-c", "1", "-W", "2", ROUTER)  # the router itself
    assert r.returncode == 0, r.stdout + r.stderr
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("behind the NAT\n")
    http = subprocess.Popen(["ip", "netns", "exec", net.outside, sys.executable, "-m",
                             "http.server", "8000", "--bind", FAR, "--directory", str(www)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    echo = subprocess.Popen(["ip", "netns", "exec", net.outside, sys.executable, "-c",
                             UDP_ECHO, FAR, "7777"], stdout=subprocess.PIPE, text=True)
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        r = ns_run(net.inside, "curl", "-s", "--max-time", "10", f"http://{FAR}:8000/")
        assert r.returncode == 0 and r.stdout == "behind the NAT\n", r.stderr
        r = ns_run(net.inside, sys.executable, "-c", f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
s.sendto(b"hello", ("{FAR}", 7777)); print(s.recvfrom(100)[0].decode())
""")
        assert r.stdout.strip() == f"hello from {OUTSIDE}", r.stdout + r.stderr
        table = json.loads(subprocess.run(
            [sys.executable, "-m", "netkit", "ctl", "--socket", str(control), "--json",
             "table"], capture_output=True, text=True, timeout=30).stdout)
        rows = {(row["proto"], row["target"]): row for row in table}
        udp = rows[("udp", f"{FAR}:7777")]
        assert udp["inside"].startswith(f"{INSIDE}:")
        assert udp["outside"].startswith(f"{OUTSIDE}:") and udp["state"] == "established"
        assert rows[("tcp", f"{FAR}:8000")]["outside"].startswith(f"{OUTSIDE}:")
        for mode in ([], ["-I"]):  # UDP probes, then ICMP echo
            r = ns_run(net.inside, "traceroute", "-n", "-q", "1", "-w", "2", "-m", "4",
                       *mode, FAR, timeout=60)
            hops = re.findall(r"^\s*(\d+)\s+(\S+)", r.stdout, re.M)
            assert hops[:2] == [("1", ROUTER), ("2", FAR)], r.stdout + r.stderr
    finally:
        outputs = []
        for p in (http, echo):
            p.terminate()
            outputs.append(p.communicate(timeout=10)[0])
    assert f"{OUTSIDE} - - " in outputs[0]  # the web server saw the relay's address
    assert "Traceback" not in proc.log


def test_a_deny_rule_stops_a_flow_and_counts_it(spawn, net: Net, tmp_path: Path) -> None:
    rules = """[[relay.rule]]
action = "deny"
proto = "udp"
dport = 9999
[[relay.rule]]
action = "allow"
"""
    _, control = start_relay(spawn, net, tmp_path, rules)
    echo = subprocess.Popen(["ip", "netns", "exec", net.outside, sys.executable, "-c",
                             UDP_ECHO, FAR, "9999"], stdout=subprocess.PIPE, text=True)
    try:
        assert echo.stdout is not None and echo.stdout.readline().strip() == "ready"
        r = ns_run(net.inside, sys.executable, "-c", f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
s.sendto(b"blocked?", ("{FAR}", 9999))
try:
    print(s.recvfrom(100)[0])
except TimeoutError:
    print("no answer")
""")
        assert r.stdout.strip() == "no answer"
        assert ns_run(net.inside, "ping", "-c", "1", "-W", "2", FAR).returncode == 0
    finally:
        echo.terminate()
        echo.communicate(timeout=10)
    rules_view = json.loads(subprocess.run(
        [sys.executable, "-m", "netkit", "ctl", "--socket", str(control), "--json", "rules"],
        capture_output=True, text=True, timeout=30).stdout)
    assert rules_view[0]["action"] == "deny" and rules_view[0]["hits"] == 1
    assert rules_view[1]["hits"] >= 1
