"""The examples in servers/ and clients/ work as their comments say."""

from __future__ import annotations

import shutil
import subprocess
import sys

from netkit import certs
from tests.support.fixtures import ROOT


def test_tls_terminator_composition_checks_once_certs_exist(tmp_path):
    (tmp_path / "servers").mkdir()
    conf = tmp_path / "servers" / "tls-terminator.toml"
    shutil.copy(ROOT / "servers" / "tls-terminator.toml", conf)
    certs.issue(tmp_path / "certs", ["localhost", "127.0.0.1"])
    r = subprocess.run([sys.executable, "-m", "netkit.servers.tls", "--config", str(conf),
                        "--check-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_tls_peek_client_shows_the_certificate(spawn, tmp_path, pki, make_backend):
    from tests.peers.test_tls_wrapper import server_tunnel, start_wrapper

    # a sink closes on EOF; the echo backend would answer after the client's close_notify,
    # which TLS 1.3 allows but anyio's full-close (unwrap) does not
    backend = make_backend("sink")
    _, (port,) = start_wrapper(spawn, tmp_path, server_tunnel(pki, backend))
    ok = subprocess.run([sys.executable, str(ROOT / "clients" / "tls_peek.py"),
                         f"127.0.0.1:{port}", "--ca", str(pki.ca), "--name", "localhost"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "protocol: TLSv1.3" in ok.stdout and "names:    localhost, 127.0.0.1" in ok.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "clients" / "tls_peek.py"),
                          f"127.0.0.1:{port}", "--ca", str(pki.other_ca), "--name", "localhost"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "unknown CA" in bad.stderr
