"""netkit's DNS client: dnspython's `dns.resolver` habits, asynchronous and synchronous.

    from netkit.clients import dns

    for mx in dns.resolve_sync("example.com", "MX", server="127.0.0.1:5300"):
        print(mx.preference, mx.exchange)
    answer = await dns.lookup("example.com", "A")      # the Answer, any rcode

    python -m netkit.clients.dns [@SERVER] NAME [TYPE] [+short] ...   (dig's habits)

See docs/clients.md.
"""

from ...errors import NXDOMAIN, ConnectError, DNSError, NoAnswer, NoNameservers, ResolveTimeout
from .rdata import (
    AAAA,
    CAA,
    CNAME,
    DNAME,
    HTTPS,
    MX,
    NS,
    PTR,
    SOA,
    SRV,
    SVCB,
    TXT,
    A,
    Generic,
    RData,
)
from .resolvconf import ResolvConf
from .stub import (
    Answer,
    Record,
    Records,
    Resolver,
    StubCache,
    lookup,
    lookup_sync,
    resolve,
    resolve_sync,
    reverse,
    reverse_name,
    reverse_sync,
)

#: dnspython's name for it (dns.exception.Timeout)
Timeout = ResolveTimeout

__all__ = [
    "AAAA", "CAA", "CNAME", "DNAME", "HTTPS", "MX", "NS", "NXDOMAIN", "PTR", "SOA", "SRV",
    "SVCB", "TXT", "A", "Answer", "ConnectError", "DNSError", "Generic", "NoAnswer",
    "NoNameservers", "RData", "Record", "Records", "ResolvConf", "ResolveTimeout", "Resolver",
    "StubCache", "Timeout", "lookup", "lookup_sync", "resolve", "resolve_sync", "reverse",
    "reverse_name", "reverse_sync",
]
