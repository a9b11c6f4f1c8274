"""TLS pieces for tests and benchmarks."""

from __future__ import annotations

import contextlib
import ssl


def client_hello(server_name: str = "localhost") -> bytes:
    """A TLS client's first flight, made in memory: what a half-open connection sends."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()
