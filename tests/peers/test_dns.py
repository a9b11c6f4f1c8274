"""The recursive resolver against a local hierarchy of real NSD servers, asked with dig."""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import time

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from netkit.testing.nsd import Hierarchy
from tests.support.fixtures import ServerProcess, need

MODULE = "netkit.servers.dns"


def resolver_args(h: Hierarchy, *more: str) -> list[str]:
    return ["--listen", "127.0.0.1:0", "--set", f"dns.root_hints={h.root_hints}",
            "--set", "dns.query_private_authorities=true",
            "--set", "dns.server_timeout=0.3", "--set", "dns.total_timeout=2", *more]


@pytest.fixture
def resolver(spawn, hierarchy) -> tuple[ServerProcess, int]:
    proc = spawn(MODULE, resolver_args(hierarchy))
    (_, port), _ = proc.listening(2)  # udp and tcp, same port
    return proc, port


def dig(port: int, *args: str) -> tuple[str, list[tuple[str, int, str, str]], str]:
    """(status, [(name, ttl, type, data)] of the answer section, full output)."""
    out = subprocess.run([need("dig"), "@127.0.0.1", "-p", str(port), "+tries=1", "+time=5",
                          *args], capture_output=True, text=True, timeout=30).stdout
    status = re.search(r"status: (\w+)", out)
    section = out.split(";; ANSWER SECTION:\n")[1].split("\n\n")[0] if "ANSWER SECTION" in out \
        else ""
    rows = []
    for line in section.splitlines():
        name, ttl, _cls, rtype, data = line.split(None, 4)
        rows.append((name, int(ttl), rtype, data))
    return (status.group(1) if status else "NONE"), rows, out


def test_glue_delegation_over_udp_and_tcp(resolver):
    _, port = resolver
    for transport in ("+notcp", "+tcp"):
        status, rows, _ = dig(port, "www.example.com", "A", transport)
        assert status == "NOERROR"
        assert [(n, t, d) for n, _, t, d in rows] == [("www.example.com.", "A", "192.0.2.10")]


def test_glueless_delegation(resolver):
    status, rows, _ = dig(resolver[1], "www.glueless.com", "A")
    assert status == "NOERROR" and rows[0][3] == "192.0.2.30"


def test_cname_across_zones(resolver):
    status, rows, _ = dig(resolver[1], "alias.example.com", "A")
    assert status == "NOERROR"
    assert [(n, t, d) for n, _, t, d in rows] == [
        ("alias.example.com.", "CNAME", "www.example.org."),
        ("www.example.org.", "A", "192.0.2.20")]


def test_nxdomain_and_nodata_carry_the_soa_and_are_cached(resolver):
    _, port = resolver
    status, rows, out = dig(port, "missing.example.com", "A")
    assert status == "NXDOMAIN" and rows == []
    assert re.search(r"example\.com\.\s+60\s+IN\s+SOA", out)
    status, _, out = dig(port, "txt-only.example.com", "A")
    assert status == "NOERROR" and "ANSWER: 0" in out and "SOA" in out
    time.sleep(1.1)
    status, _, out = dig(port, "missing.example.com", "A")
    ttl = int(re.search(r"example\.com\.\s+(\d+)\s+IN\s+SOA", out).group(1))
    assert status == "NXDOMAIN" and ttl < 60  # from the negative cache, counting down


def test_ttls_count_down_and_expire(resolver):
    _, port = resolver
    _, first, _ = dig(port, "www.example.com", "AAAA")
    time.sleep(1.1)
    _, second, _ = dig(port, "www.example.com", "AAAA")
    assert first[0][1] == 300 and 297 <= second[0][1] < 300
    _, short, _ = dig(port, "short.example.com", "A")
    assert short[0][1] == 2
    time.sleep(2.2)
    status, again, _ = dig(port, "short.example.com", "A")  # expired: fetched anew
    assert status == "NOERROR" and again[0][1] == 2


