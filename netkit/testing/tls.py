"""TLS pieces for tests and benchmarks: a TLS front for a local port, a ClientHello."""

from __future__ import annotations

import contextlib
import ssl

from netkit.contract import spec_of
from netkit.running import ThreadedServer
from netkit.testing.ca import DevCA


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


def tls_front(target: str, ca: DevCA, *names: str, **tunnel: object) -> ThreadedServer:
    """A TLS front for `target` ("HOST:PORT", plaintext) in a background thread, on
    127.0.0.1 port 0, with a certificate from `ca` for `names` (default: localhost,
    127.0.0.1, ::1); more ``[[tls.tunnel]]`` keys in `tunnel`. Stop it with `.stop()`
    (or use it as a context manager)."""
    cert, key = ca.issue(*names)
    config = {"tls": {"watch_interval": 0, "shutdown_timeout": 5, "tunnel": [
        {"forward": target, "cert": str(cert), "key": str(key), **tunnel}]}}
    return ThreadedServer(spec_of("tls"), config, {}).start()
