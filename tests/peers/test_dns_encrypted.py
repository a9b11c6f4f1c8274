"""DNS over TLS (RFC 7858) and over HTTPS (RFC 8484) on the resolver: dig +tls and curl
against our listeners (the local NSD hierarchy behind), our client's +tls and +https,
pipelining with answers out of order, bad requests, idle timeouts, certificate reload."""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time

import pytest
from dnslib import DNSRecord

from netkit.clients import dns
from netkit.running import serve_in_thread

pytestmark = pytest.mark.peer


@pytest.fixture
def resolver(hierarchy, netkit_ca):  # type: ignore[no-untyped-def]
    cert, key = netkit_ca.issue("dns.test", "127.0.0.1")
    with serve_in_thread("dns", {"dns": {
            "root_hints": str(hierarchy.root_hints), "query_private_authorities": True,
            "server_timeout": 0.3, "total_timeout": 1.5, "tls_listen": ["127.0.0.1:0"],
            "https_listen": ["127.0.0.1:0"],
            "tls": {"cert": str(cert), "key": str(key)},
            "tcp": {"idle_timeout": "2s"}}}) as server:
        yield server


def where(addresses) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    a = addresses[0]
    return a.host, a.port


def test_dig_over_tls(resolver, netkit_ca) -> None:  # type: ignore[no-untyped-def]
    host, port = where(resolver.service.tls_addresses)
    out = subprocess.run(["dig", "+tls", f"+tls-ca={netkit_ca.ca_file}",
                          "+tls-hostname=dns.test", f"@{host}", "-p", str(port),
                          "www.example.com", "A", "+short"],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout.split() == ["192.0.2.10"], out.stdout + out.stderr
    bad = subprocess.run(["dig", "+tls", f"+tls-ca={netkit_ca.ca_file}",
                          "+tls-hostname=other.test", f"@{host}", "-p", str(port),
                          "www.example.com", "+tries=1"],
                         capture_output=True, text=True, timeout=20)
    assert "192.0.2.10" not in bad.stdout  # a name the certificate does not carry


def test_our_client_over_tls_and_https(resolver, netkit_ca) -> None:  # type: ignore[no-untyped-def]
    host, port = where(resolver.service.tls_addresses)
    answer = dns.lookup_sync("www.example.org", "A", server=f"{host}:{port}", tls=True,
                             verify=str(netkit_ca.ca_file))
    assert answer.transport == "TLS" and [r.data for r in answer.records] == ["192.0.2.20"]
    host, port = where(resolver.service.https_addresses)
    answer = dns.lookup_sync("www.example.org", "A", server=f"{host}:{port}", https=True,
                             verify=str(netkit_ca.ca_file))
    assert answer.transport == "HTTPS" and [r.data for r in answer.records] == ["192.0.2.20"]
    with pytest.raises(Exception, match=r"certificate|verify"):  # no trust, no answer
        dns.lookup_sync("www.example.org", "A", server=f"{host}:{port}", https=True,
                        attempts=1)
    cli = subprocess.run([sys.executable, "-m", "netkit.clients.dns", f"@{host}", "-p",
                          str(port), "+https", f"+tls-ca={netkit_ca.ca_file}",
                          "www.example.org"], capture_output=True, text=True, timeout=30)
    assert "192.0.2.20" in cli.stdout and "(HTTPS)" in cli.stdout, cli.stdout + cli.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_curl_posts_and_gets_a_dns_message(resolver, netkit_ca) -> None:  # type: ignore[no-untyped-def]
    host, port = where(resolver.service.https_addresses)
    url = f"https://dns.test:{port}/dns-query"
    resolve = f"dns.test:{port}:{host}"
    query = DNSRecord.question("www.example.com", "A")
    query.header.id = 0  # RFC 8484 4.1: 0 makes the GET cache friendly
    out = subprocess.run(["curl", "-sS", "--cacert", str(netkit_ca.ca_file), "--resolve",
                          resolve, "-H", "content-type: application/dns-message",
                          "--data-binary", "@-", "-D", "/dev/stderr", url],
                         input=query.pack(), capture_output=True, timeout=20)
    head = out.stderr.decode()
    assert " 200" in head.splitlines()[0], head
    assert "content-type: application/dns-message" in head.lower()
    reply = DNSRecord.parse(out.stdout)
    assert str(reply.a.rdata) == "192.0.2.10"
    max_age = int(head.lower().split("cache-control: max-age=")[1].split()[0])
    assert 0 < max_age <= reply.a.ttl
    encoded = base64.urlsafe_b64encode(query.pack()).rstrip(b"=").decode()
    got = subprocess.run(["curl", "-sS", "--cacert", str(netkit_ca.ca_file), "--resolve",
                          resolve, f"{url}?dns={encoded}"], capture_output=True, timeout=20)
    assert str(DNSRecord.parse(got.stdout).a.rdata) == "192.0.2.10"

    def status(*args: str) -> str:
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                            "--cacert", str(netkit_ca.ca_file), "--resolve", resolve, *args],
                           capture_output=True, text=True, timeout=20)
        return r.stdout
    assert status(f"{url}?dns=!!!") == "400"  # not base64url
    assert status(f"{url}?dns=AAAA") == "400"  # too short for a DNS header
    assert status(f"https://dns.test:{port}/other") == "404"
    assert status("-X", "PUT", url) == "405"
    assert status("-H", "content-type: text/plain", "--data-binary", "x", url) == "415"
    assert resolver.counters["doh_bad_requests"] >= 2


