"""[http.tls]: the shared listener TLS table gives the HTTP server HTTPS, checked with
curl and openssl; certificates are reloaded when their files change."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from netkit import certs
from tests.support.fixtures import need


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("curl"), "-sS", *args], capture_output=True, text=True,
                          timeout=30)


def test_https_with_the_shared_tls_table_and_a_cert_reload(spawn, pki, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    conf = tmp_path / "https.toml"
    conf.write_text(f'[http]\nlisten = ["127.0.0.1:0"]\napp = "tests.support.apps:scheme"\n'
                    f'[http.tls]\ncert = "{cert}"\nkey = "{key}"\nmin_version = "1.3"\n'
                    f'watch_interval = "100ms"\n')
    proc = spawn("netkit.servers.http", ["--config", str(conf)])
    ((_, port),) = proc.listening(1)
    assert "(tcp, tls)" in proc.log
    url = f"https://localhost:{port}/"
    r = curl("--cacert", str(pki.ca), url)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "https"  # the ASGI scope knows
    r = curl(url)  # the system store does not know our CA: curl refuses
    assert r.returncode == 60
    r = curl("--cacert", str(pki.ca), "--tls-max", "1.2", url)  # below min_version
    assert r.returncode != 0
    plain = curl(f"http://127.0.0.1:{port}/")  # plaintext to a TLS port: no answer
    assert plain.returncode != 0

    # a new certificate from another CA replaces the files: new connections get it
    other = tmp_path / "other"
    certs.ensure_ca(other)
    new_cert, new_key = certs.issue(other, ["localhost"])
    shutil.copy(new_key, key)
    shutil.copy(new_cert, cert)
    proc.wait_for(r"http: certificate files changed: reloaded for new connections")
    r = curl("--cacert", str(other / "ca.pem"), url)
    assert r.returncode == 0 and r.stdout == "https", r.stderr

    # a broken file keeps the running certificate; SIGHUP with a broken config too
    cert.write_text("not a certificate")
    proc.wait_for(r"cannot be loaded, keeping the old ones")
    r = curl("--cacert", str(other / "ca.pem"), url)
    assert r.returncode == 0
    conf.write_text(conf.read_text().replace('min_version = "1.3"', 'min_version = "1.1"'))
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"reload failed, keeping the running configuration")
    assert curl("--cacert", str(other / "ca.pem"), url).returncode == 0
    assert proc.stop() == 0


def test_http_tls_table_errors_are_reported_at_check_config(tmp_path):
    conf = tmp_path / "bad.toml"
    conf.write_text(f'[http.tls]\ncert = "{tmp_path}/missing.pem"\n')
    r = check(conf)
    assert r.returncode == 2
    assert f"{conf}: http.tls.key: required key is missing" in r.stderr
    conf.write_text(f'[http.tls]\ncert = "{tmp_path}/missing.pem"\nkey = "{tmp_path}/k.pem"\n')
    r = check(conf)
    assert r.returncode == 2
    assert f"http.tls: cert: {tmp_path}/missing.pem: file not found" in r.stderr


def check(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netkit.servers.http", "--config", str(conf),
                           "--check-config"], capture_output=True, text=True, timeout=60)
