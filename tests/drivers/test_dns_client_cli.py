"""The dig-like command: one line per error, dig's exit codes."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def dns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netkit.clients.dns", *args],
                          capture_output=True, text=True, timeout=30)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("args", "code", "line"), [
    (["localhost", "BOGUS"], 1, "netkit dns: unknown type 'BOGUS'"),
    (["bad..name", "A"], 10, "netkit dns: 'bad..name' is not a legal name"),
    (["localhost", "A", "+frob"], 1, "netkit dns: unknown option +frob"),
    (["-p", "x", "localhost"], 1, "netkit dns: argument -p/--port: invalid int value: 'x'"),
])
def test_bad_input_is_one_line_and_digs_exit_code(args, code, line):
    r = dns("@127.0.0.1", *args)
    assert r.returncode == code
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(line)
    assert "Traceback" not in r.stderr


def test_no_reply_is_9_and_an_answer_is_0(spawn):
    r = dns("@127.0.0.1", "-p", str(closed_port()), "--timeout", "0.5", "localhost")
    assert r.returncode == 9 and r.stderr.startswith(";; no answer for localhost A")
    proc = spawn("netkit.servers.dns", ["--listen", "127.0.0.1:0",
                                         "--set", "dns.allow=[\"10.0.0.0/8\"]"])
    (_, port), _ = proc.listening(2)
    r = dns("@127.0.0.1", "-p", str(port), "localhost")  # REFUSED is an answer too
    assert r.returncode == 0 and "REFUSED" in r.stdout
