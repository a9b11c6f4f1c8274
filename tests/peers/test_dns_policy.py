"""Response policies on the resolver: an RPZ zone with Unbound (respip iterator, the same
zone file) as the oracle for each trigger and action; hosts, domains and adblock lists;
the allowlist; clients; the Extended DNS Error; files watched and re-read (a broken one
keeps the old version); a list fetched over HTTPS with If-None-Match."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import DNSRecord

from netkit.running import serve_in_thread
from netkit.testing.nsd import free_udp_tcp_port, unbound_config

pytestmark = pytest.mark.peer

RPZ = """$TTL 60
@ SOA localhost. root.localhost. 1 3600 600 86400 60
  NS localhost.
www.example.com CNAME .
txt-only.example.com CNAME *.
*.example.org CNAME .
mail.example.com CNAME rpz-passthru.
short.example.com CNAME rpz-drop.
local.example.com A 192.0.2.99
local.example.com TXT "local data"
redir.example.com CNAME www.glueless.com.
32.13.2.0.192.rpz-ip CNAME *.
ns.example.com.rpz-nsdname CNAME .
"""
CASES = [
    ("www.example.com", "A"),  # NXDOMAIN
    ("txt-only.example.com", "TXT"),  # NODATA
    ("www.example.org", "A"), ("x.example.org", "A"),  # a wildcard trigger
    ("example.org", "SOA"),  # the wildcard's own name does not match
    ("mail.example.com", "MX"),  # PASSTHRU
    ("short.example.com", "A"),  # DROP
    ("local.example.com", "A"), ("local.example.com", "TXT"), ("local.example.com", "AAAA"),
    ("redir.example.com", "A"),  # a CNAME redirection, followed
    ("alias.example.com", "A"),  # a CNAME whose target a trigger names
    ("alias.example.com", "TXT"),  # ... ending in no data: left alone
    ("prefetch.example.com", "A"),  # a Response-IP trigger: 192.0.2.13 -> NODATA
    ("www.glueless.com", "A"), ("deep.a.b.c.example.com", "A"),  # untouched
]


def ask(port: int, name: str, qtype: str = "A", timeout: float = 2.0):  # type: ignore[no-untyped-def]
    q = DNSRecord.question(name, qtype)
    try:
        return DNSRecord.parse(q.send("127.0.0.1", port, timeout=timeout))
    except OSError:
        return None


def verdict(r) -> tuple:  # type: ignore[no-untyped-def]
    if r is None:
        return ("no answer",)
    return r.header.rcode, sorted(f"{a.rtype}:{a.rdata}" for a in r.rr)


def ede(r) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    return [(int.from_bytes(bytes(o.data)[:2], "big"), bytes(o.data)[2:].decode())
            for opt in r.ar if opt.rtype == 41 for o in (opt.rdata or []) if o.code == 15]


@pytest.fixture(scope="module")
def rpz_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rpz") / "rpz.zone"
    path.write_text(RPZ)
    path.parent.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def ours(hierarchy, rpz_file: Path):  # type: ignore[no-untyped-def]
    with serve_in_thread("dns", {"dns": {
            "root_hints": str(hierarchy.root_hints), "query_private_authorities": True,
            "policy": [{"name": "rpz.local", "source": str(rpz_file), "format": "rpz"}]}}) \
            as server:
        yield server


@pytest.fixture(scope="module")
def unbound(hierarchy, rpz_file: Path) -> Iterator[int]:
    binary = shutil.which("unbound")
    if binary is None:
        pytest.skip("no unbound")
    port = free_udp_tcp_port()
    conf = unbound_config(rpz_file.parent / "unbound", port, hierarchy.root_hints,
                          rpz=rpz_file)
    proc = subprocess.Popen([binary, "-d", "-c", str(conf)])
    try:
        deadline = time.monotonic() + 15
        while ask(port, "www.glueless.com", timeout=0.3) is None:
            assert time.monotonic() < deadline and proc.poll() is None, "unbound"
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(("name", "qtype"), CASES)
def test_rpz_as_unbound_applies_it(ours, unbound: int, name: str, qtype: str) -> None:  # type: ignore[no-untyped-def]
    timeout = 1.0 if name.startswith("short.") else 3.0  # DROP: silence from both
    assert verdict(ask(ours.addresses[0][1], name, qtype, timeout)) == \
        verdict(ask(unbound, name, qtype, timeout))


def test_rpz_answers_say_which_policy_and_ask_no_one(ours) -> None:  # type: ignore[no-untyped-def]
    before = ours.counters["upstream_queries"]
    q = DNSRecord.question("blocked-name.example.org", "A")
    q.add_ar(__import__("dnslib").EDNS0())
    r = DNSRecord.parse(q.send("127.0.0.1", ours.addresses[0][1], timeout=3))
    assert r.header.rcode == 3 and ede(r) == [(15, "blocked by policy rpz.local")]
    assert ours.counters["upstream_queries"] == before  # no upstream query for it
    status = ours.status()["policies"][0]
    assert status["name"] == "rpz.local" and status["unsupported_triggers"] == 1
    assert status["hits"] >= 1
    assert ours.service.labelled()["policy_hits"][1]["rpz.local"] == status["hits"]


def _lists(tmp_path: Path) -> dict[str, Path]:
    files = {
        "hosts": "# a hosts file\n0.0.0.0 ads.example.com tracker.example.com\n"
                 "127.0.0.1 localhost\nnot-an-address bad.example.com\n",
        "domains": "example.org\n# comment\nbad..name\n",
        "adblock": "! adblock\n||glueless.com^\n||x.example.com^$third-party\n/banner/*\n",
        "allow": "www.example.org\n",
    }
    out = {}
    for name, text in files.items():
        out[name] = tmp_path / f"{name}.txt"
        out[name].write_text(text)
    return out


def test_hosts_domains_adblock_lists_and_the_allowlist(hierarchy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = _lists(tmp_path)
    with serve_in_thread("dns", {"dns": {
            "root_hints": str(hierarchy.root_hints), "query_private_authorities": True,
            "policy": [
                {"name": "hosts", "source": str(f["hosts"]), "format": "hosts"},
                {"name": "domains", "source": str(f["domains"]), "format": "domains",
                 "action": "nodata", "ede": "filtered"},
                {"name": "adblock", "source": str(f["adblock"]), "format": "adblock",
                 "allow": ["www.glueless.com"]},
                {"name": "allow", "source": str(f["allow"]), "format": "domains",
                 "action": "passthru"}]}}) as s:
        port = s.addresses[0][1]
        assert verdict(ask(port, "ads.example.com"))[0] == 3  # hosts: the name
        assert verdict(ask(port, "sub.ads.example.com"))[0] == 3  # (NXDOMAIN upstream)
        assert verdict(ask(port, "www.example.com")) == (0, ["1:192.0.2.10"])  # not listed
        r = ask(port, "ns.example.org")  # domains: the name and what is below it
        assert r is not None and verdict(r) == (0, [])
        assert verdict(ask(port, "example.org", "SOA")) == (0, [])
        assert verdict(ask(port, "www.example.org")) == (0, ["1:192.0.2.20"])  # allowlisted
        assert verdict(ask(port, "glueless.com", "SOA"))[0] == 3  # adblock: ||name^
        assert verdict(ask(port, "www.glueless.com")) == (0, ["1:192.0.2.30"])  # its allow
        policies = {p["name"]: p for p in s.status()["policies"]}
        assert policies["hosts"]["entries"] == 2 and policies["hosts"]["skipped_lines"] == 1
        assert policies["domains"]["skipped_lines"] == 1
        assert policies["adblock"]["entries"] == 1 and policies["adblock"]["skipped_lines"] == 2


def test_a_policy_for_some_clients_only(hierarchy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = _lists(tmp_path)
    with serve_in_thread("dns", {"dns": {
            "root_hints": str(hierarchy.root_hints), "query_private_authorities": True,
            "listen": ["127.0.0.1:0"], "allow": ["127.0.0.0/8"],
            "policy": [{"name": "kids", "source": str(f["domains"]),
                        "clients": ["127.0.0.9/32"]}]}}) as s:
        port = s.addresses[0][1]
        assert verdict(ask(port, "www.example.org")) == (0, ["1:192.0.2.20"])  # from .1
        import socket
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.9", 0))
            sock.settimeout(3)
            sock.sendto(DNSRecord.question("www.example.org", "A").pack(), ("127.0.0.1", port))
            assert DNSRecord.parse(sock.recv(4096)).header.rcode == 3
        # and the answer the first client got was not cached for the second
        assert verdict(ask(port, "www.example.org")) == (0, ["1:192.0.2.20"])


def test_a_changed_list_applies_and_a_broken_one_keeps_the_old(hierarchy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    zone = tmp_path / "rpz.zone"
    zone.write_text(RPZ)
    with serve_in_thread("dns", {"dns": {
            "root_hints": str(hierarchy.root_hints), "query_private_authorities": True,
            "policy_watch": 0.1,
            "policy": [{"name": "rpz.local", "source": str(zone), "format": "rpz"}]}}) as s:
        port = s.addresses[0][1]
        assert verdict(ask(port, "www.glueless.com")) == (0, ["1:192.0.2.30"])
        zone.write_text(RPZ + "www.glueless.com CNAME .\n")
        deadline = time.monotonic() + 5
        while verdict(ask(port, "www.glueless.com"))[0] != 3:
            assert time.monotonic() < deadline, "the changed zone did not apply"
            time.sleep(0.1)
        zone.write_text(RPZ + "www.glueless.com CNAME rpz-unknown-action.\nbroken line here\n")
        time.sleep(0.6)
        assert verdict(ask(port, "www.glueless.com"))[0] == 3  # the previous version stays
        # SIGHUP with a list that does not parse: the running config is kept
        with pytest.raises(Exception, match="rpz"):
            s.reload({"dns": {"root_hints": str(hierarchy.root_hints),
                              "query_private_authorities": True,
                              "policy": [{"name": "other", "source": str(zone),
                                          "format": "rpz"}]}})
        assert verdict(ask(port, "www.glueless.com"))[0] == 3


def test_a_list_fetched_over_https(hierarchy, tmp_path: Path, netkit_ca) -> None:  # type: ignore[no-untyped-def]
    www = tmp_path / "www"
    www.mkdir()
    (www / "list.txt").write_text("glueless.com\n")
    cert, key = netkit_ca.issue("127.0.0.1")
    with serve_in_thread("http", {"http": {"root": str(www), "listen": ["127.0.0.1:0"],
                                           "tls": {"cert": str(cert), "key": str(key)}}}) as web:
        url = f"https://127.0.0.1:{web.addresses[0][1]}/list.txt"
        target = tmp_path / "fetched" / "list.txt"
        with serve_in_thread("dns", {"dns": {
                "root_hints": str(hierarchy.root_hints), "query_private_authorities": True,
                "policy_watch": 0.1,
                "policy": [{"name": "remote", "source": str(target), "url": url,
                            "ca": str(netkit_ca.ca_file), "refresh": 1},
                           {"name": "capped", "source": str(tmp_path / "capped.txt"),
                            "url": url, "ca": str(netkit_ca.ca_file), "max_size": 5},
                           {"name": "untrusted", "source": str(tmp_path / "untrusted.txt"),
                            "url": url}]}}) as s:
            port = s.addresses[0][1]
            deadline = time.monotonic() + 10
            while verdict(ask(port, "www.glueless.com"))[0] != 3:
                assert time.monotonic() < deadline, "the fetched list did not apply"
                time.sleep(0.1)
            assert target.read_text() == "glueless.com\n"
            # over max_size, or a certificate the system's CAs do not know: not written
            assert not (tmp_path / "capped.txt").exists()
            assert not (tmp_path / "untrusted.txt").exists()
            assert not list(tmp_path.glob(".*.tmp"))  # no half-written file left
            meta = (target.parent / "list.txt.meta").read_text()
            assert '"etag": "\\"' in meta  # kept for If-None-Match
            mtime = target.stat().st_mtime_ns
            time.sleep(1.5)  # refreshed: 304, the file untouched
            assert target.stat().st_mtime_ns == mtime
            (www / "list.txt").write_text("example.org\n")
            deadline = time.monotonic() + 10
            while verdict(ask(port, "www.example.org"))[0] != 3:
                assert time.monotonic() < deadline, "the changed list was not fetched"
                time.sleep(0.1)
