"""The relay's sans-IO parts: the firewall, the routing table, the connection table and
the fault decisions."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netkit.proto.relay.addresses import NetSet, address_key
from netkit.proto.relay.conntrack import ConnectionTable
from netkit.proto.relay.faults import Faults, Pacer
from netkit.proto.relay.routes import Route, RouteTable
from netkit.proto.relay.rules import Firewall, Rule, parse_ports


def nets(*text: str) -> NetSet:
    return NetSet([ipaddress.ip_network(t) for t in text])


def test_first_match_wins_then_the_default() -> None:
    fw = Firewall([Rule("deny", "tcp", src=nets("10.0.0.5/32")),
                   Rule("allow", "tcp", src=nets("10.0.0.0/8"), dport=(80, 80)),
                   Rule("reject", "udp", dst=nets("192.0.2.0/24"))], "deny")
    assert fw.decide("tcp", "10.0.0.5", "10.1.1.1", 80) == ("deny", 0)
    assert fw.decide("tcp", "10.0.0.6", "10.1.1.1", 80) == ("allow", 1)
    assert fw.decide("tcp", "10.0.0.6", "10.1.1.1", 81) == ("deny", -1)
    assert fw.decide("udp", "8.8.8.8", "192.0.2.1", 53) == ("reject", 2)
    assert fw.decide("tcp", "::ffff:10.0.0.5", "10.1.1.1", 80) == ("deny", 0)  # mapped
    assert [r["hits"] for r in fw.view()] == [2, 1, 1, 1]


def test_no_rules_allow_private_and_loopback_only() -> None:
    fw = Firewall([], "allow")  # the default policy speaks only once there are rules
    assert fw.decide("tcp", "192.168.1.9", "10.0.0.1", 22)[0] == "allow"
    assert fw.decide("tcp", "::1", "::1", 22)[0] == "allow"
    assert fw.decide("tcp", "203.0.113.9", "10.0.0.1", 22)[0] == "deny"


@pytest.mark.parametrize("text,ports", [(80, (80, 80)), ("8000-8010", (8000, 8010)),
                                        ("443", (443, 443))])
def test_ports(text, ports) -> None:
    assert parse_ports(text) == ports


@pytest.mark.parametrize("bad", ["90-80", "70000", "x", -1, True])
def test_bad_ports(bad) -> None:
    with pytest.raises(ValueError):
        parse_ports(bad)


@given(st.ip_addresses(v=4), st.integers(0, 32), st.ip_addresses(v=4))
def test_netset_matches_as_ipaddress_does(net_addr, prefix, addr) -> None:
    net = ipaddress.ip_network(f"{net_addr}/{prefix}", strict=False)
    assert NetSet([net]).match(address_key(str(addr))) == (addr in net)


def test_longest_prefix_route() -> None:
    table = RouteTable([Route(ipaddress.ip_network("10.0.0.0/8"), "10.0.0.1"),
                        Route(ipaddress.ip_network("10.1.0.0/16"), "10.1.0.1"),
                        Route(ipaddress.ip_network("0.0.0.0/0"), "192.0.2.1")])
    assert table.lookup("10.1.2.3").via == "10.1.0.1"
    assert table.lookup("10.9.2.3").via == "10.0.0.1"
    assert table.lookup("8.8.8.8").via == "192.0.2.1"
    assert table.lookup("2001:db8::1") is None


def test_connection_table_limits_and_expiry() -> None:
    table = ConnectionTable(max_entries=5, max_per_source=2)
    a = [table.open("udp", ("10.0.0.1", p), ("10.9.9.9", 53), 0.0) for p in range(3)]
    assert a[2] is None and table.refused_source == 1
    b = [table.open("tcp", (f"10.0.0.{i}", 1), ("10.9.9.9", 80), 0.0) for i in range(2, 6)]
    assert b[-1] is None and table.refused_full == 1 and len(table) == 5
    table.touch(a[0], 10.0, inbound=100, outbound=50)  # type: ignore[arg-type]
    gone = table.expire(30.0, idle=25)
    assert gone == [a[1]] and len(table) == 4  # a[0] was active at 10 s
    assert table.view(30.0)[0]["state"] in ("new", "established")
    table.close(a[0])  # type: ignore[arg-type]
    assert table.per_source.get("10.0.0.1") is None


def test_faults_and_the_pacer() -> None:
    rng = random.Random(1)
    f = Faults(latency=0.1, jitter=0.05, loss=0.5)
    delays = [f.delay(rng) for _ in range(200)]
    assert all(0.05 <= d <= 0.15 for d in delays)
    drops = sum(f.drop(rng) for _ in range(1000))
    assert 400 < drops < 600
    assert f.changed({"loss": "0", "blackhole": "true"}) == Faults(latency=0.1, jitter=0.05,
                                                                   blackhole=True)
    with pytest.raises(ValueError):
        f.changed({"loss": "2"})
    with pytest.raises(ValueError):
        f.changed({"speed": "1"})
    pacer = Pacer(1000)  # 1000 bytes/s, bursts of 100
    assert pacer.wait(100, 0.0) == 0.0
    assert pacer.wait(500, 0.0) == pytest.approx(0.5)
