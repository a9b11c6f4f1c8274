"""The dig-like command: one line per error, dig's exit codes."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.support.fixtures import need


def dns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netkit.clients.dns", *args],
                          capture_output=True, text=True, timeout=30)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("args", "code", "line"), [
    (["localhost", "BOGUS"], 1,
     "netkit dns: 'BOGUS' is neither a type nor a class, and the name is 'localhost'"),
    (["bad..name", "A"], 10, "netkit dns: 'bad..name' is not a legal name"),
    (["localhost", "A", "+frob"], 1, "netkit dns: invalid option: +frob"),
    (["-p", "x", "localhost"], 1, "netkit dns: -p x: not a port"),
    (["-t", "BOGUS", "localhost"], 1, "netkit dns: -t BOGUS: unknown type"),
    (["+time=soon", "localhost"], 1, "netkit dns: +time needs a number"),
    (["-x", "not-an-ip"], 1, "netkit dns: -x not-an-ip: not an address"),
])
def test_bad_input_is_one_line_and_digs_exit_code(args, code, line):
    """As dig: the error on one line, then (usage errors) the short usage; nothing sent."""
    r = dns("@127.0.0.1", *args)
    assert r.returncode == code
    assert r.stderr.splitlines()[0] == line or r.stderr.startswith(line)
    if code == 1:
        assert "Usage:  python -m netkit.clients.dns [@server] [domain]" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_no_reply_is_9_and_an_answer_is_0(spawn):
    r = dns("@127.0.0.1", "-p", str(closed_port()), "--timeout", "0.5", "localhost")
    assert r.returncode == 9 and r.stderr.startswith(";; communications error: ")
    assert "no servers could be reached" in r.stderr
    proc = spawn("netkit.servers.dns", ["--listen", "127.0.0.1:0",
                                         "--set", "dns.allow=[\"10.0.0.0/8\"]"])
    (_, port), _ = proc.listening(2)
    r = dns("@127.0.0.1", "-p", str(port), "localhost")  # REFUSED is an answer too
    assert r.returncode == 0 and "REFUSED" in r.stdout


@pytest.fixture(scope="module")
def zone_server():
    from netkit.testing.dns import DNSZones
    with DNSZones() as z:
        z.add("www.example.test", "A", "192.0.2.10")
        z.add("www.example.test", "A", "192.0.2.11")
        z.add("alias.example.test", "CNAME", "www.example.test.")
        z.add("example.test", "MX", "10 mail.example.test.")
        z.add("example.test", "TXT", '"v=spf1 -all" "two"')
        z.add("10.2.0.192.in-addr.arpa", "PTR", "www.example.test.")
        yield z


def section(out: str, title: str) -> list[list[str]]:
    lines = out.split(f";; {title} SECTION:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return sorted(line.split() for line in lines)


@pytest.mark.peer
@pytest.mark.parametrize("query", [
    ["www.example.test"], ["alias.example.test", "A"], ["-t", "MX", "example.test"],
    ["example.test", "TXT"], ["-x", "192.0.2.10"], ["IN", "MX", "example.test"],
])
def test_same_answers_as_real_dig(zone_server, query):
    dig = need("dig")
    at = ["@127.0.0.1", "-p", str(zone_server.port)]
    theirs = subprocess.run([dig, *at, *query, "+short"], capture_output=True, text=True,
                            timeout=30)
    ours = dns(*at, *query, "+short")
    assert ours.returncode == theirs.returncode == 0
    assert sorted(ours.stdout.splitlines()) == sorted(theirs.stdout.splitlines()) != []
    theirs = subprocess.run([dig, *at, *query], capture_output=True, text=True, timeout=30)
    ours = dns(*at, *query)
    for title in ("QUESTION", "ANSWER"):
        assert section(ours.stdout, title) == section(theirs.stdout, title)
    for line in (";; ->>HEADER<<- opcode: QUERY, status: NOERROR",
                 ";; flags: qr aa rd; QUERY: 1, ANSWER: ", ";; OPT PSEUDOSECTION:",
                 ";; Query time: ", f";; SERVER: 127.0.0.1#{zone_server.port}(127.0.0.1) (UDP)",
                 ";; WHEN: ", ";; MSG SIZE  rcvd: "):
        assert line in ours.stdout and line.split(":")[0] in theirs.stdout


def test_dig_options(zone_server):
    at = ["@127.0.0.1", "-p", str(zone_server.port)]
    r = dns(*at, "www.example.test", "+norecurse", "+tcp")
    assert ";; flags: qr aa;" in r.stdout and "(TCP)" in r.stdout
    r = dns(*at, "missing.example.test", "+time=1", "+tries=1")
    assert r.returncode == 0 and "status: NXDOMAIN" in r.stdout
    assert section(r.stdout, "AUTHORITY")[0][3] == "SOA"
    r = dns("-h")
    assert r.returncode == 0 and "+[no]short" in r.stdout and "-x dot-notation" in r.stdout


def test_default_server_comes_from_resolv_conf(zone_server, tmp_path, monkeypatch, capsys):
    from netkit.clients.dns import cli, resolvconf
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.1\n")
    monkeypatch.setattr(resolvconf, "DEFAULT_PATH", conf)
    assert cli.main(["-p", str(zone_server.port), "www.example.test", "+short"]) == 0
    assert sorted(capsys.readouterr().out.split()) == ["192.0.2.10", "192.0.2.11"]
