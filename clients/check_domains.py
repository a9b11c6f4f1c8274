"""Check domains' mail servers: their MX records, and the TLS certificate of each (valid
for that name? how many days left?). The DNS client and a TLS connection together.

    python clients/check_domains.py DOMAIN... --dns SERVER [--port 25|465|443] [--ca CA]

Exit status 0 when every MX host has a certificate that verifies and has at least
--warn-days left, 1 otherwise. Without domains, the script starts what it checks: a
DNS server with a few domains (netkit.testing's DNSZones), a TLS front with a
development CA's certificate for one MX host but not the other, all on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime
import ssl
import sys
from pathlib import Path

import anyio
from anyio.streams.tls import TLSAttribute

from netkit.clients import dns
from netkit.config import Address
from netkit.errors import NetkitError
from netkit.tlsconf import client_context
from netkit.transport.connect import connect_stream


async def certificate_days(host: str, address: str, port: int, ca: Path | None) -> int:
    """Days left on the certificate `address` presents for `host` (verified)."""
    stream = await connect_stream(Address(address, port), tls=client_context(ca=ca),
                                  server_hostname=host.rstrip("."), timeout=5)
    async with stream:
        cert = stream.extra(TLSAttribute.ssl_object).getpeercert() or {}
    expires = ssl.cert_time_to_seconds(cert["notAfter"])
    left = expires - datetime.datetime.now(datetime.UTC).timestamp()
    return int(left // 86400)


async def check(domains: list[str], server: str, port: int, ca: Path | None,
                warn_days: int) -> int:
    problems = 0
    for domain in domains:
        try:
            mxs = sorted(await dns.resolve(domain, "MX", server=server),
                         key=lambda mx: mx.preference)
        except (dns.NXDOMAIN, dns.NoAnswer) as exc:
            print(f"{domain}: no MX ({type(exc).__name__})")
            problems += 1
            continue
        for mx in mxs:
            try:
                addresses = [a.address for a in await dns.resolve(mx.exchange, "A",
                                                                  server=server)]
            except dns.DNSError as exc:
                print(f"{domain}: MX {mx.preference} {mx.exchange} has no address ({exc})")
                problems += 1
                continue
            for address in addresses:
                where = f"{domain}: MX {mx.preference} {mx.exchange} {address}:{port}"
                try:
                    days = await certificate_days(mx.exchange, address, port, ca)
                except NetkitError as exc:
                    print(f"{where}: TLS FAILED: {exc}")
                    problems += 1
                    continue
                verdict = "ok" if days >= warn_days else "EXPIRES SOON"
                problems += days < warn_days
                print(f"{where}: certificate {verdict}, {days} days left")
    return 1 if problems else 0


def on_a_network_of_our_own(warn_days: int) -> int:
    from netkit.testing import serve_in_thread
    from netkit.testing.ca import DevCA
    from netkit.testing.dns import DNSZones
    from netkit.testing.tls import tls_front

    ca = DevCA()
    with serve_in_thread("http") as backend, DNSZones() as zones, \
            tls_front(f"127.0.0.1:{backend.addresses[0][1]}", ca, "mail.example.test") as front:
        zones.add("example.test", "MX", "10 mail.example.test.")
        zones.add("mail.example.test", "A", "127.0.0.1")
        zones.add("other.test", "MX", "5 smtp.other.test.")  # not on the certificate
        zones.add("smtp.other.test", "A", "127.0.0.1")
        zones.add("nomail.test", "A", "127.0.0.1")
        return anyio.run(check, ["example.test", "other.test", "nomail.test"],
                         f"{zones.host}:{zones.port}", front.addresses[0][1], ca.ca_file,
                         warn_days)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("domains", nargs="*")
    p.add_argument("--dns", help="DNS server HOST[:PORT] (default: /etc/resolv.conf's)")
    p.add_argument("--port", type=int, default=465, help="TLS port of the MX hosts")
    p.add_argument("--ca", type=Path, help="CA bundle (default: the system's)")
    p.add_argument("--warn-days", type=int, default=14)
    args = p.parse_args(argv)
    if not args.domains:
        return on_a_network_of_our_own(args.warn_days)
    return anyio.run(check, args.domains, args.dns, args.port, args.ca, args.warn_days)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
