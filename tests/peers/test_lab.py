"""`netkit lab`: up, every built exercise of `lab check` passing, up twice, down twice,
and down after an `up` killed half-way: no namespace, link or process left behind."""

from __future__ import annotations

import os
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
    for tool in ("ping", "traceroute", "dig", "host", "curl", "openssl", "nc"):
        need(tool)
    if lab_namespaces():
        pytest.skip("a lab is up on this machine already (netkit lab down)")
    environment = dict(os.environ, NETKIT_LAB_DIR=str(tmp_path / "lab"))
    yield environment
    lab("down", env=environment)
    assert lab_namespaces() == []
    assert not list(Path("/etc/netns").glob("nkl-*"))


def test_up_check_and_down_twice(env: dict[str, str]) -> None:
    up = lab("up", env=env)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "the PC is 192.168.50.1" in up.stdout
    assert lab("up", env=env).stdout.startswith("the lab is up already")
    checked = lab("check", env=env)
    assert checked.returncode == 0, checked.stdout
    assert "FAIL" not in checked.stdout and " of " in checked.stdout
    status = lab("status", env=env)
    assert "203.0.113.1:" in status.stdout and "masquerade" in status.stdout
    pids = [int(p) for p in __import__("re").findall(r"\(pid (\d+)\)", status.stdout)]
    assert len(pids) == 7
    assert lab("exec", "pc", "--", "dig", "+short", "www.example.test",
               env=env).stdout.split() == ["198.51.100.10"]
    down = lab("down", env=env)
    assert down.returncode == 0 and "namespace nkl-pc" in down.stdout
    assert lab_namespaces() == []
    time.sleep(0.2)
    for pid in pids:  # every server stopped
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    assert "nothing" in lab("down", env=env).stdout


def test_down_after_an_up_killed_half_way(env: dict[str, str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "netkit", "lab", "up"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while "nkl-web" not in lab_namespaces():  # half-way: namespaces made, servers starting
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    down = lab("down", env=env)
    assert down.returncode == 0
    assert lab_namespaces() == []
