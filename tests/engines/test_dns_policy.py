"""The DNS server's policy without sockets or clocks: ACL, token bucket, local answers."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest
from dnslib import QTYPE, DNSRecord

from netkit.errors import ConfigError
from netkit.proto.dns.policy import MAX_BUCKETS, Policy

PRIVATE = [ipaddress.ip_network(n) for n in ("127.0.0.0/8", "::1/128", "10.0.0.0/8")]


@dataclass
class Rec:
    name: str
    type: str
    value: str
    ttl: int = 300


def test_acl_takes_v4_v6_mapped_and_scoped_addresses_and_refuses_the_rest():
    p = Policy(allow=PRIVATE)
    assert p.allowed("127.0.0.1") and p.allowed("10.200.0.1") and p.allowed("::1")
    assert p.allowed("::ffff:10.1.2.3")  # a v4 client on a dual-stack socket
    assert not p.allowed("203.0.113.9") and not p.allowed("2001:db8::1")
    assert not p.allowed("fe80::1%eth0") and not p.allowed("not an address")
    assert p.allowed_cached("10.0.0.1") and not p.allowed_cached("192.0.2.1")


def test_token_bucket_allows_the_burst_then_the_rate_per_client():
    p = Policy(allow=PRIVATE, rate_limit=10, rate_burst=3)
    assert [p.over_rate("a", 0.0) for _ in range(4)] == [False, False, False, True]
    assert not p.over_rate("b", 0.0)  # another client has its own bucket
    assert p.over_rate("a", 0.05)  # half a token earned: still over
    assert not p.over_rate("a", 0.2)  # 0.2 s at 10/s: tokens again
    assert Policy(allow=PRIVATE).over_rate("a", 0.0) is False  # no limit configured


def test_token_bucket_memory_is_bounded_against_spoofed_sources():
    p = Policy(allow=PRIVATE, rate_limit=1, rate_burst=1)
    for i in range(MAX_BUCKETS + 10):
        p.over_rate(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 0.0)
    assert len(p.buckets) <= MAX_BUCKETS


def ask(p: Policy, name: str, qtype: str) -> DNSRecord | None:
    return p.answer_locally(DNSRecord.question(name, qtype))


def test_local_answers_any_localhost_and_configured_records():
    p = Policy(allow=PRIVATE, local=[Rec("router.lan", "A", "192.168.1.1"),
                                      Rec("www.lan", "CNAME", "router.lan."),
                                      Rec("router.lan", "TXT", "hello world")])
    r = ask(p, "example.com", "ANY")
    assert r is not None and r.rr[0].rtype == QTYPE.HINFO  # RFC 8482
    r = ask(p, "db.localhost", "A")
    assert r is not None and r.header.aa and str(r.rr[0].rdata) == "127.0.0.1"
    r = ask(p, "localhost", "AAAA")
    assert str(r.rr[0].rdata) == "::1"
    r = ask(p, "Router.LAN", "A")
    assert r.header.aa and r.header.ra and str(r.rr[0].rdata) == "192.168.1.1"
    assert str(ask(p, "router.lan", "TXT").rr[0].rdata) == '"hello world"'
    r = ask(p, "www.lan", "A")  # a CNAME answers any type
    assert r.rr[0].rtype == QTYPE.CNAME
    r = ask(p, "router.lan", "MX")  # the name exists, the type does not: NODATA
    assert r.header.rcode == 0 and not r.rr
    assert ask(p, "example.com", "A") is None
    assert p.maybe_local(b"\x06router\x03lan\x00", "router.lan.", 1)
    assert not p.maybe_local(b"\x07example\x03com\x00", "example.com.", 1)


def test_a_local_record_that_does_not_parse_is_a_config_error_naming_it():
    with pytest.raises(ConfigError) as caught:
        Policy(allow=PRIVATE, local=[Rec("ok.lan", "A", "10.0.0.1"),
                                     Rec("nas.lan", "A", "not-an-ip")])
    assert caught.value.problems[0].startswith("dns.local[1]: cannot parse A 'not-an-ip'")


def test_test_is_answered_here_unless_nodefault_names_it() -> None:
    q = DNSRecord.question("www.example.test", "A")
    here = Policy(allow=PRIVATE).answer_locally(q)
    assert here is not None and here.header.rcode == 3  # RFC 6761: NXDOMAIN, not resolved
    assert Policy(allow=PRIVATE, nodefault=["test"]).answer_locally(q) is None  # resolved
    still = Policy(allow=PRIVATE, nodefault=["test"]).answer_locally(
        DNSRecord.question("x.invalid", "A"))
    assert still is not None and still.header.rcode == 3  # only what nodefault names