def test_truncated_answers_are_fetched_over_tcp(resolver):
    _, port = resolver
    status, rows, _ = dig(port, "big.example.com", "TXT", "+tcp")
    assert status == "NOERROR" and len(rows) == 30
    status, rows, out = dig(port, "big.example.com", "TXT", "+notcp", "+ignore")
    assert status == "NOERROR" and " tc" in out.split("flags:")[1].split(";")[0]


def test_lame_and_dead_servers_give_servfail_with_a_reason_in_time(resolver, hierarchy):
    _, port = resolver
    status, _, out = dig(port, "www.lame.com", "A")
    assert status == "SERVFAIL"
    assert "EDE: 22 (No Reachable Authority)" in out and "lame for lame.com." in out
    t0 = time.monotonic()
    status, _, out = dig(port, "www.dead.com", "A")
    assert status == "SERVFAIL" and time.monotonic() - t0 < 2.5  # total_timeout = 2 s
    assert f"{hierarchy.addr(8)}: timed out" in out


def test_private_authorities_are_refused_unless_allowed(spawn, hierarchy):
    proc = spawn(MODULE, [*resolver_args(hierarchy)[:-6], "--set", "dns.server_timeout=0.3"])
    (_, port), _ = proc.listening(2)
    status, _, out = dig(port, "www.example.com", "A")
    assert status == "SERVFAIL" and "EDE: 18 (Prohibited)" in out


def test_clients_outside_allow_are_refused(spawn, hierarchy):
    proc = spawn(MODULE, resolver_args(hierarchy, "--set", 'dns.allow=["10.0.0.0/8"]'))
    (_, port), _ = proc.listening(2)
    status, rows, _ = dig(port, "www.example.com", "A")
    assert status == "REFUSED" and rows == []


def test_local_records_and_localhost(spawn, hierarchy, tmp_path):
    conf = tmp_path / "dns.toml"
    conf.write_text(f"""
[dns]
root_hints = "{hierarchy.root_hints}"
query_private_authorities = true
[[dns.local]]
name = "router.lan"
value = "192.168.1.1"
[[dns.local]]
name = "router.lan"
type = "TXT"
value = "the home router"
ttl = 60
""")
    proc = spawn(MODULE, ["--config", str(conf), "--listen", "127.0.0.1:0"])
    (_, port), _ = proc.listening(2)
    status, rows, out = dig(port, "router.lan", "A")
    assert status == "NOERROR" and rows == [("router.lan.", 300, "A", "192.168.1.1")]
    assert " aa" in out.split("flags:")[1].split(";")[0]
    assert dig(port, "router.lan", "TXT")[1] == [("router.lan.", 60, "TXT", '"the home router"')]
    assert dig(port, "localhost", "A")[1][0][3] == "127.0.0.1"
    assert dig(port, "localhost", "AAAA")[1][0][3] == "::1"


def test_any_is_answered_per_rfc_8482(resolver):
    status, rows, _ = dig(resolver[1], "example.com", "ANY")
    assert status == "NOERROR" and rows[0][2] == "HINFO" and "RFC8482" in rows[0][3]


