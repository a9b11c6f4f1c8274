"""A real OpenSSH sshd on a loopback port with its own config, host key and
authorized_keys (never the system's, never port 22), and a client key for it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from tests.support.fixtures import free_port, need, wait_listening


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run([need("ssh-keygen"), "-q", "-t", kind, "-N", "", "-f", str(path)],
                   check=True)
    return path


class SSHD:
    def __init__(self, directory: Path, client_key: Path, *, port: int | None = None,
                 host_key: Path | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)
        self.port = port or free_port()
        self.host_key = host_key or keygen(directory / "host_ed25519")
        (directory / "authorized_keys").write_text(
            Path(str(client_key) + ".pub").read_text())
        self.conf = directory / "sshd_config"
        self.conf.write_text(f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
AuthorizedKeysFile {directory}/authorized_keys
PidFile {directory}/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
LogLevel VERBOSE
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SSHD:
        with open(self.dir / "sshd.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen([need("/usr/sbin/sshd"), "-D", "-e", "-f",
                                          str(self.conf)], stdout=subprocess.DEVNULL,
                                         stderr=log)
        wait_listening(self.proc, self.port, "sshd")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for pid in [*_descendants(self.proc.pid), self.proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)  # sshd and its sessions
            self.proc.wait(10)
        self.proc = None

    def known_hosts_line(self) -> str:
        kind, b64 = Path(str(self.host_key) + ".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {b64}\n"

    def fingerprint(self) -> str:
        out = subprocess.run([need("ssh-keygen"), "-lf", str(self.host_key) + ".pub"],
                             capture_output=True, text=True, check=True).stdout
        return out.split()[1]

    def kill(self) -> None:
        """SIGKILL to sshd and every session process it forked (they call setsid(), so
        found by parentage, by PID: only what this fixture started)."""
        assert self.proc is not None
        for pid in [*_descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
