"""Host keys the OpenSSH way: known_hosts (hashed entries too, through asyncssh), an
unknown or changed key refused with its `SHA256:` fingerprint and what to do, and
`StrictHostKeyChecking accept-new` writing a new host's key on first use."""

from __future__ import annotations

from pathlib import Path

import anyio
import asyncssh


class HostKeyRefused(Exception):
    """The server's key is not known (or has changed): the message says which and how
    to accept it."""


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


async def examine(host: str, port: int, known_hosts: Path, mode: str,
                  timeout: float) -> bool:
    """After asyncssh refused the key: decide. True when it was accepted (accept-new
    wrote it: connect again); HostKeyRefused otherwise."""
    with anyio.fail_after(timeout):
        key = await asyncssh.get_server_host_key(host, port, config=None)
    if key is None:
        raise HostKeyRefused(f"{host}:{port} presented no host key")
    fingerprint = key.get_fingerprint("sha256")
    kind = key.get_algorithm()
    known = asyncssh.read_known_hosts(str(known_hosts)) if known_hosts.exists() else None
    matches = known.match(host, "", port)[0] if known is not None else []
    name = known_hosts_name(host, port)
    if matches:
        raise HostKeyRefused(
            f"REMOTE HOST IDENTIFICATION HAS CHANGED for {name}: the {kind} key it sent is "
            f"{fingerprint}, not the one in {known_hosts}. If this is expected, remove the "
            f"old entry (ssh-keygen -R '{name}' -f {known_hosts}) and connect again.")
    if mode == "accept-new":
        known_hosts.parent.mkdir(parents=True, exist_ok=True)
        line = f"{name} {key.export_public_key('openssh').decode().split()[0]} " \
               f"{key.export_public_key('openssh').decode().split()[1]}\n"
        with known_hosts.open("a") as f:
            f.write(line)
        known_hosts.chmod(0o600)
        return True
    raise HostKeyRefused(
        f"the host key of {name} is not known: {kind} key {fingerprint}. To accept it, add "
        f"it to {known_hosts} (ssh-keyscan -p {port} {host} >> {known_hosts}) or set "
        "StrictHostKeyChecking accept-new")
