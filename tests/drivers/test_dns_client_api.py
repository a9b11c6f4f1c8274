"""The DNS client's script-facing API against netkit's answering-only server (DNSZones):
typed records compared with dnspython's parse of the same answers, dnspython's
exceptions, resolv.conf, the stub cache, the sync face, reverse lookups."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.message
import dns.rdatatype
import pytest

from netkit.clients import dns as client
from netkit.testing.dns import DNSZones

pytestmark = pytest.mark.anyio

RECORDS = [
    ("www.example.test", "A", "192.0.2.10"),
    ("www.example.test", "A", "192.0.2.11"),
    ("www.example.test", "AAAA", "2001:db8::10"),
    ("alias.example.test", "CNAME", "www.example.test."),
    ("example.test", "MX", "10 mail.example.test."),
    ("example.test", "MX", "20 backup.example.test."),
    ("example.test", "TXT", '"v=spf1 -all" "second string"'),
    ("example.test", "CAA", '0 issue "ca.example.net"'),
    ("_sip._tcp.example.test", "SRV", "10 60 5060 sip.example.test."),
    ("svc.example.test", "HTTPS", "1 . alpn=h2,h3 port=8443 ipv4hint=192.0.2.1,192.0.2.2"),
    ("svc.example.test", "SVCB", "2 backend.example.test. port=9000 alpn=h2 no-default-alpn"),
    ("10.2.0.192.in-addr.arpa", "PTR", "www.example.test."),
]


@pytest.fixture(scope="module")
def zones() -> Iterator[DNSZones]:
    with DNSZones({"dns": {"zone": [{"name": "example.test", "records": [
            "@ 3600 SOA ns.example.test. admin.example.test. 7 3600 600 86400 300",
            "@ NS ns.example.test.", "ns A 192.0.2.53"]},
            {"name": "2.0.192.in-addr.arpa", "records": [
                "@ SOA ns.example.test. admin.example.test. 1 3600 600 86400 60",
                "@ NS ns.example.test."]}]}}) as z:
        for name, rdtype, value in RECORDS:
            z.add(name, rdtype, value)
        yield z


def server(z: DNSZones) -> str:
    return f"{z.host}:{z.port}"


def dnspython_rdatas(answer: client.Answer, rdtype: str) -> list:
    parsed = dns.message.from_wire(answer.wire)
    return [rd for rrset in parsed.answer if rrset.rdtype == dns.rdatatype.from_text(rdtype)
            for rd in rrset]


@pytest.mark.parametrize("qname, rdtype", [
    ("www.example.test", "A"), ("www.example.test", "AAAA"), ("example.test", "MX"),
    ("example.test", "TXT"), ("example.test", "SOA"), ("example.test", "CAA"),
    ("_sip._tcp.example.test", "SRV"), ("svc.example.test", "HTTPS"),
    ("svc.example.test", "SVCB"), ("10.2.0.192.in-addr.arpa", "PTR"), ("example.test", "NS"),
])
async def test_typed_records_match_dnspython(zones: DNSZones, qname: str, rdtype: str) -> None:
    records = await client.resolve(qname, rdtype, server=server(zones))
    theirs = dnspython_rdatas(records.answer, rdtype)
    assert len(records) == len(theirs) > 0
    for ours, rd in zip(records, theirs, strict=True):
        if rdtype in ("A", "AAAA"):
            assert ours.address == rd.address
        elif rdtype == "MX":
            assert (ours.preference, ours.exchange) == (rd.preference, rd.exchange.to_text())
        elif rdtype == "TXT":
            assert ours.strings == rd.strings and ours.text == "v=spf1 -allsecond string"
        elif rdtype == "SOA":
            assert (ours.mname, ours.rname, ours.serial, ours.refresh, ours.retry,
                    ours.expire, ours.minimum) == (rd.mname.to_text(), rd.rname.to_text(),
                                                   rd.serial, rd.refresh, rd.retry,
                                                   rd.expire, rd.minimum)
        elif rdtype == "CAA":
            assert (ours.flags, ours.tag, ours.value) == (rd.flags, rd.tag, rd.value)
        elif rdtype == "SRV":
            assert (ours.priority, ours.weight, ours.port, ours.target) == \
                (rd.priority, rd.weight, rd.port, rd.target.to_text())
        elif rdtype in ("HTTPS", "SVCB"):
            assert (ours.priority, ours.target) == (rd.priority, rd.target.to_text())
            params = {dns.rdtypes.svcbbase.ParamKey(k).name.lower().replace("_", "-"): v
                      for k, v in rd.params.items()}
            assert set(ours.params) == set(params)
            if "alpn" in params:
                assert ours.params["alpn"] == tuple(i.decode() for i in params["alpn"].ids)
            if "port" in params:
                assert ours.params["port"] == params["port"].port
            if "ipv4hint" in params:
                assert ours.params["ipv4hint"] == params["ipv4hint"].addresses
            if "no-default-alpn" in params:
                assert ours.params["no-default-alpn"] is True
        elif rdtype in ("PTR", "NS"):
            assert ours.target == rd.target.to_text()
        assert type(ours).__name__ == rdtype


async def test_cname_chain_and_records_attributes(zones: DNSZones) -> None:
    records = await client.resolve("alias.example.test", "A", server=server(zones))
    assert sorted(r.address for r in records) == ["192.0.2.10", "192.0.2.11"]
    assert records.name == "alias.example.test." and \
        records.canonical_name == "www.example.test."
    assert records.ttl == 300 and records.answer.rcode == "NOERROR"
    names = await client.reverse("192.0.2.10", server=server(zones))
    assert [p.target for p in names] == ["www.example.test."]
    assert client.reverse_name("2001:db8::1").endswith(".8.b.d.0.1.0.0.2.ip6.arpa.")


async def test_dnspython_exceptions(zones: DNSZones) -> None:
    with pytest.raises(client.NXDOMAIN) as caught:
        await client.resolve("missing.example.test", server=server(zones))
    assert caught.value.names == ["missing.example.test."]
    with pytest.raises(client.NoAnswer, match="has no MX records"):
        await client.resolve("www.example.test", "MX", server=server(zones))
    with pytest.raises(client.NoNameservers, match="REFUSED"):  # not a zone it serves
        await client.resolve("example.com", server=server(zones))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with pytest.raises(client.Timeout):
            await client.resolve("www.example.test", server=silent.getsockname(),
                                 timeout=0.2, attempts=2)
    # lookup never raises for an rcode: the Answer says it
    answer = await client.lookup("missing.example.test", server=server(zones))
    assert answer.rcode == "NXDOMAIN" and answer.authority[0].type == "SOA"
    answer = await client.lookup("example.com", server=server(zones))
    assert answer.rcode == "REFUSED"


async def test_resolv_conf_search_list_and_ndots(zones: DNSZones, tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# a comment\nnameserver 127.0.0.1\nnameserver bogus\n"
                    "search nothere.test example.test\noptions ndots:2 timeout:1 attempts:1\n")
    resolver = client.Resolver(resolv_conf=conf, port=zones.port)
    assert (resolver.search, resolver.ndots, resolver.timeout, resolver.attempts) == \
        (("nothere.test", "example.test"), 2, 1.0, 1)
    assert resolver.candidates("www") == ["www.nothere.test.", "www.example.test.", "www."]
    assert resolver.candidates("a.b.c") == ["a.b.c.", "a.b.c.nothere.test.",
                                            "a.b.c.example.test."]
    assert resolver.candidates("www.example.test.") == ["www.example.test."]
    # www.nothere.test. is REFUSED (not a zone the server has): the search goes on
    records = await resolver.resolve("www")
    assert records.canonical_name == "www.example.test."
    with pytest.raises(client.NoNameservers):  # REFUSED, then NXDOMAIN twice: the failure
        await resolver.resolve("nothing")
    from netkit.clients.dns import resolvconf
    assert resolvconf.parse("nameserver bogus\n").nameservers == ("127.0.0.1",)
    assert resolvconf.parse("").problems == ()
    assert resolvconf.load(tmp_path / "absent").nameservers == ("127.0.0.1",)


async def test_stub_cache_respects_ttls(zones: DNSZones) -> None:
    cache = client.StubCache()
    resolver = client.Resolver(server(zones), cache=cache)
    def asked() -> int:
        return sum(q.name.rstrip(".") == "www.example.test" and q.type == "AAAA"
                   for q in zones.queries)
    before = asked()
    for _ in range(5):
        records = await resolver.resolve("www.example.test", "AAAA")
        assert records[0].address == "2001:db8::10"
    assert asked() == before + 1
    assert (cache.hits, cache.misses) == (4, 1)
    # expiry, with the time handed in as the cache takes it
    key = ("www.example.test.", "AAAA", "IN")
    answer = cache.get(key, 0.0)
    assert answer is not None
    cache.put(key, answer, 1000.0)
    assert cache.get(key, 1000.0 + 299) is answer and cache.get(key, 1000.0 + 301) is None
    negative = await resolver.lookup("nope.example.test")
    assert negative.min_ttl == 300  # SOA TTL 3600 capped by its minimum 300


def test_sync_face_from_threads(zones: DNSZones) -> None:
    def one(i: int) -> str:
        return client.resolve_sync("www.example.test", "A", server=server(zones))[0].address
    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(one, range(30))) <= {"192.0.2.10", "192.0.2.11"}
    assert client.lookup_sync("missing.example.test", server=server(zones)).rcode == "NXDOMAIN"
    with pytest.raises(client.NXDOMAIN):
        client.resolve_sync("missing.example.test", server=server(zones))
    assert client.reverse_sync("192.0.2.10", server=server(zones))[0].target == \
        "www.example.test."
