"""The pytest plugin: netkit servers as fixtures (registered by the ``pytest11`` entry
point, so installing netkit makes them available; ``pytest -p no:netkit`` turns it off).

    netkit_ca      a development CA (session): ca_file, client_context(), issue(*names)
    netkit_dns     an answering-only DNS server: add(), remove(), addresses, queries
    netkit_http    an HTTP origin with expectations, checked at teardown
    netkit_https   the same over HTTPS, with a netkit_ca certificate
    netkit_tls     a factory: netkit_tls("HOST:PORT") -> a TLS front for that port
    netkit_server  a factory: netkit_server("dns", config) -> any netkit server

Every server runs in a background thread on 127.0.0.1, port 0, so sync and async tests
use them alike, and is stopped when the test ends. Nothing is imported until a fixture
is used (the plugin loads in every pytest run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from netkit.running import ThreadedServer
    from netkit.testing.ca import DevCA
    from netkit.testing.dns import DNSZones
    from netkit.testing.http import HTTPOrigin


@pytest.fixture(scope="session")
def netkit_ca(tmp_path_factory: pytest.TempPathFactory) -> DevCA:
    """A development CA for the whole session."""
    from netkit.testing.ca import DevCA
    return DevCA(tmp_path_factory.mktemp("netkit-ca"))


@pytest.fixture
def netkit_dns() -> Iterator[DNSZones]:
    """An answering-only DNS server (no recursion; REFUSED outside its zones)."""
    from netkit.testing.dns import DNSZones
    with DNSZones() as dns:
        yield dns


def _origin(request: pytest.FixtureRequest, tls: dict[str, str] | None
            ) -> Iterator[HTTPOrigin]:
    from netkit.running import serve_in_thread
    from netkit.testing.http import HTTPOrigin
    ordered = request.node.get_closest_marker("netkit_ordered") is not None
    origin = HTTPOrigin(ordered=ordered)
    section: dict[str, Any] = {"shutdown_timeout": 2}
    if tls:
        section["tls"] = {**tls, "watch_interval": 0}
    with serve_in_thread("http", {"http": section}, app=origin.handler) as server:
        origin.url, origin.addresses = server.url, server.addresses
        yield origin
    origin.check()


@pytest.fixture
def netkit_http(request: pytest.FixtureRequest) -> Iterator[HTTPOrigin]:
    """An HTTP origin: `expect(...).respond(...)`; unmatched requests and unmet
    expectations fail the test at teardown. `@pytest.mark.netkit_ordered`: in order."""
    yield from _origin(request, None)


@pytest.fixture
def netkit_https(request: pytest.FixtureRequest, netkit_ca: DevCA) -> Iterator[HTTPOrigin]:
    """`netkit_http` over HTTPS, with a certificate from `netkit_ca` for localhost,
    127.0.0.1 and ::1 (clients trust `netkit_ca.ca_file`)."""
    cert, key = netkit_ca.issue()
    yield from _origin(request, {"cert": str(cert), "key": str(key)})


@pytest.fixture
def netkit_tls(netkit_ca: DevCA) -> Iterator[Callable[..., ThreadedServer]]:
    """`netkit_tls("127.0.0.1:8080", *names, **tunnel_keys)` -> a TLS front for that
    port with a `netkit_ca` certificate; stopped when the test ends."""
    from netkit.testing.tls import tls_front
    fronts: list[ThreadedServer] = []

    def make(target: str, *names: str, **tunnel: Any) -> ThreadedServer:
        front = tls_front(target, netkit_ca, *names, **tunnel)
        fronts.append(front)
        return front

    yield make
    for front in reversed(fronts):
        front.stop()


@pytest.fixture
def netkit_proxy() -> Iterator[ThreadedServer]:
    """An HTTP forward proxy on 127.0.0.1 (`url` for clients' proxy settings), allowed to
    reach loopback origins (a deployed one denies them), CONNECT to any port."""
    from netkit.running import serve_in_thread
    with serve_in_thread("proxy", {"proxy": {"deny_destinations": [],
                                             "connect_ports": list(range(1, 65536))}}) as px:
        yield px


@pytest.fixture
def netkit_ssh() -> Iterator[Any]:
    """netkit's forwarding-only SSH server (port 0) with a client key made for it:
    `port`, `client_key`, `known_hosts`, `ssh_args()` for OpenSSH's client, `counters`."""
    from netkit.testing.ssh import SSHServer
    with SSHServer() as ssh:
        yield ssh


@pytest.fixture
def netkit_smtp() -> Iterator[Any]:
    """An SMTP sink on 127.0.0.1 (`port`) keeping `messages` (sender, recipients,
    content); `refuse["a@b.test"] = 550` (or 451) makes it refuse that recipient."""
    from netkit.testing.smtp import SMTPSink
    with SMTPSink() as sink:
        yield sink


@pytest.fixture
def netkit_dhcp() -> Iterator[Any]:
    """A DHCP server on the loopback interface (`port`), subnet 127.0.10.0/24; a client
    reaches it as a relay would, from `giaddr`. `obtain()` gets a lease with netkit's
    client; `leases()` shows the server's table."""
    from netkit.testing.dhcp import DHCPTestServer
    with DHCPTestServer() as server:
        yield server


@pytest.fixture
def netkit_link() -> Iterator[Callable[..., Any]]:
    """`netkit_link((host, port), latency=0.2, ...)` -> a faulty link (`port`; `set(...)`
    changes faults at run time) in front of a service; stopped when the test ends."""
    from netkit.testing.link import FaultyLink
    links: list[FaultyLink] = []

    def make(target: tuple[str, int], **faults: Any) -> FaultyLink:
        link = FaultyLink(target, **faults).start()
        links.append(link)
        return link

    yield make
    for link in links:
        link.stop()


@pytest.fixture
def netkit_server() -> Iterator[Callable[..., ThreadedServer]]:
    """`netkit_server("http", config, app=...)` -> any netkit server, in a thread;
    stopped when the test ends."""
    from netkit.contract import spec_of
    from netkit.running import ThreadedServer
    servers: list[ThreadedServer] = []

    def make(name: str, config: Any = None, **objects: Any) -> ThreadedServer:
        server = ThreadedServer(spec_of(name), config, objects).start()
        servers.append(server)
        return server

    yield make
    for server in reversed(servers):
        server.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "netkit_ordered: netkit_http/netkit_https expect requests in order")
