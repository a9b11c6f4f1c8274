"""`netkit lab`: up (with a lab.toml of every key), every exercise of `lab check`
passing, up twice, down twice, and down after an `up` killed half-way: no namespace, link
or process left behind; a broken lab.toml makes nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fixtures import need
from tests.support.netns import need_netns

pytestmark = pytest.mark.peer


def lab(*args: str, env: dict[str, str], timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netkit", "lab", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def lab_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("nkl-")]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    need_netns()
    for tool in ("ping", "traceroute", "dig", "host", "curl", "openssl", "nc", "ssh",
                 "ssh-keygen", "ssh-keyscan", "/usr/sbin/sshd", "ss"):
        need(tool)
    if lab_namespaces():
        pytest.skip("a lab is up on this machine already (netkit lab down)")
    environment = dict(os.environ, NETKIT_LAB_DIR=str(tmp_path / "lab"))
    yield environment
    lab("down", env=environment)
    assert lab_namespaces() == []
    assert not list(Path("/etc/netns").glob("nkl-*"))
    # no veth, bridge or TUN of the lab's on the host either (they all live in its
    # namespaces and went with them)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "nkl-" not in links and "br-lan" not in links and "br-net" not in links


LAB_TOML = """
[lab]
web_root = "site"
records = ["note.example.test. 300 IN TXT \\"from lab.toml\\""]
lease_time = "10m"

[[lab.host]]
name = "api"
address = "198.51.100.30"

[[lab.rule]]   # one more rule before the defaults, spelled out
action = "reject"
proto = "tcp"
dst = ["198.51.100.30/32"]
dport = 9999
[[lab.rule]]
action = "reject"
proto = "tcp"
dst = ["198.51.100.10/32"]
dport = 8081
[[lab.rule]]
action = "allow"
src = ["192.168.50.0/24"]
"""


def test_up_check_and_down_twice(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("my own page\n")
    (tmp_path / "lab.toml").write_text(LAB_TOML)
    up = lab("up", "--config", str(tmp_path / "lab.toml"), env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "the PC is 192.168.50.1" in up.stdout
    assert lab("up", env=env).stdout.startswith("the lab is up already")
    checked = lab("check", env=env)
    assert checked.returncode == 0, checked.stdout
    assert "FAIL" not in checked.stdout and "22 of 22 work" in checked.stdout
    status = lab("status", env=env)
    assert "203.0.113.1:" in status.stdout and "masquerade" in status.stdout
    assert re.search(r"└─ api +198\.51\.100\.30/24", status.stdout), status.stdout
    pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", status.stdout)]
    assert len(pids) == 9
    # the config's page, record, host and rule
    assert lab("exec", "pc", "--", "curl", "-sS", "http://www.example.test/",
               env=env).stdout == "my own page\n"
    assert lab("exec", "pc", "--", "dig", "+short", "TXT", "note.example.test",
               env=env).stdout.strip() == '"from lab.toml"'
    assert lab("exec", "pc", "--", "dig", "+short", "api.example.test",
               env=env).stdout.split() == ["198.51.100.30"]
    blocked = lab("exec", "pc", "--", "curl", "-sS", "--max-time", "5",
                  "http://api.example.test:9999/", env=env)
    assert blocked.returncode == 7  # refused at once: the router's RST
    rules = json.loads(subprocess.run(
        [sys.executable, "-m", "netkit", "ctl", "--socket",
         env["NETKIT_LAB_DIR"] + "/router.sock", "--json", "rules"],
        capture_output=True, text=True, timeout=20).stdout)
    assert rules[0]["dport"] in (9999, "9999") and rules[0]["hits"] >= 1, rules
    # a reader's process left running inside a node ends with the lab
    stray = subprocess.Popen(["ip", "netns", "exec", "nkl-api", "sleep", "300"])
    down = lab("down", env=env)
    assert down.returncode == 0 and "namespace nkl-pc" in down.stdout
    assert stray.wait(10) != 0
    assert lab_namespaces() == []
    time.sleep(0.2)
    for pid in pids:  # every server stopped
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    assert "nothing" in lab("down", env=env).stdout


def test_a_broken_lab_toml_makes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "lab.toml").write_text(
        '[lab]\nlease_tim = "1h"\n[[lab.host]]\nname = "web"\naddress = "10.0.0.1"\n'
        '[[lab.rule]]\naction = "permit"\n')
    up = lab("up", "--config", str(tmp_path / "lab.toml"), env=env)
    assert up.returncode == 2
    assert "lab.lease_tim: unknown key (did you mean 'lease_time'?)" in up.stderr
    assert "host name 'web' is one of the lab's own nodes" in up.stderr
    assert "lab.rule[0].action: expected one of 'allow', 'deny', 'reject'" in up.stderr
    assert lab_namespaces() == [] and not Path(env["NETKIT_LAB_DIR"]).exists()


def test_down_after_an_up_killed_half_way(env: dict[str, str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "netkit", "lab", "up"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while "nkl-web" not in lab_namespaces() or not in_lab():  # half-way: servers starting
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    left = in_lab()
    down = lab("down", env=env)
    assert down.returncode == 0
    assert lab_namespaces() == []
    time.sleep(0.2)
    assert [pid for pid in left if alive(pid)] == []


def test_up_refuses_when_the_host_has_a_lab_address(env: dict[str, str]) -> None:
    """The "host" here is a namespace of the test's own with 198.51.100.10 on a veth
    link: `lab up` run inside it refuses, and makes nothing."""
    host = "nkt-labhost"
    subprocess.run(["ip", "netns", "add", host], check=True)
    try:
        for argv in (["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                     ["addr", "add", "198.51.100.10/24", "dev", "d0"],
                     ["link", "set", "d0", "up"]):
            subprocess.run(["ip", "-n", host, *argv], check=True)
        up = subprocess.run(["ip", "netns", "exec", host, sys.executable, "-m", "netkit",
                             "lab", "up"], capture_output=True, text=True, timeout=60, env=env)
        assert up.returncode == 1
        assert "the host already uses the lab's addresses: 198.51.100.10 on d0" in up.stderr
        assert lab_namespaces() == []
    finally:
        subprocess.run(["ip", "netns", "del", host], check=True)


def in_lab() -> list[int]:
    """Every process inside the lab's namespaces."""
    return [int(pid) for ns in lab_namespaces() for pid in subprocess.run(
        ["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
