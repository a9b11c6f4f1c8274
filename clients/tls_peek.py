"""Connect with TLS and print what the server presented, like a tiny `openssl s_client`.

    python clients/tls_peek.py HOST:PORT [--ca CA.pem] [--name SNI]
    python clients/tls_peek.py            (against a TLS front this script starts)

Verification is on: a certificate the CA (or the system store) does not vouch
for is an error that says why, exit status 1. Without an address, the script starts
what the `netkit_tls` fixture gives a test (a development CA, a TLS front on 127.0.0.1
port 0 before an HTTP server, both in-process) and peeks at it.
"""

from __future__ import annotations

import argparse
import ssl
import sys

import anyio
from anyio.streams.tls import TLSAttribute

from netkit.config import Address
from netkit.errors import NetkitError
from netkit.tlsconf import client_context
from netkit.transport.connect import connect_stream


async def peek(address: Address, ca: str | None, name: str | None) -> int:
    from pathlib import Path

    context = client_context(ca=Path(ca) if ca else None)
    try:
        stream = await connect_stream(address, tls=context, server_hostname=name)
    except NetkitError as exc:
        print(f"{address}: {exc}", file=sys.stderr)
        return 1
    async with stream:
        obj: ssl.SSLObject = stream.extra(TLSAttribute.ssl_object)
        cert = obj.getpeercert() or {}
        print(f"protocol: {obj.version()}  cipher: {obj.cipher()[0]}")
        print(f"subject:  {dict(x[0] for x in cert.get('subject', ()))}")
        print(f"issuer:   {dict(x[0] for x in cert.get('issuer', ()))}")
        print(f"names:    {', '.join(v for _, v in cert.get('subjectAltName', ()))}")
        print(f"expires:  {cert.get('notAfter')}")
    return 0


def against_a_front_of_our_own(name: str | None) -> int:
    from netkit.testing import serve_in_thread
    from netkit.testing.ca import DevCA
    from netkit.testing.tls import tls_front

    ca = DevCA()
    with serve_in_thread("http") as backend, \
            tls_front(f"127.0.0.1:{backend.addresses[0][1]}", ca) as front:
        host, port = front.addresses[0]
        return anyio.run(peek, Address(host, port), str(ca.ca_file), name or "localhost")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("address", nargs="?", type=lambda s: Address.parse(s, default_port=443),
                   help="default: a TLS front started here, with a CA of its own")
    p.add_argument("--ca", help="CA bundle (default: the system store)")
    p.add_argument("--name", help="server name for SNI and checks (default: the host)")
    args = p.parse_args(argv)
    if args.address is None:
        return against_a_front_of_our_own(args.name)
    return anyio.run(peek, args.address, args.ca, args.name)


if __name__ == "__main__":
    sys.exit(main())
