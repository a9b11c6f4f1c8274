"""Policy sources (proto/dns/rpz.py): the formats' rules, and hypothesis feeding random
text to every loader: plain lists skip and count, RPZ raises PolicyError, nothing else."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.proto.dns.rpz import (
    DROP,
    LOCAL,
    NODATA,
    NXDOMAIN,
    PASSTHRU,
    REDIRECT,
    PolicyError,
    parse_plain,
    parse_rpz,
)


def test_rpz_triggers_and_actions() -> None:
    lists = parse_rpz("""$TTL 60
@ SOA localhost. root.localhost. 1 3600 600 86400 60
  NS localhost.
bad.test CNAME .
empty.test CNAME *.
*.wild.test CNAME .
ok.wild.test CNAME rpz-passthru.
gone.test CNAME rpz-drop.
mine.test A 192.0.2.1
mine.test TXT "one" "two"
elsewhere.test CNAME www.example.org.
32.1.0.0.127.rpz-ip CNAME .
128.1.zz.db8.2001.rpz-ip CNAME *.
ns.test.rpz-nsdname CNAME .
""", "policy.example")
    act = {n: (r.action if r else None) for n in (
        "bad.test.", "x.bad.test.", "empty.test.", "a.wild.test.", "wild.test.",
        "ok.wild.test.", "gone.test.", "mine.test.", "elsewhere.test.", "other.test.")
        for r in [lists.match(n)]}
    assert act == {"bad.test.": NXDOMAIN, "x.bad.test.": None, "empty.test.": NODATA,
                   "a.wild.test.": NXDOMAIN, "wild.test.": None, "ok.wild.test.": PASSTHRU,
                   "gone.test.": DROP, "mine.test.": LOCAL, "elsewhere.test.": REDIRECT,
                   "other.test.": None}
    assert len(lists.match("mine.test.").records) == 2  # type: ignore[union-attr]
    assert lists.match("elsewhere.test.").target == "www.example.org."  # type: ignore[union-attr]
    assert lists.match_ip("127.0.0.1").action == NXDOMAIN  # type: ignore[union-attr]
    assert lists.match_ip("2001:db8::1").action == NODATA  # type: ignore[union-attr]
    assert lists.match_ip("127.0.0.2") is None and lists.unsupported == 1
    overridden = parse_rpz("x.test CNAME rpz-passthru.\n", "p", "nxdomain")
    assert overridden.match("x.test.").action == NXDOMAIN  # type: ignore[union-attr]


def test_plain_formats_and_what_they_match() -> None:
    hosts = parse_plain("0.0.0.0 a.test b.test\n:: c.test # six\nfoo bar\n", "hosts")
    assert hosts.match("a.test.") and hosts.match("c.test.") and not hosts.match("x.a.test.")
    assert hosts.skipped == 1
    domains = parse_plain("a.test\n\n# c\n-bad-\n", "domains")
    assert domains.match("a.test.") and domains.match("x.y.a.test.") and domains.skipped == 1
    adblock = parse_plain("||a.test^\n||b.test^$important\n@@||c.test^\n", "adblock")
    assert adblock.match("x.a.test.") and not adblock.match("b.test.")
    assert adblock.skipped == 2


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.sampled_from(["hosts", "domains", "adblock"]))
def test_random_plain_lists_never_crash(text: str, fmt: str) -> None:
    lists = parse_plain(text, fmt)
    assert len(lists) + lists.skipped <= len(text.splitlines()) * 64 + 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc.*-_ \t\n;()\"$@0123456789ACNMTXSO")),
               max_size=300))
def test_random_rpz_text_is_a_policy_or_a_policyerror(text: str) -> None:
    with contextlib.suppress(PolicyError):
        parse_rpz(text, "rpz.test")
