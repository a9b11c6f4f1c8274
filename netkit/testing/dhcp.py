"""A DHCP server for tests of DHCP clients: on the loopback interface, a port of its
own, the subnet 127.0.10.0/24 (pool .100-.199, router .1, DNS .53, domain lan.test),
leases in a temporary SQLite file. Clients reach it as a relay agent would: from
`giaddr` (127.0.10.1), to `port`.

    with DHCPTestServer() as dhcp:           # or the netkit_dhcp fixture
        lease = dhcp.obtain(mac="02:00:00:00:00:01")        # netkit.clients.dhcp
        dhcp.leases()                                       # address -> (mac, state)
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from netkit.running import ThreadedServer, serve_in_thread

GIADDR = "127.0.10.1"


class DHCPTestServer:
    def __init__(self, **config: Any) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="netkit-dhcp-")
        self.config = {"interface": "lo", "subnet": "127.0.10.0/24",
                       "pool": ["127.0.10.100-127.0.10.199"], "router": ["127.0.10.1"],
                       "dns": ["127.0.10.53"], "domain": "lan.test", "port": 0,
                       "lease_db": str(Path(self._tmp.name) / "leases.db"), **config}
        self.server: ThreadedServer | None = None
        self.giaddr = GIADDR

    def start(self) -> DHCPTestServer:
        self.server = serve_in_thread("dhcp", {"dhcp": self.config})
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self._tmp.cleanup()

    def __enter__(self) -> DHCPTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.addresses[0][1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def obtain(self, **kwargs: Any) -> Any:
        """A lease through netkit's client (keyword arguments as `dhcp.obtain`)."""
        from netkit.clients import dhcp
        return asyncio.run(dhcp.obtain(server=self.address, giaddr=self.giaddr, **kwargs))

    def leases(self) -> dict[str, tuple[str, str]]:
        """address -> (mac, state), as the server holds them now."""
        assert self.server is not None
        engine = self.server.service.engine
        return {a: (x.mac, x.state) for a, x in list(engine.by_address.items())}

    @property
    def counters(self) -> dict[str, int]:
        assert self.server is not None
        return self.server.counters
