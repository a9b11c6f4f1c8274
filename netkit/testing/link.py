"""A faulty link between a test and a service (as Toxiproxy gives): the relay with one
forward to `target`, its faults set at start and changed at any time.

    with FaultyLink(("127.0.0.1", db_port), latency=0.2) as link:   # or netkit_link
        connect to ("127.0.0.1", link.port) ...
        link.set(reset_after=1000)          # from now on
        link.set(blackhole=True)
"""

from __future__ import annotations

from typing import Any

from netkit.running import ThreadedServer, serve_in_thread


class FaultyLink:
    def __init__(self, target: tuple[str, int], *, proto: str = "tcp", **faults: Any) -> None:
        self.target = target
        self.proto = proto
        self.faults = faults
        self.server: ThreadedServer | None = None

    def start(self) -> FaultyLink:
        self.server = serve_in_thread("relay", {"relay": {"forward": [{
            "name": "link", "proto": self.proto, "listen": "127.0.0.1:0",
            "to": f"{self.target[0]}:{self.target[1]}", "faults": self.faults}]}})
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> FaultyLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.addresses[0][1]

    def set(self, **faults: Any) -> dict[str, Any]:
        """Change faults now (latency, jitter, bandwidth, loss, reset_after, blackhole);
        the faults as they are afterwards."""
        assert self.server is not None
        from netkit.servers.relay.service import faults_view
        service = self.server.service
        return self.server.call(lambda: faults_view(service, {"forward": "link",
                                                              **faults}))["link"]
