"""The examples in servers/ and clients/ work as their comments say."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest

from netkit import certs
from tests.support.fixtures import ROOT, free_port


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


def test_web_stack_composition_runs_both_servers_in_one_process(spawn, tmp_path):
    (tmp_path / "servers").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text("hello from the stack\n")
    certs.issue(tmp_path / "certs", ["localhost", "127.0.0.1"])
    http_port, tls_port = free_port(), free_port()
    text = (ROOT / "servers" / "web-stack.toml").read_text()
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{http_port}")
    text = text.replace("127.0.0.1:8443", f"127.0.0.1:{tls_port}")
    conf = tmp_path / "servers" / "web-stack.toml"
    conf.write_text(text)
    proc = spawn("netkit", ["run", "--config", str(conf), "--control",
                            str(tmp_path / "ctl.sock")])
    proc.listening(2)
    ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "ca.pem"))
    # from 127.0.0.3: the wrapper itself connects from 127.0.0.1, so only the PROXY header
    # can tell the HTTP server who the client is
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10,
                                  source_address=("127.0.0.3", 0)) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"hello from the stack\n")
    # the access log names the real client, passed on by the wrapper's PROXY v2 header
    line = proc.wait_for(r'(\S+) - - \[.*\] "GET / HTTP/1.1" 200')
    assert line.group(1) == "127.0.0.3"
    assert proc.stop() == 0



def run_client(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "clients" / script)],
                          capture_output=True, text=True, timeout=60)


def test_each_client_example_runs_against_a_server_it_starts() -> None:
    dns = run_client("dns_lookup.py")
    assert dns.returncode == 0, dns.stderr
    assert "api.test A: NOERROR 192.0.2.10 (udp)" in dns.stdout
    assert "api.test TXT: NOERROR \"served by netkit\" (tcp)" in dns.stdout
    assert "missing.test A: NXDOMAIN - (udp)" in dns.stdout
    assert "the server received 6 questions" in dns.stdout
    http = run_client("http_fetch.py")
    assert http.returncode == 0, http.stderr
    assert http.stdout.splitlines() == ['200 [{"id": 1}]', '201 {"id": 2}',
                                        "1 connection(s) for 2 requests (keep-alive)",
                                        "every expected request came"]
    tls = run_client("tls_peek.py")
    assert tls.returncode == 0, tls.stderr
    assert "names:    localhost, 127.0.0.1, 0:0:0:0:0:0:0:1" in tls.stdout
    assert "issuer:   {'organizationName': 'netkit test CA'" in tls.stdout


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def test_fetch_json_retries_until_the_api_answers():
    r = run_example("clients/fetch_json.py")
    assert r.returncode == 0, r.stderr
    assert '"name": "bob"' in r.stdout and r.stderr.startswith("200 in ")


def test_download_streams_a_large_file_with_a_progress_bar(tmp_path):
    out = tmp_path / "got.bin"
    r = run_example("clients/download.py", "--size-mib", "8", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.rstrip().endswith("matches the served file")
    assert out.stat().st_size == 8 << 20
    assert "] 100%  8/8 MiB" in r.stderr


def test_check_domains_reports_mx_and_certificates():
    r = run_example("clients/check_domains.py")
    assert r.returncode == 1  # one MX host's certificate does not cover its name
    lines = r.stdout.splitlines()
    assert lines[0].startswith("example.test: MX 10 mail.example.test. 127.0.0.1:")
    assert lines[0].endswith("days left") and "certificate ok" in lines[0]
    assert "other.test: MX 5 smtp.other.test." in lines[1] and "TLS FAILED" in lines[1]
    assert "not valid for 'smtp.other.test'" in lines[1]
    assert lines[2] == "nomail.test: no MX (NoAnswer)"


def test_home_router_composition_answers_dhcp_clients_by_name(spawn, tmp_path):
    """servers/home-router.toml on loopback: DHCP on `lo` (a port of its own, clients as
    relay agents from 127.0.10.1), the resolver on a free port; a client's host name is
    answered as NAME.lan while its lease is held."""
    import asyncio

    from netkit.clients import dhcp
    from netkit.clients import dns as dns_client

    (tmp_path / "servers").mkdir()
    dns_port = free_port()
    # the relay's packet mode (TUN devices, root) is exercised by netkit lab's test
    text = (ROOT / "servers" / "home-router.toml").read_text().split("[relay.packet]")[0]
    text = text.replace('interface = "br-lan"', 'interface = "lo"\nport = 0')
    text = text.replace("192.168.50.", "127.0.10.")
    text = text.replace('["127.0.10.1:53", "127.0.0.1:53"]', f'["127.0.0.1:{dns_port}"]')
    conf = tmp_path / "servers" / "home-router.toml"
    conf.write_text(text)
    check = subprocess.run([sys.executable, "-m", "netkit", "run", "--config", str(conf),
                            "--check-config"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    proc = spawn("netkit", ["run", "--config", str(conf), "--control",
                            str(tmp_path / "ctl.sock")])
    m = proc.wait_for(r"dhcp: listening on 127\.0\.0\.1:(\d+) ")
    proc.wait_for(rf"listening on 127\.0\.0\.1:{dns_port} ")
    where = f"127.0.0.1:{m.group(1)}"
    lease = asyncio.run(dhcp.obtain(server=where, giaddr="127.0.10.1",
                                    mac="02:00:00:00:50:01", hostname="laptop"))
    assert lease.domain == "lan" and lease.dns == ["127.0.10.1"]
    resolver = dns_client.Resolver([f"127.0.0.1:{dns_port}"], timeout=2)
    answer = asyncio.run(resolver.resolve("laptop.lan", "A"))
    assert [r.address for r in answer] == [lease.address]
    ptr = asyncio.run(resolver.reverse(lease.address))
    assert [p.target for p in ptr] == ["laptop.lan."]
    asyncio.run(dhcp.release(lease, server=where, giaddr="127.0.10.1"))
    proc.wait_for(r"released 127\.0\.10\.100")
    with pytest.raises(dns_client.NXDOMAIN):
        asyncio.run(resolver.resolve("laptop.lan", "A"))
    assert (tmp_path / "var" / "home-router-leases.db").exists()
    assert proc.stop() == 0


def test_stateless_servers_behind_haproxy_see_real_client_addresses(spawn, tmp_path):
    """servers/behind-haproxy.{toml,cfg}: two HTTP servers behind HAProxy (PROXY v2); each
    access log names the client that connected to HAProxy, not HAProxy."""
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("no haproxy (bash scripts/install-peers.sh)")
    (tmp_path / "servers").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.html").write_text("balanced\n")
    front, one, two = free_port(), free_port(), free_port()
    shutil.copy(ROOT / "servers" / "behind-haproxy.toml", tmp_path / "servers")
    cfg = (ROOT / "servers" / "behind-haproxy.cfg").read_text()
    cfg = cfg.replace("127.0.0.1:8080", f"127.0.0.1:{front}")
    cfg = cfg.replace("127.0.0.1:8081", f"127.0.0.1:{one}")
    cfg = cfg.replace("127.0.0.1:8082", f"127.0.0.1:{two}")
    (tmp_path / "haproxy.cfg").write_text(cfg)
    conf = tmp_path / "servers" / "behind-haproxy.toml"
    procs = [spawn("netkit", ["run", "--config", str(conf), "--control", "none", "--set",
                              f'http.listen=["127.0.0.1:{port}"]']) for port in (one, two)]
    for proc in procs:
        proc.listening(1)
    lb = subprocess.Popen([haproxy, "-db", "-f", str(tmp_path / "haproxy.cfg")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):  # until HAProxy listens
            try:
                socket.create_connection(("127.0.0.1", front), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        for i in range(4):
            source = f"127.0.0.{40 + i}"
            with socket.create_connection(("127.0.0.1", front), timeout=10,
                                          source_address=(source, 0)) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"balanced\n")
        seen = [m.group(1) for proc in procs for line in proc.lines
                if (m := re.search(r'(\S+) - - \[.*\] "GET / HTTP/1.1" 200', line))]
    finally:
        lb.terminate()
        lb.wait(10)
    assert sorted(seen) == [f"127.0.0.{40 + i}" for i in range(4)]  # both got requests
    assert all(any('"GET / HTTP/1.1" 200' in line for line in p.lines) for p in procs)
