"""`netkit cert` and the `netkit` command."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from cryptography import x509

from tests.support.fixtures import need


def netkit(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netkit", *args], capture_output=True,
                          text=True, timeout=60, **kw)


@pytest.mark.peer
def test_cert_makes_a_ca_and_a_leaf_that_openssl_verifies(tmp_path):
    r = netkit("cert", "--dir", str(tmp_path), "example.test", "127.0.0.1", "::1",
               "spiffe://netkit/web")
    assert r.returncode == 0, r.stderr
    leaf, key, ca = tmp_path / "example.test.pem", tmp_path / "example.test-key.pem", \
        tmp_path / "ca.pem"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "ca-key.pem").st_mode) == 0o600
    v = subprocess.run([need("openssl"), "verify", "-CAfile", str(ca), "-purpose", "sslserver",
                        str(leaf)], capture_output=True, text=True, timeout=30)
    assert v.returncode == 0 and v.stdout.strip().endswith("OK"), v.stdout + v.stderr
    san = x509.load_pem_x509_certificate(leaf.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["example.test"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://netkit/web"]
    # a second leaf reuses the CA instead of making a new one
    before = ca.read_bytes()
    assert netkit("cert", "--dir", str(tmp_path), "second.test").returncode == 0
    assert ca.read_bytes() == before


def test_netkit_dispatches_to_servers_and_rejects_unknown_commands(tmp_path):
    r = netkit("tls", "--check-config", "--set", f"tls.dev_cert_dir={tmp_path}")
    assert r.returncode == 0 and "configuration is valid" in r.stdout
    r = netkit("tlss")
    assert r.returncode == 2 and "unknown command 'tlss'" in r.stderr
    assert netkit().returncode == 2


def test_cert_refuses_names_that_are_not_names(tmp_path):
    r = netkit("cert", "--dir", str(tmp_path / "c"), "bad name!", "ok.example", "x-.test")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "netkit cert: 'bad name!' is not a DNS name, an IP address, an email address or a URI",
        "netkit cert: 'x-.test' is not a DNS name, an IP address, an email address or a URI",
    ]
    assert not (tmp_path / "c").exists()  # nothing written
    r = netkit("cert", "--dir", str(tmp_path / "d"), "*.example.test", "10.0.0.1", "::1",
               "ops@example.test", "spiffe://netkit/web")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d" / "example.test.pem").exists()