def _udp(port: int, data: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def test_bad_input_gets_formerr_notimp_or_is_dropped(resolver):
    _, port = resolver
    query = DNSRecord.question("www.example.com", "A")
    two = DNSRecord.question("www.example.com", "A")
    two.add_question(*DNSRecord.question("www.example.org", "A").questions)
    r = DNSRecord.parse(_udp(port, two.pack()))
    assert r.header.rcode == RCODE.FORMERR
    notify = DNSRecord.question("example.com", "SOA")
    notify.header.opcode = 4
    assert DNSRecord.parse(_udp(port, notify.pack())).header.rcode == RCODE.NOTIMP
    garbage = struct.pack("!HH", 0x1234, 0x0100) + b"\xff" * 20
    reply = _udp(port, garbage)
    assert reply is not None and reply[:2] == b"\x12\x34" and reply[3] & 0x0F == RCODE.FORMERR
    assert _udp(port, b"\x00", timeout=0.3) is None  # too short to answer: dropped
    response = query.reply()
    assert _udp(port, response.pack(), timeout=0.3) is None  # a response: never answered
    # and the server is fine afterwards
    ok = DNSRecord.parse(_udp(port, query.pack(), timeout=3))
    assert ok.header.rcode == RCODE.NOERROR and ok.a.rdata and str(ok.a.rdata) == "192.0.2.10"
    assert ok.a.rtype == QTYPE.A


def test_tcp_pipelined_queries(resolver):
    _, port = resolver
    names = ["www.example.com", "www.example.org", "alias.example.com"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for i, name in enumerate(names):
            q = DNSRecord.question(name, "A")
            q.header.id = 100 + i
            data = q.pack()
            s.sendall(struct.pack("!H", len(data)) + data)
        got = {}
        buf = b""
        while len(got) < len(names):
            buf += s.recv(65535)
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                size = struct.unpack("!H", buf[:2])[0]
                msg = DNSRecord.parse(buf[2:2 + size])
                buf = buf[2 + size:]
                got[msg.header.id] = msg.header.rcode
    assert got == {100: 0, 101: 0, 102: 0}



def test_dname_is_followed_with_a_synthesised_cname(resolver):
    status, rows, _ = dig(resolver[1], "www.old.example.com", "A")
    assert status == "NOERROR"
    assert [(n, t, d) for n, _, t, d in rows] == [
        ("old.example.com.", "DNAME", "example.org."),
        ("www.old.example.com.", "CNAME", "www.example.org."),
        ("www.example.org.", "A", "192.0.2.20")]


def test_forward_zones_go_to_their_servers(spawn, hierarchy, tmp_path):
    conf = tmp_path / "dns.toml"
    conf.write_text(f"""
[dns]
root_hints = "{hierarchy.root_hints}"
query_private_authorities = true
[[dns.forward]]
zone = "example.org"
servers = ["{hierarchy.addr(6)}:53"]
[[dns.forward]]
zone = "nowhere.test"
servers = ["{hierarchy.addr(6)}:53"]
""")
    proc = spawn(MODULE, ["--config", str(conf), "--listen", "127.0.0.1:0"])
    (_, port), _ = proc.listening(2)
    status, rows, _ = dig(port, "www.example.org", "A")
    assert status == "NOERROR" and rows[0][3] == "192.0.2.20"
    # iteration from the root would say NXDOMAIN; the forwarder (not authoritative for
    # the zone) says REFUSED: so the forwarder was asked
    assert dig(port, "www.nowhere.test", "A")[0] == "REFUSED"


def test_cache_survives_a_restart(spawn, hierarchy, tmp_path):
    cache = tmp_path / "cache.jsonl"
    proc = spawn(MODULE, resolver_args(hierarchy, "--set", f"dns.cache.file={cache}"))
    (_, port), _ = proc.listening(2)
    assert dig(port, "www.example.com", "A")[1][0][3] == "192.0.2.10"
    assert proc.stop() == 0
    assert "www.example.com." in cache.read_text()
    # the restarted resolver's root is a server that never answers: only the cache can help
    dead_root = tmp_path / "dead.hints"
    dead_root.write_text(f".  3600000 NS A.ROOT.\nA.ROOT. 3600000 A {hierarchy.addr(8)}\n")
    again = spawn(MODULE, resolver_args(hierarchy, "--set", f"dns.cache.file={cache}",
                                        "--set", f"dns.root_hints={dead_root}"))
    (_, port), _ = again.listening(2)
    again.wait_for(r"loaded \d+ cache entries")
    status, rows, _ = dig(port, "www.example.com", "A")
    assert status == "NOERROR" and rows[0][3] == "192.0.2.10" and rows[0][1] <= 300
    assert dig(port, "www.example.org", "A")[0] == "SERVFAIL"  # not cached: no root


def test_rate_limit_drops_a_flooding_client(spawn, hierarchy):
    proc = spawn(MODULE, resolver_args(hierarchy, "--set", "dns.rate_limit=5",
                                       "--set", "dns.rate_burst=5"))
    (_, port), _ = proc.listening(2)
    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        for i in range(30):
            q = DNSRecord.question("localhost", "A")
            q.header.id = i
            s.sendto(q.pack(), ("127.0.0.1", port))
        try:
            while True:
                s.recv(512)
                answered += 1
        except TimeoutError:
            pass
    # the burst, plus what 5/s refills while they are processed (generous for a busy CI);
    # without the limit all 30 would be answered
    assert 5 <= answered <= 15
    time.sleep(0.5)
    assert dig(port, "localhost", "A")[0] == "NOERROR"  # refilled: served again


def test_0x20_case_randomisation_resolves(spawn, hierarchy):
    proc = spawn(MODULE, resolver_args(hierarchy, "--set", "dns.use_caps_for_id=true"))
    (_, port), _ = proc.listening(2)
    status, rows, _ = dig(port, "alias.example.com", "A")
    assert status == "NOERROR" and rows[-1][3] == "192.0.2.20"


def test_serve_stale_answers_when_the_authorities_are_gone(spawn, hierarchy, tmp_path):
    cache = tmp_path / "cache.jsonl"
    first = spawn(MODULE, resolver_args(hierarchy, "--set", f"dns.cache.file={cache}",
                                        "--set", "dns.cache.serve_stale=1h"))
    (_, port), _ = first.listening(2)
    assert dig(port, "short.example.com", "A")[1][0][1] == 2  # TTL 2 s
    assert first.stop() == 0
    time.sleep(2.2)  # expired now
    dead_root = tmp_path / "dead.hints"
    dead_root.write_text(f".  3600000 NS A.ROOT.\nA.ROOT. 3600000 A {hierarchy.addr(8)}\n")
    args = ["--set", f"dns.cache.file={cache}", "--set", f"dns.root_hints={dead_root}",
            "--set", "dns.total_timeout=0.5"]
    stale = spawn(MODULE, resolver_args(hierarchy, *args, "--set", "dns.cache.serve_stale=1h"))
    (_, port), _ = stale.listening(2)
    status, rows, out = dig(port, "short.example.com", "A")
    assert status == "NOERROR" and rows == [("short.example.com.", 30, "A", "192.0.2.11")]
    assert "EDE: 3 (Stale Answer)" in out
    stale.stop()
    off = spawn(MODULE, resolver_args(hierarchy, *args))  # serve-stale off: SERVFAIL
    (_, port), _ = off.listening(2)
    assert dig(port, "short.example.com", "A")[0] == "SERVFAIL"


def test_popular_answers_are_prefetched_before_they_expire(spawn, hierarchy):
    proc = spawn(MODULE, resolver_args(hierarchy, "--log-level", "debug"))
    (_, port), _ = proc.listening(2)
    t0 = time.monotonic()
    assert dig(port, "prefetch.example.com", "A")[1][0][1] == 5  # TTL 5 s, now cached
    dig(port, "prefetch.example.com", "A")  # a first hit
    # a second hit in the last tenth of its life (4.5-5 s): aim at the middle of it
    time.sleep(max(0.0, 4.65 - (time.monotonic() - t0)))
    dig(port, "prefetch.example.com", "A")
    proc.wait_for(r"prefetched prefetch\.example\.com\. A")
    time.sleep(max(0.0, 5.3 - (time.monotonic() - t0)))
    mark = len(proc.lines)
    status, rows, _ = dig(port, "prefetch.example.com", "A")
    assert status == "NOERROR" and rows[0][1] >= 4  # the refreshed copy, not expired
    time.sleep(0.2)
    # answered from the prefetched cache: no resolution was logged for this query
    assert not any("prefetch.example.com. A -> NOERROR" in line for line in proc.lines[mark:])


def test_workers_share_udp_and_tcp_ports(spawn, hierarchy):
    proc = spawn(MODULE, resolver_args(hierarchy, "--workers", "2"))
    addresses = proc.listening(4)  # udp and tcp in each of 2 workers
    assert len({port for _, port in addresses}) == 1
    port = addresses[0][1]
    for i in range(10):  # whichever worker the kernel picks
        assert dig(port, "www.example.com", "A", "+tcp" if i % 2 else "+notcp")[0] == "NOERROR"
    assert proc.stop() == 0


def test_ipv6_listen_address(spawn, hierarchy):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    proc = spawn(MODULE, [*resolver_args(hierarchy)[2:], "--listen", "[::1]:0"])
    (host, port), _ = proc.listening(2)
    assert host == "::1"
    out = subprocess.run([need("dig"), "@::1", "-p", str(port), "+tries=1", "+time=5",
                          "www.example.com", "A"], capture_output=True, text=True,
                         timeout=30).stdout
    assert "status: NOERROR" in out and "192.0.2.10" in out


def test_truncated_and_oversized_queries(resolver):
    _, port = resolver
    whole = DNSRecord.question("www.example.com", "A").pack()
    cut = _udp(port, bytes(whole[:20]))  # the question ends mid-name
    assert cut is not None and cut[3] & 0x0F == RCODE.FORMERR
    huge = bytes(whole[:12]) + b"\x3f" + b"a" * 63 + b"\xff" * 4000  # 4 KB of nonsense
    reply = _udp(port, huge)
    assert reply is None or reply[3] & 0x0F == RCODE.FORMERR
    assert DNSRecord.parse(_udp(port, whole, timeout=3)).header.rcode == RCODE.NOERROR


def test_sighup_reloads_local_records_and_rules(spawn, hierarchy, tmp_path):
    conf = tmp_path / "dns.toml"
    base = f"""
[dns]
root_hints = "{hierarchy.root_hints}"
query_private_authorities = true
"""
    conf.write_text(base + '[[dns.local]]\nname = "nas.lan"\nvalue = "192.168.1.10"\n')
    proc = spawn(MODULE, ["--config", str(conf), "--listen", "127.0.0.1:0"])
    (_, port), _ = proc.listening(2)
    assert dig(port, "nas.lan", "A")[1][0][3] == "192.168.1.10"
    assert dig(port, "www.example.com", "A")[0] == "NOERROR"
    conf.write_text(base + 'allow = ["127.0.0.1/32"]\n[[dns.local]]\nname = "nas.lan"\n'
                           'value = "192.168.1.20"\n')
    mark = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"configuration reloaded", start=mark)
    assert dig(port, "nas.lan", "A")[1][0][3] == "192.168.1.20"
    conf.write_text(base + '[[dns.local]]\nname = "nas.lan"\ntype = "A"\nvalue = "not-an-ip"\n')
    mark = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"reload failed, keeping the running configuration", start=mark)
    assert dig(port, "nas.lan", "A")[1][0][3] == "192.168.1.20"


def test_tcp_behind_a_load_balancer_uses_the_proxy_headers_source(spawn, hierarchy) -> None:
    from netkit.proto.proxy import encode_v2

    proc = spawn(MODULE, resolver_args(hierarchy, "--set", "dns.accept_proxy=true",
                                       "--set", 'dns.allow=["127.0.0.50/32"]'))
    (_, port), _ = proc.listening(2)

    def ask_as(source: str) -> int:
        q = DNSRecord.question("localhost").pack()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(encode_v2((source, 40000), ("127.0.0.1", port)) +
                      struct.pack("!H", len(q)) + q)
            size = struct.unpack("!H", s.recv(2))[0]
            data = b""
            while len(data) < size:
                data += s.recv(size - len(data))
        return DNSRecord.parse(data).header.rcode

    assert ask_as("127.0.0.50") == RCODE.NOERROR  # the header's source is allowed
    assert ask_as("127.0.0.99") == RCODE.REFUSED  # the balancer itself (127.0.0.1) is not
