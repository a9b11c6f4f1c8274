"""netkit servers in other projects' tests: real servers, in-process, on loopback.

    async with netkit.testing.serve("dns", {"dns": {"recursion": False}}) as server: ...
    with netkit.testing.serve_in_thread("http", app=handler) as server: ...

and, through the pytest plugin (`plugin.py`, loaded by the ``pytest11`` entry point;
``pytest -p no:netkit`` turns it off), the fixtures ``netkit_ca``, ``netkit_dns``,
``netkit_http``, ``netkit_https``, ``netkit_tls`` and ``netkit_server``. The pieces
they are made of are here for use without pytest: `DevCA` (ca.py), `DNSZones`
(dns.py), `HTTPOrigin` (http.py), `tls_front` (tls.py). See docs/testing-with-netkit.md.

Also the machinery of netkit's own tests: an NSD hierarchy (`nsd`), a TLS ClientHello
made in memory (`tls.client_hello`).
"""

from netkit.running import Server, ThreadedServer, serve, serve_in_thread

__all__ = ["Server", "ThreadedServer", "serve", "serve_in_thread"]
