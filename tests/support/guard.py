"""The network guard: no test sends past loopback (or the namespaces it made itself).

Two layers. In this process, an audit hook (PEP 578) sees every `connect`, `sendto`,
`sendmsg` and `getaddrinfo` that Python's socket module makes, including the resolver's
raw `_socket` sockets, and refuses any destination outside 127.0.0.0/8 and ::1 (plus
networks a test registers with `allow_network`, for addresses inside its own network
namespaces); a name other than localhost would go to /etc/resolv.conf's server, so only
IP literals and localhost may be looked up. A refused call raises `NetworkGuardError` (not
an OSError, so no retry loop swallows it) and is recorded, and the test fails at teardown
even if the code under test caught it. Sockets made outside Python (uvloop's own, child
processes such as dig or NSD) are covered by the second layer: scripts/test.sh runs the
suite in a network namespace of its own, where only loopback exists.

`need(program)` may be called only from tests marked `peer` (tests/peers/ are marked
automatically), so `pytest -m "not peer"` never needs a real peer installed.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterator

import pytest

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
_allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = list(LOOPBACK)
_violations: list[str] = []
current_item: pytest.Item | None = None


class NetworkGuardError(RuntimeError):
    """A test tried to reach an address outside loopback and its own namespaces."""


def allow_network(cidr: str) -> None:
    """Let this session reach `cidr` (addresses inside a namespace a test created)."""
    _allowed.append(ipaddress.ip_network(cidr, strict=False))


def permitted(host: object) -> bool:
    if not isinstance(host, str):
        return True
    if host in ("", "localhost", "ip6-localhost"):
        return True
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False  # a name: resolving it would ask the system's resolver
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return any(addr in net for net in _allowed)


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event in ("socket.connect", "socket.sendto"):
        address = args[1]
    elif event == "socket.sendmsg":
        address = args[1] if len(args) > 1 else None
    elif event == "socket.getaddrinfo":
        address = (args[0], args[1])
    else:
        return
    if not isinstance(address, tuple) or not address:
        return  # a Unix socket path, or a connected socket's send
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None or permitted(host):
        return
    message = f"{event} to {host!r}: only loopback and the test's own namespaces"
    _violations.append(message)
    raise NetworkGuardError(message)


sys.addaudithook(_audit)


def pytest_runtest_setup(item: pytest.Item) -> None:
    global current_item
    current_item = item


@pytest.fixture(autouse=True)
def _network_guard() -> Iterator[None]:
    del _violations[:]
    yield
    if _violations:
        found = list(_violations)
        del _violations[:]
        pytest.fail("network guard: " + "; ".join(found))


def marked_peer() -> bool:
    return current_item is None or current_item.get_closest_marker("peer") is not None
