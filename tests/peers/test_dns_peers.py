"""Our resolver and Unbound, given the same root hints, agree; our client works against both."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from netkit.clients import dns as client
from netkit.testing.nsd import Hierarchy, free_udp_tcp_port, unbound_config
from tests.peers.test_dns import MODULE, resolver_args
from tests.support.fixtures import ServerProcess, need

QUESTIONS = [
    ("www.example.com", "A"), ("www.example.com", "AAAA"), ("alias.example.com", "A"),
    ("missing.example.com", "A"), ("txt-only.example.com", "A"), ("www.glueless.com", "A"),
    ("big.example.com", "TXT"), ("mail.example.com", "MX"), ("www.example.org", "A"),
    ("example.com", "SOA"), ("www.lame.com", "A"), ("www.old.example.com", "A"),
    ("deep.a.b.c.example.com", "A"), ("b.c.example.com", "A"), ("nothing.a.example.com", "A"),
]


@pytest.fixture(scope="module")
def unbound(hierarchy: Hierarchy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = need("unbound")
    d = tmp_path_factory.mktemp("unbound")
    port = free_udp_tcp_port()
    conf = unbound_config(d, port, hierarchy.root_hints)
    subprocess.run([need("unbound-checkconf"), str(conf)], check=True, capture_output=True)
    proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            asyncio.run(client.lookup("localhost", "A", server=f"127.0.0.1:{port}",
                                       timeout=0.3))
            break
        except Exception as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log = (d / "unbound.log").read_text()
                raise RuntimeError(f"unbound did not start:\n{log}") from exc
            time.sleep(0.1)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def ours(hierarchy: Hierarchy) -> Iterator[int]:
    proc = ServerProcess(MODULE, resolver_args(hierarchy))
    (_, port), _ = proc.listening(2)
    yield port
    proc.stop()


def _view(answer: client.Answer) -> tuple[str, set[tuple[str, str, str]]]:
    return answer.rcode, {(r.name.lower(), r.type, r.data) for r in answer.records}


@pytest.mark.parametrize("name,rdtype", QUESTIONS, ids=[f"{n}/{t}" for n, t in QUESTIONS])
def test_same_answers_as_unbound(ours, unbound, name, rdtype):
    mine = asyncio.run(client.lookup(name, rdtype, server=f"127.0.0.1:{ours}", timeout=5))
    theirs = asyncio.run(client.lookup(name, rdtype, server=f"127.0.0.1:{unbound}", timeout=5))
    assert _view(mine) == _view(theirs)
    if rdtype == "TXT":
        assert mine.tcp and theirs.tcp  # both truncated over UDP; the client moved to TCP


def test_client_tries_the_next_server_and_reports_each(unbound):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{silent.getsockname()[1]}"
        answer = asyncio.run(client.lookup("www.example.com", "A", timeout=0.5,
                                            server=[dead, f"127.0.0.1:{unbound}"]))
        assert answer.rcode == "NOERROR" and answer.server == f"127.0.0.1:{unbound}"
        with pytest.raises(client.ResolveTimeout, match="timed out"):
            asyncio.run(client.lookup("www.example.com", "A", server=[dead], timeout=0.3))


def test_dig_like_command_and_trace(hierarchy, unbound):
    run = [sys.executable, "-m", "netkit.clients.dns"]
    out = subprocess.run([*run, "@127.0.0.1", "-p", str(unbound), "alias.example.com"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "status: NOERROR" in out.stdout
    assert "www.example.org.\t" in out.stdout and "192.0.2.20" in out.stdout
    traced = subprocess.run([*run, "www.glueless.com", "A", "+trace", "--root-hints",
                             str(hierarchy.root_hints)], capture_output=True, text=True,
                            timeout=30)
    assert traced.returncode == 0, traced.stderr
    lines = traced.stdout.splitlines()
    assert lines[0].startswith(".") and f"@{hierarchy.addr(2)}" in lines[0]
    assert "referral to com." in lines[0]
    assert any("referral to glueless.com. (ns.example.org.), no glue" in x for x in lines)
    assert lines[-2].endswith("answer: www.glueless.com. 3600 A 192.0.2.30")
    assert lines[-1] == ";; status: NOERROR"


def test_qname_minimisation_shows_each_authority_only_what_it_needs(hierarchy):
    traced = subprocess.run([sys.executable, "-m", "netkit.clients.dns",
                             "deep.a.b.c.example.com", "A", "+trace", "--root-hints",
                             str(hierarchy.root_hints)], capture_output=True, text=True, timeout=30)
    asked = [line.split()[2] for line in traced.stdout.splitlines()[:-1]]
    # the root hears "com.", .com hears "example.com.", and then one label at a time
    assert asked == ["com.", "example.com.", "c.example.com.", "b.c.example.com.",
                     "a.b.c.example.com.", "deep.a.b.c.example.com."]
