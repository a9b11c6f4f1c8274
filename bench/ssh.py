"""Our SSH forwarder's -L against `ssh -L`, to the same sshd with the same cipher.

sshd and a byte-counting sink on core 0; the forwarder (ours, then OpenSSH's) and the
client pushing MIB MiB through its -L port on core 1. Throughput per cipher
(aes128-gcm@openssh.com, chacha20-poly1305@openssh.com), and the set-up time: from
starting the forwarder process to the first byte echoed back through its forward.

    python bench/ssh.py [--mib 256] [--rounds 3]
prints  ssh-L-aes128-gcm ours/peer = ...  ssh-L-chacha20 ours/peer = ...
        ssh-setup-time ours/peer = ... (lower is better)
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    LOAD_CORE,
    ROOT,
    free_port,
    pinned,
    push,
    report,
    require,
    start,
    stop,
    wait_port,
)

CIPHERS = {"aes128-gcm": "aes128-gcm@openssh.com",
           "chacha20": "chacha20-poly1305@openssh.com"}


def keygen(path: Path) -> Path:
    subprocess.run([require("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)
    return path


def first_byte(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"x")
                s.shutdown(socket.SHUT_WR)
                if s.recv(8) == b"1":
                    return
        except OSError:
            pass
        time.sleep(0.005)
    raise SystemExit("bench: no byte came back through the forward")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-ssh-"))
    key = keygen(tmp / "client")
    host_key = keygen(tmp / "host")
    (tmp / "authorized_keys").write_text(Path(str(key) + ".pub").read_text())
    sshd_port, sink_port = free_port(), free_port()
    (tmp / "sshd_config").write_text(f"""Port {sshd_port}
ListenAddress 127.0.0.1
HostKey {host_key}
AuthorizedKeysFile {tmp}/authorized_keys
PidFile {tmp}/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
""")
    kind, b64 = Path(str(host_key) + ".pub").read_text().split()[:2]
    (tmp / "known_hosts").write_text(f"[127.0.0.1]:{sshd_port} {kind} {b64}\n")
    os.makedirs("/run/sshd", exist_ok=True)
    sshd = start([require("/usr/sbin/sshd"), "-D", "-f", str(tmp / "sshd_config")])
    sink = start([sys.executable, str(ROOT / "bench" / "common.py"), "--sink", str(sink_port)])
    rates: dict[str, dict[str, list[float]]] = {c: {"ours": [], "ssh": []} for c in CIPHERS}
    setup: dict[str, list[float]] = {"ours": [], "ssh": []}
    try:
        wait_port(sshd_port)
        wait_port(sink_port)
        for _ in range(args.rounds):
            for cipher, name in CIPHERS.items():
                for who in ("ours", "ssh"):
                    port = free_port()
                    forward = f"127.0.0.1:{port}:127.0.0.1:{sink_port}"
                    cfg = tmp / "ssh_config"
                    cfg.write_text(f"""Host bench
    HostName 127.0.0.1
    Port {sshd_port}
    User root
    IdentityFile {key}
    IdentitiesOnly yes
    UserKnownHostsFile {tmp}/known_hosts
    Ciphers {name}
""")
                    argv = ([sys.executable, "-m", "netkit.servers.sshfwd", "-F", str(cfg),
                             "--log-level", "warning", "-L", forward, "bench"] if who == "ours"
                            else [require("ssh"), "-F", str(cfg), "-N", "-o", "BatchMode=yes",
                                  "-L", forward, "bench"])
                    t0 = time.monotonic()
                    proc = subprocess.Popen(pinned(LOAD_CORE, argv), stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, cwd=ROOT,
                                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
                    try:
                        first_byte(port, time.monotonic() + 30)
                        if cipher == "aes128-gcm":
                            setup[who].append((time.monotonic() - t0) * 1000)
                        rates[cipher][who].append(push(port, args.mib))
                    finally:
                        proc.send_signal(signal.SIGTERM)
                        proc.wait(10)
    finally:
        stop(sink)
        stop(sshd)
    for cipher in CIPHERS:
        report(f"ssh-L-{cipher}", rates[cipher]["ours"], rates[cipher]["ssh"], "MiB/s")
    # time: lower is better, so a ratio under 1 is the win here
    report("ssh-setup-time", setup["ours"], setup["ssh"], "ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
