"""A small network of namespaces for one test: a server namespace with a bridge, and
client namespaces each joined to it by a veth pair. Addresses exist only inside these
namespaces; `close()` deletes every namespace (and so every link) it made.

    with Link("10.77.0.1/24") as link:
        c1 = link.client(mac="02:00:00:00:00:01")      # a namespace with eth0 on the bridge
        link.run(link.server, ["ip", "addr"])
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest


def need_netns() -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    r = subprocess.run(["ip", "netns", "add", "nkprobe" + secrets.token_hex(2)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {r.stderr.strip()}")
    name = r.args[-1]
    subprocess.run(["ip", "netns", "del", name], check=True)


def ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *args] if ns is None else ["ip", "netns", "exec", ns, "ip", *args]
    subprocess.run(argv, check=True, capture_output=True, text=True)


class Link:
    def __init__(self, server_address: str) -> None:
        need_netns()
        self.tag = secrets.token_hex(2)
        self.server = f"nk{self.tag}s"
        self.namespaces = [self.server]
        ip("netns", "add", self.server)
        ip("link", "set", "lo", "up", ns=self.server)
        ip("link", "add", "br0", "type", "bridge", ns=self.server)
        ip("addr", "add", server_address, "dev", "br0", ns=self.server)
        ip("link", "set", "br0", "up", ns=self.server)
        self.clients = 0

    def client(self, mac: str) -> str:
        """A new namespace with `eth0` (hardware address `mac`) on the bridge, up, no
        address."""
        self.clients += 1
        ns = f"nk{self.tag}c{self.clients}"
        inside, outside = f"nkc{self.tag}{self.clients}", f"nkp{self.tag}{self.clients}"
        ip("netns", "add", ns)
        self.namespaces.append(ns)
        ip("link", "add", inside, "address", mac, "type", "veth", "peer", "name", outside)
        ip("link", "set", inside, "netns", ns)
        ip("link", "set", outside, "netns", self.server)
        ip("link", "set", outside, "master", "br0", "up", ns=self.server)
        ip("link", "set", inside, "name", "eth0", ns=ns)
        ip("link", "set", "eth0", "up", ns=ns)
        ip("link", "set", "lo", "up", ns=ns)
        return ns

    @staticmethod
    def prefix(ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def run(self, ns: str, argv: list[str], **kwargs: object
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix(ns), *argv], capture_output=True, text=True,
                              **kwargs)  # type: ignore[call-overload]

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recording_script(path: Path, record: Path) -> Path:
    """A dhclient/udhcpc script that appends what it is given to `record` (one line of
    key=value fields separated by |) and puts the
    address on the interface (inside the client's namespace only); it never touches
    /etc/resolv.conf."""
    path.write_text(f"""#!/bin/sh
{{
  echo "reason=${{reason:-$1}}|ip=${{new_ip_address:-$ip}}|mask=${{new_subnet_mask:-$subnet}}\\
|routers=${{new_routers:-$router}}|dns=${{new_domain_name_servers:-$dns}}\\
|domain=${{new_domain_name:-$domain}}|lease=${{new_dhcp_lease_time:-$lease}}\\
|server=${{new_dhcp_server_identifier:-$serverid}}"
}} >> {record}
addr="${{new_ip_address:-$ip}}"
case "${{reason:-$1}}" in
  BOUND|RENEW|REBIND|REBOOT|bound|renew)
    ip addr replace "$addr/24" dev "${{interface}}" ;;
esac
exit 0
""")
    path.chmod(0o755)
    return path