def _tls_socket(resolver, netkit_ca) -> ssl.SSLSocket:  # type: ignore[no-untyped-def]
    host, port = where(resolver.service.tls_addresses)
    ctx = ssl.create_default_context(cafile=str(netkit_ca.ca_file))
    ctx.set_alpn_protocols(["dot"])
    raw = socket.create_connection((host, port), timeout=5)
    sock = ctx.wrap_socket(raw, server_hostname="dns.test")
    assert sock.selected_alpn_protocol() == "dot"
    return sock


def _read(sock: ssl.SSLSocket) -> DNSRecord:
    size = struct.unpack("!H", _exactly(sock, 2))[0]
    return DNSRecord.parse(_exactly(sock, size))


def _exactly(sock: ssl.SSLSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def test_pipelined_queries_over_tls_are_all_answered(resolver, netkit_ca) -> None:  # type: ignore[no-untyped-def]
    with _tls_socket(resolver, netkit_ca) as sock:
        names = ["www.example.com", "www.example.org", "nope.example.com", "example.com"]
        wire = b""
        for i, name in enumerate(names):
            q = DNSRecord.question(name, "A")
            q.header.id = 100 + i
            wire += struct.pack("!H", len(q.pack())) + q.pack()
        sock.sendall(wire)  # all at once: RFC 7766 pipelining
        replies = {r.header.id: r for r in (_read(sock) for _ in names)}
        assert set(replies) == {100, 101, 102, 103}
        assert str(replies[100].a.rdata) == "192.0.2.10"
        assert replies[102].header.rcode == 3  # NXDOMAIN
        # out of order (RFC 7766 6.2.1.1): a slow question first, a cached one after it;
        # the cached answer comes first
        slow, fast = DNSRecord.question("www.dead.com", "A"), \
            DNSRecord.question("www.example.com", "A")
        slow.header.id, fast.header.id = 200, 201
        sock.sendall(b"".join(struct.pack("!H", len(q.pack())) + q.pack()
                              for q in (slow, fast)))
        first, second = _read(sock), _read(sock)
        assert (first.header.id, second.header.id) == (201, 200)
        assert second.header.rcode == 2  # the dead server's name: SERVFAIL, later
        # idle: the server closes after tcp.idle_timeout (2 s here)
        t0 = time.monotonic()
        sock.settimeout(10)
        assert sock.recv(1) == b""
        assert 1.5 < time.monotonic() - t0 < 8


def test_a_tls_listener_without_a_certificate_is_a_config_error() -> None:
    out = subprocess.run([sys.executable, "-m", "netkit.servers.dns", "--check-config",
                          "--set", 'dns.tls_listen=["127.0.0.1:8853"]'],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "tls_listen and https_listen need [dns.tls]" in out.stderr


def test_a_reload_with_a_missing_certificate_keeps_dot_serving(resolver, netkit_ca, hierarchy,  # type: ignore[no-untyped-def]
                                                               tmp_path) -> None:
    config = {"dns": {"root_hints": str(hierarchy.root_hints),
                      "query_private_authorities": True,
                      "server_timeout": 0.3, "total_timeout": 1.5,
                      "tls_listen": ["127.0.0.1:0"], "https_listen": ["127.0.0.1:0"],
                      "tls": {"cert": str(tmp_path / "gone.pem"),
                              "key": str(tmp_path / "gone.key")}}}
    with pytest.raises(Exception, match="file not found"):
        resolver.reload(config)
    with _tls_socket(resolver, netkit_ca) as sock:
        q = DNSRecord.question("www.example.com", "A")
        sock.sendall(struct.pack("!H", len(q.pack())) + q.pack())
        assert str(_read(sock).a.rdata) == "192.0.2.10"
