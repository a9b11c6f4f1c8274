"""Connect with TLS and print what the server presented, like a tiny `openssl s_client`.

    python clients/tls_peek.py HOST:PORT [--ca CA.pem] [--name SNI]

Verification is on: a certificate the CA (or the system store) does not vouch
for is an error that says why, exit status 1.
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("address", type=lambda s: Address.parse(s, default_port=443))
    p.add_argument("--ca", help="CA bundle (default: the system store)")
    p.add_argument("--name", help="server name for SNI and checks (default: the host)")
    args = p.parse_args(argv)
    return anyio.run(peek, args.address, args.ca, args.name)


if __name__ == "__main__":
    sys.exit(main())
