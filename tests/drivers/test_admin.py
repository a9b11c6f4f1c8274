"""The admin endpoint: Prometheus metrics (parsed, and checked by promtool), status,
config with secrets redacted, reload, the servers' views over HTTP, tokens, and
`netkit ctl` over a socket or a URL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from dnslib import DNSRecord
from prometheus_client.parser import text_string_to_metric_families

from netkit.admin.endpoint import redacted
from tests.support.fixtures import free_port

TOKEN = "t0ken-for-tests"


def fetch(url: str, *, token: str | None = TOKEN, method: str = "GET",
          body: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, method=method, data=body)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def metric(text: bytes, name: str, server: str) -> float:
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("server") == server:
                return sample.value
    raise AssertionError(f"no {name} for {server}")


@pytest.fixture
def stack(spawn, tmp_path: Path):  # type: ignore[no-untyped-def]
    admin_port, dns_port = free_port(), free_port()
    conf = tmp_path / "stack.toml"
    conf.write_text(f"""[admin]
listen = "127.0.0.1:{admin_port}"
token = "{TOKEN}"
[dns]
listen = ["127.0.0.1:{dns_port}"]
recursion = false
[[dns.zone]]
name = "lab.test"
records = ["www.lab.test. 60 IN A 192.0.2.7"]
[relay]
[[relay.forward]]
name = "web"
listen = "127.0.0.1:0"
to = "127.0.0.1:9"
""")
    control = tmp_path / "ctl.sock"
    proc = spawn("netkit", ["run", "--config", str(conf), "--control", str(control)])
    proc.wait_for(rf"listening on 127\.0\.0\.1:{admin_port} ")
    return proc, f"http://127.0.0.1:{admin_port}", dns_port, conf, control


def test_metrics_follow_traffic_and_pass_promtool(stack, tmp_path: Path) -> None:
    _, url, dns_port, _, _ = stack
    status, before, headers = fetch(url + "/metrics")
    assert status == 200 and {k.lower(): v for k, v in headers.items()}["content-type"].startswith(
        "text/plain; version=")
    n = metric(before, "netkit_dns_datagrams_in_total", "dns")
    for _ in range(3):
        DNSRecord.question("www.lab.test").send("127.0.0.1", dns_port, timeout=2)
    DNSRecord.question("nothere.lab.test").send("127.0.0.1", dns_port, timeout=2)
    _, after, _ = fetch(url + "/metrics")
    assert metric(after, "netkit_dns_datagrams_in_total", "dns") == n + 4
    rcodes = {s.labels["rcode"]: s.value for f in text_string_to_metric_families(
        after.decode()) for s in f.samples if s.name == "netkit_dns_queries_total"}
    assert rcodes["NOERROR"] == 3 and rcodes["NXDOMAIN"] == 1 and rcodes["SERVFAIL"] == 0
    assert metric(after, "netkit_relay_flows", "relay") == 0  # a gauge
    assert metric(after, "netkit_server_up", "relay") == 1
    assert b"netkit_process_resident_memory_bytes" in after
    families = {f.name: f.type for f in text_string_to_metric_families(after.decode())}
    assert families["netkit_dns_datagrams_in"] == "counter"
    assert families["netkit_relay_flows"] == "gauge"
    assert families["netkit_dns_cache_rrsets"] == "gauge"
    assert families["netkit_dns_cache_hits"] == "counter"
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=after, capture_output=True,
                           timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr


def test_tokens_status_config_views_and_reload(stack) -> None:
    proc, url, _, conf, _ = stack
    assert fetch(url + "/status", token=None)[0] == 401
    assert fetch(url + "/status", token="wrong")[0] == 401
    status, body, _ = fetch(url + "/status")
    view = json.loads(body)
    assert status == 200 and set(view["servers"]) == {"dns", "relay"}
    assert view["config_file"] == str(conf) and view["last_reload"] is None
    _, body, _ = fetch(url + "/config")
    assert json.loads(body)["relay"]["forward"][0]["name"] == "web"
    status, body, _ = fetch(url + "/dns/cache?name=www.lab.test")
    assert status == 200 and "entries" in json.loads(body)
    status, body, _ = fetch(url + "/relay/rules")
    assert status == 200 and json.loads(body)[-1]["rule"] == "default"
    assert fetch(url + "/relay/faults")[0] == 405  # an action: POST only
    assert fetch(url + "/dns/flush")[0] == 405
    status, body, _ = fetch(url + "/dns/flush?name=www.lab.test", method="POST")
    assert status == 200 and json.loads(body) == {"rrsets_removed": 0, "answers_removed": 0}
    status, body, _ = fetch(url + "/relay/faults?forward=web&latency=0.5", method="POST")
    assert status == 200 and json.loads(body)["web"]["latency"] == 0.5
    # reload: a broken file answers the problems and keeps the running config
    good = conf.read_text()
    conf.write_text(good.replace("recursion = false", 'recursion = "maybe"'))
    status, body, _ = fetch(url + "/reload", method="POST")
    answer = json.loads(body)
    assert status == 409 and not answer["ok"]
    assert any("dns.recursion" in p for p in answer["problems"])
    conf.write_text(good)
    status, body, _ = fetch(url + "/reload", method="POST")
    assert status == 200 and json.loads(body) == {"ok": True, "problems": []}
    view = json.loads(fetch(url + "/status")[1])
    assert view["last_reload"]["ok"] is True
    assert proc.proc.poll() is None


def test_netkit_ctl_over_a_socket_and_a_url(stack) -> None:
    _, url, _, _, control = stack
    env = dict(os.environ, NETKIT_ADMIN_TOKEN=TOKEN)
    r = subprocess.run([sys.executable, "-m", "netkit", "ctl", "--url", url, "--server",
                        "relay", "rules"], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split()[:2] == ["rule", "action"]
    r = subprocess.run([sys.executable, "-m", "netkit", "ctl", "--url", url, "metrics"],
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0 and "netkit_server_up" in r.stdout
    r = subprocess.run([sys.executable, "-m", "netkit", "ctl", "--url", url, "status"],
                       capture_output=True, text=True, timeout=30,
                       env={k: v for k, v in env.items() if k != "NETKIT_ADMIN_TOKEN"})
    assert r.returncode == 1 and "NETKIT_ADMIN_TOKEN" in r.stderr
    r = subprocess.run([sys.executable, "-m", "netkit", "ctl", "--socket", str(control),
                        "metrics"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "netkit_dns_datagrams_in_total" in r.stdout
    assert oct(control.stat().st_mode & 0o777) == "0o600"  # the socket: its owner only


def test_a_listener_off_loopback_needs_a_token(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "netkit.servers.dns", "--check-config",
                        "--set", "admin.listen=0.0.0.0:9901"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "a token is required (admin.token)" in r.stderr
    r = subprocess.run([sys.executable, "-m", "netkit.servers.dns", "--check-config",
                        "--set", "admin.listen=0.0.0.0:9901", "--set", "admin.token=x"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_secrets_are_redacted() -> None:
    from dataclasses import dataclass

    @dataclass
    class Inner:
        password: str = "hunter2"
        user: str = "ann"

    @dataclass
    class Outer:
        token: str = "abc"
        inner: tuple[Inner, ...] = (Inner(),)
        path: Path = Path("/etc/x")

    assert redacted(Outer()) == {"token": "<redacted>", "path": "/etc/x",
                                 "inner": [{"password": "<redacted>", "user": "ann"}]}


def test_sighup_is_recorded_as_the_last_reload(stack) -> None:
    proc, url, _, _, _ = stack
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"reload")
    view = json.loads(fetch(url + "/status")[1])
    assert view["last_reload"] is not None and view["last_reload"]["ok"] is True


def test_connection_views_list_open_connections(tmp_path: Path) -> None:
    import socket

    from netkit.running import serve_in_thread
    from netkit.servers.http.server import connections_view

    (tmp_path / "index.html").write_text("hi\n")
    with serve_in_thread("http", {"http": {"root": str(tmp_path)}}) as server:
        port = server.addresses[0][1]
        with socket.create_connection(("127.0.0.1", port), timeout=5,
                                      source_address=("127.0.0.8", 0)) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            rows = server.call(lambda: connections_view(server.service, {}))
            (row,) = [r for r in rows if r["peer"].startswith("127.0.0.8:")]
            assert row["local"] == f"127.0.0.1:{port}" and row["bytes_in"] > 20
            assert row["bytes_out"] > 20 and row["tls"] == ""
            s.sendall(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 404")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"NOT HTTP AT ALL\r\n\r\n")  # a 400 before any request
            assert s.recv(4096).startswith(b"HTTP/1.1 400")
        codes = server.service.labelled()["responses"][1]
        assert codes["2xx"] == 1 and codes["4xx"] == 2 and codes["5xx"] == 0


def test_histograms_are_exported_as_prometheus_histograms() -> None:
    from types import SimpleNamespace

    from netkit.admin.metrics import render
    from netkit.histogram import Histogram

    h = Histogram()
    for v in (0.0004, 0.003, 0.003, 0.2, 9.0):
        h.observe(v)
    service = SimpleNamespace(counters=lambda: {"upstream_queries": 5},
                              histograms=lambda: {"upstream_latency_seconds": h})
    running = SimpleNamespace(spec=SimpleNamespace(name="dns", gauges=frozenset()),
                              service=service)
    text = render([running]).decode()
    (family,) = [f for f in text_string_to_metric_families(text)
                 if f.name == "netkit_dns_upstream_latency_seconds"]
    assert family.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert buckets["0.001"] == 1 and buckets["0.005"] == 3 and buckets["0.25"] == 4
    assert buckets["+Inf"] == 5
    total = next(s.value for s in family.samples if s.name.endswith("_sum"))
    assert abs(total - 9.2064) < 1e-9


def test_https_listener_and_the_smtp_queue_by_state(spawn, tmp_path: Path) -> None:
    import ssl

    from netkit import certs

    certs.issue(tmp_path / "certs", ["localhost", "127.0.0.1"])
    admin, smtp = free_port(), free_port()
    conf = tmp_path / "mail.toml"
    conf.write_text(f"""[admin]
