"""The benchmarks run end to end on a tiny load, so they cannot rot unnoticed.

Speed is never asserted here (that is bench/'s job, by hand, on a quiet machine);
only that each benchmark runs both servers and prints its result lines.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.fixtures import ROOT, need

LINE = re.compile(r"^(\S+) ours/peer = (\d+\.\d\d) \(ours [\d,.]+ \S+, peer [\d,.]+ \S+\)$")


def run(*argv: str) -> dict[str, float]:
    r = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=180,
                       cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    found = {m.group(1): float(m.group(2)) for m in map(LINE.match, r.stdout.splitlines()) if m}
    assert found and all(v > 0 for v in found.values()), r.stdout
    return found


def test_tls_bench_runs():
    need("stunnel4")
    need("openssl")
    names = run("bench/tls.py", "--mib", "8", "--seconds", "1", "--rounds", "1")
    assert set(names) == {f"tls-{n}{s}" for n in ("bulk-up", "bulk-down", "handshakes")
                          for s in ("", "-per-cpu")} | {
        "tls-memory-per-idle-connection", "tls-memory-per-half-open-connection"}


def test_transport_bench_runs():
    need("wrk")
    assert set(run("bench/transport.py", "--seconds", "1", "--rounds", "1")) == {
        "transport-rr", "transport-rr-per-cpu"}


def test_dns_bench_runs(hierarchy, tmp_path):
    # the full benchmark takes minutes: this test only checks that its pieces are installed
    # and that its dnsperf parsing works on a short run against our resolver on the
    # session's hierarchy
    import importlib.util

    need("dnsperf")
    need("unbound")
    spec = importlib.util.spec_from_file_location("bench_dns", ROOT / "bench" / "dns.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "bench"))
    spec.loader.exec_module(bench)
    port = bench.free_port()
    proc = subprocess.Popen(bench.ours_argv(port, hierarchy.root_hints),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench.wait_dns(port)
        queries = tmp_path / "queries.txt"
        queries.write_text("www.example.com A\nwww.example.org A\n")
        qps, run = bench.dnsperf(port, queries, seconds=1)
        assert qps > 0 and run > 0
    finally:
        proc.terminate()
        proc.wait(10)


def test_http_bench_runs():
    need("wrk")
    need("nginx")
    names = run("bench/http_server.py", "--seconds", "1", "--rounds", "1")
    assert set(names) == {"http-asgi-vs-uvicorn", "http-asgi-vs-uvicorn-per-cpu",
                          "http-native-vs-uvicorn", "http-native-vs-aiohttp",
                          "http-asgi-browser-heads-vs-uvicorn", "http-static-1mib-vs-nginx"}


def test_http_client_bench_runs():
    need("nginx")
    assert set(run("bench/http_client.py", "--seconds", "0.3", "--rounds", "1")) == {
        "http-client-c1-vs-httpx", "http-client-c1-vs-aiohttp", "http-client-c10-vs-httpx",
        "http-client-c10-vs-aiohttp", "http-client-sync-vs-requests"}


def test_testing_start_bench_runs():
    assert set(run("bench/testing_start.py", "--runs", "3", "--cold", "1")) == {
        "testing-start-http", "testing-start-dns-vs-httpserver",
        "testing-start-dns-async-vs-httpserver", "testing-start-http-cold",
        "testing-start-dns-cold-vs-httpserver"}


def test_proxy_bench_runs():
    for program in ("wrk", "nginx", "tinyproxy"):
        need(program)
    assert set(run("bench/proxy.py", "--seconds", "1", "--rounds", "1", "--mib", "16")) == {
        "proxy-vs-tinyproxy", "proxy-p99-vs-tinyproxy",
        "proxy-connect-vs-splice-relay"}


def test_ssh_bench_runs():
    for program in ("ssh", "ssh-keygen", "/usr/sbin/sshd"):
        need(program)
    assert set(run("bench/ssh.py", "--mib", "8", "--rounds", "1")) == {
        "ssh-L-aes128-gcm", "ssh-L-chacha20", "ssh-setup-time"}


def test_smtp_bench_runs():
    for program in ("smtp-source", "smtp-sink", "postfix"):
        need(program)
    assert set(run("bench/smtp.py", "--messages", "50", "--rounds", "1")) == {
        "smtp-accepted-vs-aiosmtpd", "smtp-accepted-vs-postfix", "smtp-delivered-vs-postfix",
        "smtp-cpu-per-message-vs-aiosmtpd"}


def test_dhcp_bench_runs():
    for program in ("perfdhcp", "kea-dhcp4", "ip"):
        need(program)
    assert set(run("bench/dhcp.py", "--clients", "200", "--rounds", "1", "--rate", "500",
                   "--seconds", "1")) == {"dhcp-avalanche", "dhcp-rate"}


def test_relay_bench_runs():
    for program in ("socat", "rinetd", "wrk", "nginx", "dnsperf", "nsd"):
        need(program)
    assert set(run("bench/relay.py", "--mib", "16", "--seconds", "1", "--rounds", "1")) == {
        "relay-tcp-bulk-vs-socat", "relay-connections-vs-socat",
        "relay-connections-vs-rinetd", "relay-connections-bare-uvloop-vs-rinetd",
        "relay-udp-vs-socat"}


def test_relay_packets_bench_runs():
    for program in ("iperf3", "nft", "ip"):
        need(program)
    assert set(run("bench/relay_packets.py", "--seconds", "1", "--rounds", "1")) == {
        "relay-packet-tcp-vs-nftables", "relay-packet-udp-vs-nftables"}
