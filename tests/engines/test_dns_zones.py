"""The authoritative engine (proto/dns/zones.py): RFC 1034 4.3.2 lookups, in memory."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RR
from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.proto.dns.zones import Zone, ZoneDataError, ZoneSet, parse_records, record

ZONE = """$ORIGIN example.test.
$TTL 300
@       IN SOA ns1 hostmaster ( 1 3600 600
                                86400 60 )
@       NS  ns1
ns1     A   192.0.2.1
www     60 A 192.0.2.2
www     AAAA 2001:db8::2
alias   CNAME www
chain   CNAME alias
outside CNAME www.example.org.
mail    MX  10 www
sub     NS  ns.sub
ns.sub  A   192.0.2.3
sub     DS  12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
*.wild  TXT "wildcard"
deep.a.b A 192.0.2.4
old     DNAME example.org.
loop1   CNAME loop2
loop2   CNAME loop1
"""


@pytest.fixture
def zones() -> ZoneSet:
    return ZoneSet([Zone.from_records("example.test", parse_records(ZONE, "example.test."))])


def names(rrs: list[RR]) -> list[tuple[str, str, str]]:
    return [(str(rr.rname), QTYPE.get(rr.rtype), str(rr.rdata)) for rr in rrs]


def test_an_answer_is_authoritative_with_the_records_ttl(zones: ZoneSet) -> None:
    a = zones.answer("www.example.test", QTYPE.A)
    assert a is not None and (a.rcode, a.aa) == (0, True)
    assert names(a.answer) == [("www.example.test.", "A", "192.0.2.2")]
    assert a.answer[0].ttl == 60
    # as NSD: the zone's NS with their addresses, for a complete answer
    assert names(a.authority) == [("example.test.", "NS", "ns1.example.test.")]
    assert names(a.additional) == [("ns1.example.test.", "A", "192.0.2.1")]


def test_the_question_letter_case_is_kept_in_the_answer(zones: ZoneSet) -> None:
    a = zones.answer("WwW.Example.TEST", QTYPE.A)
    assert a is not None and str(a.answer[0].rname) == "WwW.Example.TEST."


def test_cname_chains_are_followed_within_the_zones(zones: ZoneSet) -> None:
    a = zones.answer("chain.example.test", QTYPE.A)
    assert a is not None and a.rcode == 0
    assert names(a.answer) == [("chain.example.test.", "CNAME", "alias.example.test."),
                               ("alias.example.test.", "CNAME", "www.example.test."),
                               ("www.example.test.", "A", "192.0.2.2")]


def test_a_cname_out_of_the_zones_is_given_alone(zones: ZoneSet) -> None:
    a = zones.answer("outside.example.test", QTYPE.A)
    assert a is not None and names(a.answer) == [
        ("outside.example.test.", "CNAME", "www.example.org.")]


def test_a_cname_loop_ends(zones: ZoneSet) -> None:
    a = zones.answer("loop1.example.test", QTYPE.A)
    assert a is not None and 2 <= len(a.answer) <= 9


def test_asking_for_the_cname_itself(zones: ZoneSet) -> None:
    a = zones.answer("alias.example.test", QTYPE.CNAME)
    assert a is not None and names(a.answer) == [
        ("alias.example.test.", "CNAME", "www.example.test.")]


def test_nodata_and_nxdomain_carry_the_soa_with_the_negative_ttl(zones: ZoneSet) -> None:
    nodata = zones.answer("www.example.test", QTYPE.MX)
    nx = zones.answer("nope.example.test", QTYPE.A)
    assert nodata is not None and nx is not None
    assert (nodata.rcode, nodata.answer) == (0, [])
    assert nx.rcode == 3
    for a in (nodata, nx):
        assert names(a.authority)[0][:2] == ("example.test.", "SOA")
        assert a.authority[0].ttl == 60  # min(SOA TTL 300, minimum 60): RFC 2308


def test_an_empty_non_terminal_is_nodata_not_nxdomain(zones: ZoneSet) -> None:
    a = zones.answer("a.b.example.test", QTYPE.A)
    assert a is not None and (a.rcode, a.answer) == (0, [])


def test_a_delegation_is_a_referral_with_glue(zones: ZoneSet) -> None:
    for name in ("sub.example.test", "www.sub.example.test", "ns.sub.example.test"):
        a = zones.answer(name, QTYPE.A)
        assert a is not None and (a.rcode, a.aa, a.answer) == (0, False, [])
        assert names(a.authority) == [("sub.example.test.", "NS", "ns.sub.example.test.")]
        assert names(a.additional) == [("ns.sub.example.test.", "A", "192.0.2.3")]


def test_ds_at_the_cut_is_answered_by_the_parent(zones: ZoneSet) -> None:
    a = zones.answer("sub.example.test", QTYPE.DS)
    assert a is not None and (a.rcode, a.aa) == (0, True)
    assert [QTYPE.get(rr.rtype) for rr in a.answer] == ["DS"]


def test_wildcards_answer_for_names_that_do_not_exist(zones: ZoneSet) -> None:
    a = zones.answer("anything.wild.example.test", QTYPE.TXT)
    assert a is not None and names(a.answer) == [
        ("anything.wild.example.test.", "TXT", '"wildcard"')]
    nodata = zones.answer("anything.wild.example.test", QTYPE.A)
    assert nodata is not None and (nodata.rcode, nodata.answer) == (0, [])


def test_dname_synthesises_a_cname(zones: ZoneSet) -> None:
    a = zones.answer("www.old.example.test", QTYPE.A)
    assert a is not None and names(a.answer) == [
        ("old.example.test.", "DNAME", "example.org."),
        ("www.old.example.test.", "CNAME", "www.example.org.")]


def test_mx_targets_get_their_addresses_in_additional(zones: ZoneSet) -> None:
    a = zones.answer("mail.example.test", QTYPE.MX)
    assert a is not None
    assert {t for _, t, _ in names(a.additional)} == {"A", "AAAA"}


def test_names_outside_every_zone_are_not_ours(zones: ZoneSet) -> None:
    assert zones.answer("example.org", QTYPE.A) is None
    assert zones.answer("test", QTYPE.SOA) is None


def test_zone_transfers_are_refused(zones: ZoneSet) -> None:
    for qtype in (252, 251):
        a = zones.answer("example.test", qtype)
        assert a is not None and a.rcode == 5


def test_bad_zone_data_is_refused_with_the_reason() -> None:
    with pytest.raises(ZoneDataError, match="no SOA"):
        Zone.from_records("x.test", parse_records("www A 192.0.2.1", "x.test."))
    with pytest.raises(ZoneDataError, match="outside zone"):
        Zone.from_records("x.test", parse_records("www.y.test. A 192.0.2.1", "x.test."),
                          need_soa=False)
    with pytest.raises(ZoneDataError, match="CNAME"):
        Zone.from_records("x.test", parse_records("www A 192.0.2.1\nwww CNAME a", "x.test."),
                          need_soa=False)
    with pytest.raises(ZoneDataError, match="cannot parse"):
        parse_records("www IN BOGUS 1", "x.test.")
    with pytest.raises(ZoneDataError, match="cannot parse"):
        record("www.x.test", "A", "1.2.3.4.5")


def test_records_added_and_removed_while_serving() -> None:
    zs = ZoneSet()
    zs.add(record("api.test", "A", "192.0.2.1"))
    zs.add(record("api.test", "A", "192.0.2.2"))
    zs.add(record("api.test", "A", "192.0.2.2"))  # the same record twice is one
    assert list(zs.zones) == ["test."]  # a zone was made at the parent
    a = zs.answer("api.test", QTYPE.A)
    assert a is not None and len(a.answer) == 2
    zone = zs.find("api.test.")
    assert zone is not None and zone.remove("api.test", QTYPE.A, "192.0.2.1") == 1
    assert zone.remove("api.test") == 1
    gone = zs.answer("api.test", QTYPE.A)
    assert gone is not None and gone.rcode == 3
    assert zone.remove("test", QTYPE.SOA) == 0  # the apex SOA stays


LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
ADDRESS = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.lists(LABEL, min_size=1, max_size=3).map(".".join),
                       st.lists(ADDRESS, min_size=1, max_size=3, unique=True), max_size=8))
def test_every_record_written_is_answered_and_nothing_else(
        data: dict[str, list[str]]) -> None:
    """Zone text -> parser -> zone -> answers: what was written, for every name."""
    text = "\n".join(f"{n} 120 IN A {a}" for n, addrs in data.items() for a in addrs)
    zs = ZoneSet([Zone.from_records("p.test", parse_records(text, "p.test."),
                                    need_soa=False)])
    for name, addrs in data.items():
        a = zs.answer(f"{name}.p.test", QTYPE.A)
        assert a is not None and a.rcode == 0 and a.aa
        assert sorted(str(rr.rdata) for rr in a.answer) == sorted(addrs)
        assert all(rr.ttl == 120 for rr in a.answer)
    missing = zs.answer("zz-not-written.p.test", QTYPE.A)
    assert missing is not None and missing.rcode == 3


def test_a_root_zone_from_inline_records_gets_its_soa() -> None:
    zone = Zone.from_records(".", parse_records(". 86400 IN NS a.root.test.", "."),
                             need_soa=False)
    assert zone.soa.rtype == QTYPE.SOA and str(zone.soa.rname) == "."
