"""DNSSEC validation against a hierarchy signed by BIND's dnssec-signzone and served by
NSD (netkit.testing.signed), the root's DS as the trust anchor, Unbound (validator
iterator, the same anchor) as the oracle: for every case the same rcode, the same AD
bit, the same answer; bogus ones carry the Extended DNS Error that says why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import EDNS0, DNSRecord

from netkit.running import serve_in_thread
from netkit.testing.nsd import free_udp_tcp_port, unbound_config
from netkit.testing.signed import SignedHierarchy
from tests.support.fixtures import need

pytestmark = pytest.mark.peer

CASES = [
    ("www.secure.lab.", "A"), ("www.nsec3.lab.", "A"), ("www.optout.lab.", "A"),
    ("www.rsa512.lab.", "A"), ("www.ed448.lab.", "A"),  # the algorithms
    ("www.insecure.lab.", "A"), ("www.unsigned.optout.lab.", "A"),  # insecure
    ("www.badsig.lab.", "A"), ("www.expired.lab.", "A"), ("www.future.lab.", "A"),
    ("www.badds.lab.", "A"), ("nope.nonsec3.lab.", "A"),  # bogus
    ("www.skewed.lab.", "A"),  # signed 10 minutes "in the future": within the skew
    ("x.wild.secure.lab.", "A"), ("x.wild.nsec3.lab.", "A"),  # wildcards
    ("x.wild.secure.lab.", "TXT"), ("x.wild.nsec3.lab.", "TXT"),  # wildcard NODATA
    ("nope.secure.lab.", "A"), ("nope.nsec3.lab.", "A"), ("nope.lab.", "A"),  # NXDOMAIN
    ("nope.optout.lab.", "A"),  # NXDOMAIN in an opt-out span: insecure
    ("txt-only.secure.lab.", "A"), ("www.nsec3.lab.", "TXT"), ("secure.lab.", "A"),
    ("txt-only.nsec3.lab.", "A"),
    ("alias.secure.lab.", "A"),  # a signed CNAME into an insecure zone
    ("secure.lab.", "DNSKEY"), ("secure.lab.", "DS"), ("insecure.lab.", "DS"),
    # children served by their parent's server (no referral): the cut found all the same
    ("www.child.secure.lab.", "A"), ("nope.child.secure.lab.", "A"),
    ("www.plain.secure.lab.", "A"), ("child.secure.lab.", "DS"),
]


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedHierarchy]:
    need("nsd")
    need("dnssec-signzone")
    base = tmp_path_factory.mktemp("signed")
    os.chmod(base, 0o755)
    with SignedHierarchy(base) as h:
        yield h


@pytest.fixture(scope="module")
def ours(signed: SignedHierarchy):  # type: ignore[no-untyped-def]
    with serve_in_thread("dns", {"dns": {
            "root_hints": str(signed.root_hints), "trust_anchor": str(signed.trust_anchor),
            "query_private_authorities": True, "server_timeout": 0.5,
            "total_timeout": 4}}) as server:
        yield server


@pytest.fixture(scope="module")
def unbound(signed: SignedHierarchy) -> Iterator[int]:
    binary = shutil.which("unbound")
    if binary is None:
        pytest.skip("no unbound")
    port = free_udp_tcp_port()
    conf = unbound_config(signed.base / "unbound", port, signed.root_hints,
                          trust_anchor=signed.trust_anchor)
    proc = subprocess.Popen([binary, "-d", "-c", str(conf)])
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                DNSRecord.question("lab.", "SOA").send("127.0.0.1", port, timeout=0.3)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "unbound"
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def ask(port: int, name: str, qtype: str, *, cd: bool = False, do: bool = True
        ) -> tuple[int, int, list[str], list[int], DNSRecord]:
    q = DNSRecord.question(name, qtype)
    q.add_ar(EDNS0(flags="do" if do else "", udp_len=4096))
    q.header.cd = int(cd)
    r = DNSRecord.parse(q.send("127.0.0.1", port, timeout=6))
    ede = [int.from_bytes(bytes(o.data)[:2], "big") for opt in r.ar if opt.rtype == 41
           for o in (opt.rdata or []) if o.code == 15]
    return r.header.rcode, r.header.ad, sorted(str(a.rdata) for a in r.rr if a.rtype != 46), \
        ede, r


@pytest.mark.parametrize(("name", "qtype"), CASES)
def test_the_same_verdict_as_unbound(ours, unbound: int, name: str, qtype: str) -> None:  # type: ignore[no-untyped-def]
    mine = ask(ours.addresses[0][1], name, qtype)
    theirs = ask(unbound, name, qtype)
    # (EDE codes are checked against our own list below: Unbound's depend on what it
    # happens to have cached, 7 or 9 for the same expired zone in two runs)
    assert mine[:3] == theirs[:3], f"ours {mine[:4]}, unbound {theirs[:4]}"
    assert bool(mine[3]) == bool(theirs[3])  # an EDE from both, or from neither
    # DO was set: the same RRSIGs (by the type they cover) in the answer, and a denial's
    # NSEC/NSEC3 records in the authority section
    assert _dnssec_records(mine[4]) == _dnssec_records(theirs[4])


def _dnssec_records(r: DNSRecord) -> tuple[list[str], list[str]]:
    return (sorted(str(rr.rdata).split()[0] for rr in r.rr if rr.rtype == 46),
            sorted(f"{rr.rname} {rr.rtype}" for rr in r.auth if rr.rtype in (47, 50)))


def test_bogus_answers_say_why_and_cd_gets_the_data(ours) -> None:  # type: ignore[no-untyped-def]
    port = ours.addresses[0][1]
    expected = {"www.badsig.lab.": 6, "www.expired.lab.": 7, "www.future.lab.": 8,
                "www.badds.lab.": 9, "nope.nonsec3.lab.": 12}
    for name, code in expected.items():
        rcode, ad, answers, ede, _ = ask(port, name, "A")
        assert (rcode, ad, answers, ede) == (2, 0, [], [code]), name
    rcode, ad, answers, _, _ = ask(port, "www.badsig.lab.", "A", cd=True)
    assert (rcode, ad, answers) == (0, 0, ["192.0.2.6"])  # RFC 4035 3.2.2: unchecked
    again = ask(port, "www.badsig.lab.", "A")  # and the bogus answer is not cached as good
    assert again[0] == 2


def test_ad_only_for_clients_that_ask(ours) -> None:  # type: ignore[no-untyped-def]
    port = ours.addresses[0][1]
    assert ask(port, "www.secure.lab.", "A")[1] == 1  # DO
    assert ask(port, "www.secure.lab.", "A", do=False)[1] == 0  # neither DO nor AD
    q = DNSRecord.question("www.secure.lab.", "A")
    q.header.ad = 1  # RFC 6840 5.7: AD in the query asks for it too
    assert DNSRecord.parse(q.send("127.0.0.1", port, timeout=5)).header.ad == 1
    assert ask(port, "www.insecure.lab.", "A")[1] == 0


def test_ttls_never_outlive_the_original_ttl(ours) -> None:  # type: ignore[no-untyped-def]
    record = ask(ours.addresses[0][1], "www.secure.lab.", "A")[4].rr[0]
    assert 0 < record.ttl <= 300


def test_a_config_without_the_anchor_file_is_refused(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "netkit.servers.dns", "--check-config",
                          "--set", f"dns.trust_anchor={tmp_path / 'none.key'}",
                          "--set", "dns.listen=127.0.0.1:0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "dns.trust_anchor" in out.stderr, out.stderr


def test_the_client_sets_do_and_cd_and_traces_the_chain(ours, signed) -> None:  # type: ignore[no-untyped-def]
    port = str(ours.addresses[0][1])
    out = subprocess.run([sys.executable, "-m", "netkit.clients.dns", "@127.0.0.1", "-p", port,
                          "+dnssec", "www.secure.lab"], capture_output=True, text=True,
                         timeout=30).stdout
    assert " ad" in out.split("flags:")[1].split(";")[0] and "RRSIG" in out, out
    out = subprocess.run([sys.executable, "-m", "netkit.clients.dns", "@127.0.0.1", "-p", port,
                          "+cd", "+short", "www.badsig.lab"], capture_output=True, text=True,
                         timeout=30).stdout
    assert out.split() == ["192.0.2.6"]
    out = subprocess.run([sys.executable, "-m", "netkit.clients.dns", "+trace",
                          "--root-hints", str(signed.root_hints), "--trust-anchor",
                          str(signed.trust_anchor), "www.secure.lab"],
                         capture_output=True, text=True, timeout=60).stdout
    assert "DNSKEY" in out and "referral to secure.lab." in out and ", DS " in out, out
    assert ";; DNSSEC: secure" in out
