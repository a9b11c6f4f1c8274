"""The forwarder's server side (`mode = "server"`): an SSH server that only forwards.

Public-key auth from an authorized_keys file (asyncssh applies `from=`, `permitopen=`,
`restrict` and `no-port-forwarding`; `permitlisten=` is checked here); no password,
no shell, no exec, no agent forwarding. direct-tcpip (ssh -L, -D) and tcpip-forward
(ssh -R) only to `sshfwd.permit` patterns. The host key is made on first start (ed25519,
0600) and kept; its fingerprint is logged.
"""

from __future__ import annotations

import fnmatch
import logging
from pathlib import Path
from typing import Any

import asyncssh

from netkit.config import Address

from .targets import connect_target

log = logging.getLogger("netkit.sshfwd")


def host_key(path: Path) -> asyncssh.SSHKey:
    """The server's key, made (0600) on first use."""
    if path.exists():
        key = asyncssh.read_private_key(str(path))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(path))
        path.chmod(0o600)
        key.write_public_key(str(path) + ".pub")
        log.info("sshfwd: made a new host key %s", path)
    log.info("sshfwd: host key %s %s", key.get_algorithm(), key.get_fingerprint("sha256"))
    return key


def permitted(patterns: tuple[str, ...] | list[str], host: str, port: int) -> bool:
    """`host:port` matches one of "HOST:PORT" patterns (`*` wildcards; IPv6 in [])."""
    for pattern in patterns:
        p_host, _, p_port = pattern.rpartition(":")
        p_host = p_host.strip("[]")
        if (p_port == "*" or p_port == str(port)) and \
                fnmatch.fnmatchcase(host.lower(), p_host.lower()):
            return True
    return False


class ForwardOnlyServer(asyncssh.SSHServer):
    def __init__(self, permit: tuple[str, ...], stats: dict[str, int],
                 live: set[ForwardOnlyServer]) -> None:
        self.permit = permit
        self.stats = stats
        self.live = live
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = "?"

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.live.add(self)
        host, port = conn.get_extra_info("peername")[:2]
        self.peer = str(Address(host, port))
        self.stats["connections"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        if exc is not None:
            log.info("sshfwd server: %s: %s", self.peer, exc)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def auth_completed(self) -> None:
        log.info("sshfwd server: %s: authenticated", self.peer)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> Any:
        if not permitted(self.permit, dest_host, dest_port):
            self.stats["refused"] += 1
            log.warning("sshfwd server: %s: direct-tcpip to %s:%d is not in sshfwd.permit",
                        self.peer, dest_host, dest_port)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                                            f"{dest_host}:{dest_port} is not permitted")
        self.stats["channels"] += 1
        return connect_target(dest_host, dest_port)

    def server_requested(self, listen_host: str, listen_port: int) -> Any:
        assert self.conn is not None
        listens = self.conn.get_key_option("permitlisten", None)
        host = listen_host or "localhost"
        if not permitted(self.permit, host, listen_port) or (
                listens and not permitted([_with_host(p) for p in listens], host,
                                          listen_port)):
            self.stats["refused"] += 1
            log.warning("sshfwd server: %s: tcpip-forward on %s:%d is not permitted",
                        self.peer, host, listen_port)
            return False
        self.stats["listeners"] += 1
        return True


def _with_host(pattern: str) -> str:
    """OpenSSH's permitlisten="PORT" means localhost:PORT."""
    return pattern if ":" in pattern else f"localhost:{pattern}"


async def start_server(listen: list[Address], key_path: Path, authorized_keys: Path,
                       permit: tuple[str, ...], stats: dict[str, int],
                       live: set[ForwardOnlyServer]) -> list[Any]:
    key = host_key(key_path)
    servers = []
    for address in listen:
        servers.append(await asyncssh.create_server(
            lambda: ForwardOnlyServer(permit, stats, live), address.host, address.port,
            server_host_keys=[key], authorized_client_keys=str(authorized_keys),
            allow_pty=False, agent_forwarding=False, x11_forwarding=False,
            password_auth=False, kbdint_auth=False, gss_host=None, config=None))
    return servers
