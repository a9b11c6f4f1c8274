"""The curl-like command: curl's options, and curl's exit codes compared with real curl's
on the same server and the same mistakes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netkit.testing import serve_in_thread
from tests.drivers.test_http_client_api import app
from tests.support.fixtures import need


def ours(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "netkit.clients.http", *args],
                          capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_in_thread("http", app=app) as server:
        yield server.url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_options_reach_the_server(base: str, tmp_path: Path) -> None:
    r = ours("-u", "ann:pw", "-H", "X-One: 1", "-A", "agent/1", f"{base}/inspect")
    seen = json.loads(r.stdout)
    assert r.returncode == 0 and seen["headers"]["authorization"] == "Basic YW5uOnB3"
    assert seen["headers"]["x-one"] == "1" and seen["headers"]["user-agent"] == "agent/1"
    r = ours("--json", '{"a": 1}', f"{base}/inspect")
    seen = json.loads(r.stdout)
    assert seen["method"] == "POST" and seen["body"] == '{"a": 1}'
    assert seen["headers"]["content-type"] == "application/json"
    assert seen["headers"]["accept"] == "application/json"
    r = ours("-d", "a=1", "-d", "b=2", f"{base}/inspect")
    assert json.loads(r.stdout)["form"] == {"a": ["1"], "b": ["2"]}
    upload = tmp_path / "up.txt"
    upload.write_text("file body\n")
    r = ours("-F", "title=t", "-F", f"doc=@{upload}", "-X", "PUT", f"{base}/inspect")
    seen = json.loads(r.stdout)
    assert seen["method"] == "PUT" and seen["form"]["title"] == ["t"]
    assert seen["form"]["doc"][0]["filename"] == "up.txt"
    out = tmp_path / "out.json"
    r = ours("-s", "-o", str(out), f"{base}/inspect")
    assert r.returncode == 0 and r.stdout == b"" and json.loads(out.read_bytes())["path"]


def test_verbose_include_head_and_redirects(base: str) -> None:
    r = ours("-v", "-L", f"{base}/redirect?to=/latin1")
    err = r.stderr.decode()
    assert "> GET /redirect?to=/latin1 HTTP/1.1" in err and "> Host: 127.0.0.1:" in err
    assert "< HTTP/1.1 302 Found" in err and "* Issue another request to this URL" in err
    assert "> GET /latin1 HTTP/1.1" in err and "< HTTP/1.1 200 OK" in err
    assert r.stdout == "café".encode("latin-1")
    r = ours("-i", f"{base}/latin1")
    assert r.stdout.startswith(b"HTTP/1.1 200 OK\r\n") and r.stdout.endswith(b"\r\n\r\ncaf\xe9")
    r = ours("-I", f"{base}/inspect")
    assert r.stdout.startswith(b"HTTP/1.1 200 OK\r\n") and r.stdout.endswith(b"\r\n\r\n")
    r = ours("--help")
    assert r.returncode == 0 and b"--max-time" in r.stdout and b"exit codes" in r.stdout


@pytest.mark.peer
def test_exit_codes_and_silence_match_curl(base: str, tmp_path: Path) -> None:
    curl = need("curl")
    dead = f"http://127.0.0.1:{closed_port()}/"
    cases = [
        [f"{base}/inspect"],
        ["-f", f"{base}/status/404"],
        [f"{base}/status/404"],
        [dead],
        ["-s", dead],
        ["-s", "-S", dead],
        ["not a url"],
        ["--max-time", "0.5", f"{base}/slow"],
        ["-L", "--max-redirs", "2", f"{base}/loop"],
        ["-o", str(tmp_path / "no" / "such" / "dir"), f"{base}/inspect"],
        ["--frobnicate", f"{base}/inspect"],
    ]
    for case in cases:
        theirs = subprocess.run([curl, *case], capture_output=True, timeout=30)
        mine = ours(*case)
        assert mine.returncode == theirs.returncode, (case, mine.stderr)
        if "-s" in case:  # silent: nothing on stderr, unless -S shows the error
            assert (mine.stderr == b"") == (theirs.stderr == b""), (case, mine.stderr)
        elif mine.returncode:
            assert mine.stderr.startswith(b"netkit http: (%d) " % mine.returncode)
        assert b"Traceback" not in mine.stderr
