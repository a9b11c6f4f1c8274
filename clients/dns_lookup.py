"""Look names up with netkit's DNS client, against a DNS server this script starts.

    python clients/dns_lookup.py [NAME...]

The server is the `netkit_dns` fixture's: an answering-only DNS server on 127.0.0.1,
port 0, started in-process (netkit.testing), given a few records; the client
(`netkit.clients.dns.lookup`) asks it over UDP and TCP and prints what it said.
"""

from __future__ import annotations

import sys

import anyio

from netkit.clients import dns
from netkit.testing.dns import DNSZones


async def lookups(server: str, names: list[str]) -> int:
    failures = 0
    for name in names:
        for qtype in ("A", "TXT"):
            answer = await dns.lookup(name, qtype, server=server, tcp=qtype == "TXT")
            data = ", ".join(r.data for r in answer.records) or "-"
            print(f"{name} {qtype}: {answer.rcode} {data} ({'tcp' if answer.tcp else 'udp'})")
            failures += answer.rcode not in ("NOERROR", "NXDOMAIN")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    with DNSZones() as zones:
        zones.add("api.test", "A", "192.0.2.10")
        zones.add("api.test", "TXT", "served by netkit")
        zones.add("www.test", "CNAME", "api.test.")
        status = anyio.run(lookups, f"{zones.host}:{zones.port}",
                           argv or ["api.test", "www.test", "missing.test"])
        print(f"the server received {len(zones.queries)} questions")
        return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
