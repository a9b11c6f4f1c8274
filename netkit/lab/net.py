"""Building and removing the lab: namespaces, bridges, veth pairs, the servers in them.

Everything made is recorded in the state file as it is made (namespaces, processes by
PID, files), so `down` removes all of it, also after a crash; anything named with the
lab's prefix is removed too. `up` on a lab that is up does nothing; `down` twice is fine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import topology as t

STATE_DIR = Path(os.environ.get("NETKIT_LAB_DIR", "/run/netkit-lab"))
ETC_NETNS = Path("/etc/netns")


class LabError(Exception):
    pass


def _ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r.stdout


def in_ns(ns: str, argv: list[str], home: Path | None = None) -> list[str]:
    """`argv` inside a node; with `home`, $HOME is the node's own (root's home in the
    node's /etc/passwd is already: ssh and ssh-keygen read that one)."""
    env = ["env", f"HOME={home}"] if home is not None else []
    return ["ip", "netns", "exec", ns, *env, *argv]


def home(directory: Path, node: str) -> Path:
    """root's home inside a node: its ~/.ssh, its shell history."""
    return directory / "home" / node


class State:
    """What the lab has made, on disk (JSON), written after every step."""

    def __init__(self, directory: Path = STATE_DIR) -> None:
        self.directory = directory
        self.path = directory / "state.json"
        self.data: dict[str, Any] = {"namespaces": [], "pids": {}, "files": []}
        if self.path.exists():
            with contextlib.suppress(ValueError):
                self.data = json.loads(self.path.read_text())

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)

    def add(self, kind: str, value: Any, key: str | None = None) -> None:
        if key is None:
            self.data[kind].append(value)
        else:
            self.data[kind][key] = value
        self.save()


def lab_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines()
            if line.split() and line.split()[0].startswith(t.PREFIX)]


def host_conflicts(lab: t.Lab) -> list[str]:
    """Addresses on the host (its own namespace) inside the lab's networks."""
    out = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True,
                                    text=True).stdout or "[]")
    found = []
    for link in out:
        for a in link.get("addr_info", []):
            try:
                ip = ipaddress.ip_address(a["local"])
            except (KeyError, ValueError):
                continue
            if any(ip in net for net in lab.networks):
                found.append(f"{a['local']} on {link.get('ifname')}")
    return found


def is_up(state: State) -> bool:
    return bool(state.data["namespaces"]) and \
        all(ns in lab_namespaces() for ns in state.data["namespaces"])


def down(state: State | None = None) -> list[str]:
    """Remove everything the lab made (by the state file, and by name); what was removed."""
    state = state or State()
    removed = []
    for name, pid in state.data.get("pids", {}).items():
        try:
            os.killpg(pid, signal.SIGTERM)  # each server was started in its own group
            removed.append(f"process {name} ({pid})")
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 5
    for pid in state.data.get("pids", {}).values():
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    namespaces = sorted(set(state.data.get("namespaces", [])) | set(lab_namespaces()))
    # whatever else runs inside the lab's nodes (ssh sessions, an `nc -l` left by a
    # reader) was started in them through the lab: it ends with them
    for ns in namespaces:
        for pid in _ip("netns", "pids", ns, check=False).split():
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
                removed.append(f"process {pid} in {ns}")
    for ns in namespaces:
        if ns in lab_namespaces():
            _ip("netns", "del", ns, check=False)
            removed.append(f"namespace {ns}")
    for d in ETC_NETNS.glob(t.PREFIX + "*"):
        shutil.rmtree(d, ignore_errors=True)
    if state.directory.exists():
        shutil.rmtree(state.directory, ignore_errors=True)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def start(state: State, name: str, ns: str, argv: list[str], log: Path) -> int:
    """A server inside a namespace, in a process group of its own; its PID recorded."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(in_ns(ns, argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    state.add("pids", proc.pid, key=name)
    return proc.pid


def wait_for(what: str, test: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise LabError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.1)


def python() -> list[str]:
    return [sys.executable]
