"""netkit's forwarding-only SSH server for tests, with a client key made for it.

    with SSHServer() as ssh:               # or the netkit_ssh fixture
        ssh -i {ssh.client_key} -o UserKnownHostsFile={ssh.known_hosts} \\
            -p {ssh.port} -N -L 8080:127.0.0.1:80 test@127.0.0.1
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import asyncssh

from netkit.running import ThreadedServer, serve_in_thread


class SSHServer:
    """A forwarding-only SSH server on 127.0.0.1 (port 0) that lets `client_key` in and
    permits forwards to and listeners on loopback (`permit=` to change that)."""

    def __init__(self, *, permit: tuple[str, ...] = ("127.0.0.1:*", "localhost:*",
                                                      "[::1]:*")) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="netkit-ssh-")
        d = Path(self._tmp.name)
        key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = d / "client_ed25519"
        key.write_private_key(str(self.client_key))
        self.client_key.chmod(0o600)
        key.write_public_key(str(self.client_key) + ".pub")
        self.authorized_keys = d / "authorized_keys"
        self.authorized_keys.write_text(Path(str(self.client_key) + ".pub").read_text())
        self.host_key = d / "host_ed25519"
        self.known_hosts = d / "known_hosts"
        self.permit = permit
        self.server: ThreadedServer | None = None

    def start(self) -> SSHServer:
        self.server = serve_in_thread("sshfwd", {"sshfwd": {
            "mode": "server", "listen": ["127.0.0.1:0"], "host_key": str(self.host_key),
            "authorized_keys": str(self.authorized_keys), "permit": list(self.permit)}})
        kind, b64 = Path(str(self.host_key) + ".pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {kind} {b64}\n")
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self._tmp.cleanup()

    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.addresses[0][1]

    @property
    def counters(self) -> dict[str, Any]:
        assert self.server is not None
        return self.server.counters

    def ssh_args(self) -> list[str]:
        """The OpenSSH client options that reach this server, trusting its key."""
        return ["-i", str(self.client_key), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-p", str(self.port)]
