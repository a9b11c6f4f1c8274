"""The DNS server's authoritative mode against NSD: the zones of the NSD hierarchy
(netkit/testing/nsd.py) served by our own servers, on another 127.X.Y prefix, answer
every question as NSD does; Unbound resolves through a hierarchy of ours; dig asks the
netkit_dns fixture."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, DNSRecord

from netkit.running import ThreadedServer, serve_in_thread
from netkit.testing.nsd import (
    LAME_SERVER,
    ZONES,
    Hierarchy,
    _big_txt,
    free_udp_tcp_port,
    random_prefix,
    unbound_config,
)
from tests.support.fixtures import need


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory, hierarchy: Hierarchy
         ) -> Iterator[tuple[str, list[ThreadedServer]]]:
    """The NSD hierarchy's zone files, served by netkit on PREFIX.2-.7 port 53."""
    prefix = random_prefix()
    while prefix == hierarchy.prefix:
        prefix = random_prefix()
    d = tmp_path_factory.mktemp("auth")
    by_server: dict[str, list[dict[str, str]]] = {LAME_SERVER: []}
    for zone, (server, text) in ZONES.items():
        text = "$TTL 3600\n" + text.lstrip() + (_big_txt() if zone == "example.com." else "")
        path = d / ("root.zone" if zone == "." else f"{zone}zone")
        path.write_text(text.replace("127.0.0.", prefix + "."))
        by_server.setdefault(server, []).append({"name": zone, "file": str(path)})
    servers = []
    try:
        for server, zones in by_server.items():
            address = server.replace("127.0.0.", prefix + ".")
            servers.append(serve_in_thread("dns", {"dns": {
                "recursion": False, "listen": [f"{address}:53"], "zone": zones}}))
        yield prefix, servers
    finally:
        for s in servers:
            s.stop()


def ask(server: str, name: str, qtype: str, *, tcp: bool = False) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    q.header.rd = 0
    return DNSRecord.parse(q.send(server, 53, tcp=tcp, timeout=3))


def shape(r: DNSRecord, prefix: str) -> tuple:
    """What must agree: rcode, AA, TC and each section as a set (addresses written with
    the 127.0.0. prefix, so two hierarchies on different prefixes compare)."""
    def section(rrs: list) -> frozenset:
        return frozenset((str(rr.rname).lower(), QTYPE.get(rr.rtype), rr.ttl,
                          str(rr.rdata).replace(prefix + ".", "127.0.0.").lower())
                         for rr in rrs if rr.rtype != QTYPE.OPT)
    return (r.header.rcode, r.header.aa, r.header.tc, section(r.rr), section(r.auth),
            section(r.ar))


# (which server, question): referrals with and without glue, answers, CNAMEs, DNAME,
# NODATA, NXDOMAIN, wildcard-free misses, empty non-terminals, a lame server, truncation
QUESTIONS = [
    (2, ".", "SOA"), (2, ".", "NS"), (2, "www.example.com", "A"), (2, "nope.", "A"),
    (3, "com", "NS"), (3, "www.example.com", "A"), (3, "www.glueless.com", "A"),
    (3, "nope.com", "A"), (3, "example.com", "DS"), (3, "ns.com", "AAAA"),
    (4, "www.example.com", "A"), (4, "www.example.com", "AAAA"), (4, "WWW.Example.COM", "A"),
    (4, "alias.example.com", "A"), (4, "txt-only.example.com", "A"),
    (4, "missing.example.com", "A"), (4, "mail.example.com", "MX"),
    (4, "www.old.example.com", "A"), (4, "b.c.example.com", "A"),
    (4, "deep.a.b.c.example.com", "A"), (4, "example.com", "SOA"), (4, "example.com", "NS"),
    (4, "big.example.com", "TXT"), (4, "example.org", "A"),
    (5, "www.example.org", "A"), (6, "www.glueless.com", "A"), (6, "www.example.org", "MX"),
    (7, "www.lame.com", "A"),
]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_every_answer_is_the_one_nsd_gives(hierarchy: Hierarchy, ours, tcp: bool) -> None:
    prefix, _ = ours
    differ = []
    for n, name, qtype in QUESTIONS:
        theirs = shape(ask(hierarchy.addr(n), name, qtype, tcp=tcp), hierarchy.prefix)
        mine = shape(ask(f"{prefix}.{n}", name, qtype, tcp=tcp), prefix)
        if mine != theirs:
            differ.append(f"@.{n} {name} {qtype}:\n  nsd    {theirs}\n  netkit {mine}")
    assert not differ, "\n".join(differ)


def test_unbound_resolves_through_a_hierarchy_of_ours(ours, tmp_path: Path) -> None:
    prefix, _ = ours
    hints = tmp_path / "root.hints"
    hints.write_text(f".  3600000 NS A.ROOT.\nA.ROOT. 3600000 A {prefix}.2\n")
    port = free_udp_tcp_port()
    conf = unbound_config(tmp_path / "unbound", port, hints)
    proc = subprocess.Popen([need("unbound"), "-d", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        dig = need("dig")

        def resolve(name: str, qtype: str = "A") -> tuple[str, str]:
            out = subprocess.run([dig, "@127.0.0.1", "-p", str(port), "+tries=1",
                                  "+time=3", name, qtype], capture_output=True, text=True,
                                 timeout=20).stdout
            status = out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out \
                else "no answer"
            short = subprocess.run([dig, "@127.0.0.1", "-p", str(port), "+short", name,
                                    qtype], capture_output=True, text=True,
                                   timeout=20).stdout.split()
            return status, " ".join(short)

        deadline = time.monotonic() + 15
        while resolve("www.example.com")[0] == "no answer" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert resolve("www.example.com") == ("NOERROR", "192.0.2.10")
        assert resolve("alias.example.com") == ("NOERROR", "www.example.org. 192.0.2.20")
        assert resolve("www.glueless.com") == ("NOERROR", "192.0.2.30")
        assert resolve("missing.example.com")[0] == "NXDOMAIN"
    finally:
        proc.terminate()
        proc.wait(10)


def test_dig_asks_the_netkit_dns_fixture(netkit_dns) -> None:
    netkit_dns.add("api.test", "A", "192.0.2.10")
    netkit_dns.add("api.test", "TXT", "hello world")
    dig = need("dig")

    def run(*args: str) -> str:
        return subprocess.run([dig, "@" + netkit_dns.host, "-p", str(netkit_dns.port),
                               "+tries=1", "+time=3", *args], capture_output=True,
                              text=True, timeout=20).stdout

    assert run("+short", "api.test").split() == ["192.0.2.10"]
    assert run("+short", "+tcp", "api.test", "TXT").strip() == '"hello world"'
    full = run("api.test")
    assert "status: NOERROR" in full and " aa" in full.split("flags:")[1].split(";")[0]
    assert " ra" not in full.split("flags:")[1].split(";")[0]  # it does not recurse
    assert "status: NXDOMAIN" in run("other.test")
    assert "status: REFUSED" in run("example.com")
    assert [(q.name, q.type) for q in netkit_dns.queries][-3:] == [
        ("api.test", "A"), ("other.test", "A"), ("example.com", "A")]
