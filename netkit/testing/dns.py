"""An answering-only DNS server for tests: records added and removed while it runs, and
the questions it received.

    with DNSZones() as dns:                     # or the netkit_dns fixture
        dns.add("api.test", "A", "192.0.2.10")
        dig @dns.host -p dns.port api.test      # 192.0.2.10; other.test: NXDOMAIN;
                                                # example.com: REFUSED (not our zone)

It is the DNS server's authoritative mode (``dns.recursion = false`` with
``[[dns.zone]]`` tables), so a config can give it whole zones as well.
"""

from __future__ import annotations

from typing import Any

from netkit.running import ThreadedServer, serve_in_thread
from netkit.servers.dns.service import DNSService, Question


class DNSZones:
    """A DNS server on 127.0.0.1 (UDP and TCP, one port) serving only its zones."""

    def __init__(self, config: dict[str, Any] | None = None, *, keep: int = 10_000) -> None:
        doc = dict(config or {})
        section = {"recursion": False, **doc.get("dns", {})}
        self._config = {**doc, "dns": section}
        self._keep = keep
        self.server: ThreadedServer | None = None

    def start(self) -> DNSZones:
        self.server = serve_in_thread("dns", self._config)
        self.server.call(self._service.record_questions, self._keep)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def __enter__(self) -> DNSZones:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def _service(self) -> DNSService:
        assert self.server is not None, "the DNS server is not running"
        return self.server.service  # type: ignore[return-value]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        assert self.server is not None
        return self.server.addresses

    @property
    def host(self) -> str:
        return self.addresses[0][0]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    def add(self, name: str, type: str, value: str, ttl: int = 300) -> None:
        """Serve `name TTL IN TYPE VALUE` from now on (a name outside every zone makes a
        zone at its parent: "api.test" makes "test."). ValueError if it cannot be."""
        assert self.server is not None
        self.server.call(self._service.add_record, name, type, value, ttl)

    def remove(self, name: str, type: str | None = None, value: str | None = None) -> int:
        """Stop serving `name`'s records (of one type, with one value); how many went."""
        assert self.server is not None
        return self.server.call(self._service.remove_records, name, type, value)

    @property
    def zones(self) -> list[str]:
        """The zones served, e.g. ["test."]."""
        return sorted(self._service.policy.zones.zones)

    @property
    def records(self) -> int:
        """How many records are served, every zone's SOA included."""
        assert self.server is not None
        return self.server.call(lambda: len(self._service.policy.zones))

    def count(self, name: str, type: str | None = None) -> int:
        """How many records `name` has (of one type)."""
        def counting() -> int:
            from netkit.proto.dns.names import name_key
            key = name_key(name)
            zone = self._service.policy.zones.find(key)
            types = zone.rrsets.get(key, {}) if zone is not None else {}
            return sum(len(rrs) for t, rrs in types.items()
                       if type is None or _type_name(t) == type.upper())
        assert self.server is not None
        return self.server.call(counting)

    @property
    def queries(self) -> list[Question]:
        """The questions received so far (name, type, client), oldest first."""
        assert self.server is not None
        return self.server.call(lambda: list(self._service.questions or ()))


def _type_name(qtype: int) -> str:
    from dnslib import QTYPE
    return str(QTYPE.get(qtype))