listen = "127.0.0.1:{admin}"
token = "{TOKEN}"
[admin.tls]
cert = "{tmp_path / 'certs' / 'localhost.pem'}"
key = "{tmp_path / 'certs' / 'localhost-key.pem'}"
[smtp]
listen = ["127.0.0.1:{smtp}"]
queue_dir = "{tmp_path / 'queue'}"
maildir = "{tmp_path / 'mail'}"
resolver = ["127.0.0.1:9"]
retry_schedule = ["1h"]
""")
    proc = spawn("netkit", ["run", "--config", str(conf), "--control", "none"])
    proc.wait_for(rf"listening on 127\.0\.0\.1:{admin} \(tcp, tls")
    import smtplib
    with smtplib.SMTP("127.0.0.1", smtp, timeout=10) as client:
        client.sendmail("a@b.test", ["x@far.test", "y@far.test"], b"Subject: q\r\n\r\nhi\r\n")
    proc.wait_for(r"deferred")
    ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "ca.pem"))
    req = urllib.request.Request(f"https://127.0.0.1:{admin}/metrics",
                                 headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
        text = r.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    queue = families["netkit_smtp_queue_recipients"]
    assert queue.type == "gauge"
    by_state = {s.labels["state"]: s.value for s in queue.samples}
    assert by_state == {"pending": 2, "delivered": 0, "bounced": 0}
    with pytest.raises(OSError):  # plain HTTP is not spoken there (URLError is one too)
        urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5)


def test_tls_tunnels_are_labelled_metrics(netkit_tls, netkit_ca, tmp_path: Path) -> None:
    """Each tunnel of the TLS wrapper by name: connections open now (a gauge), accepted
    and TLS failures (counters), in the exposition text."""
    import socket
    import ssl

    from netkit.admin.metrics import render

    backend = socket.create_server(("127.0.0.1", 0))
    try:
        front = netkit_tls(f"127.0.0.1:{backend.getsockname()[1]}", "localhost",
                           name="web")
        port = front.addresses[0][1]
        ctx = ssl.create_default_context(cafile=str(netkit_ca.ca_file))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as bad:
                bad.sendall(b"not a TLS hello\r\n\r\n")
                bad.recv(100)
            metrics = front.call(lambda: render([front]))
    finally:
        backend.close()
    families = {f.name: f for f in text_string_to_metric_families(metrics.decode())}
    open_now = families["netkit_tls_tunnel_connections"]
    assert open_now.type == "gauge"
    assert {s.labels["tunnel"]: s.value for s in open_now.samples} == {"web": 1}
    accepted = families["netkit_tls_tunnel_accepted"]
    assert {s.labels["tunnel"]: s.value for s in accepted.samples} == {"web": 2}
    failures = families["netkit_tls_tunnel_tls_failures"]
    assert {s.labels["tunnel"]: s.value for s in failures.samples} == {"web": 1}
