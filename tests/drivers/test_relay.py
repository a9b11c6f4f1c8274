"""The NAT/firewall relay on loopback: forwards (TCP byte-exact with half-close, UDP
flows back to the right client), the firewall from different 127.0.0.x sources, the
connection table's limits and expiry, faults, routes, and the config's errors."""

from __future__ import annotations

import hashlib
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from netkit.running import serve_in_thread
from netkit.servers.relay.service import faults_view, rules_view, table_view
from tests.peers.test_sshfwd import push_through

MIB = 1 << 20
BULK_MIB = int(os.environ.get("NETKIT_RELAY_TEST_MIB", "32"))


class UDPEcho:
    """Answers each datagram with b"echo:" + it (or just it, `plain`)."""

    def __init__(self, plain: bool = False) -> None:
        prefix = b"" if plain else b"echo:"

        class H(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                sock.sendto(prefix + data, self.client_address)

        self.server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), H)
        self.server.max_packet_size = 65536
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def udp_echo() -> Iterator[UDPEcho]:
    echo = UDPEcho()
    yield echo
    echo.close()


def relay(*forwards: dict[str, Any], **section: Any) -> Any:
    return serve_in_thread("relay", {"relay": {"forward": list(forwards), **section}})


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5,
                                    source_address=(source, 0))


def reset_by_relay(port: int, source: str = "127.0.0.1") -> bool:
    """The relay answers this client with an RST (at connect, send or receive)."""
    try:
        with connect(port, source) as s:
            time.sleep(0.2)
            s.sendall(b"x")
            return s.recv(10) == b"" and False
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_tcp_is_relayed_byte_identical_with_half_close(make_backend) -> None:
    backend = make_backend("echo")
    with relay({"listen": "127.0.0.1:0", "to": backend.address}) as r:
        port = r.addresses[0][1]
        data = os.urandom(BULK_MIB * MIB)
        got = push_through(port, data)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data + b"[eof]").digest()
        assert r.counters["flows"] == 0  # the flow left the table with its connection


def test_a_target_that_never_answers_is_given_up_after_connect_timeout(caplog) -> None:
    """The target's accept queue is full, so its SYNs go unanswered: the client gets an
    RST once `connect_timeout` has passed, the flow leaves the table, and the relay
    goes on relaying."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fillers = [socket.socket() for _ in range(2)]
        for f in fillers:
            f.setblocking(False)
            f.connect_ex(full.getsockname())
        time.sleep(0.1)
        try:
            with relay({"listen": "127.0.0.1:0", "to": f"127.0.0.1:{full.getsockname()[1]}",
                        "connect_timeout": 0.5}) as r:
                t0 = time.monotonic()
                assert reset_by_relay(r.addresses[0][1])
                assert 0.4 < time.monotonic() - t0 < 3
                assert r.counters["flows"] == 0
        finally:
            for f in fillers:
                f.close()
    assert "no answer in 0.5 s" in caplog.text


def test_rules_allow_deny_and_reject_by_source(make_backend) -> None:
    backend = make_backend("echo")
    rules = [{"action": "deny", "src": ["127.0.0.2/32"]},
             {"action": "reject", "src": ["127.0.0.3/32"], "proto": "tcp"},
             {"action": "allow", "src": ["127.0.0.0/8"], "dport": "1-65535"}]
    with relay({"listen": "127.0.0.1:0", "to": backend.address}, rule=rules) as r:
        port = r.addresses[0][1]
        with connect(port, "127.0.0.1") as s:
            s.sendall(b"hello")
            assert s.recv(5) == b"hello"
        with connect(port, "127.0.0.2") as s:  # deny: closed without a byte
            s.sendall(b"x")
            assert s.recv(10) == b""
        assert reset_by_relay(port, "127.0.0.3")  # reject: RST
        view = r.call(lambda: rules_view(r.service, {}))
        assert [row["hits"] for row in view] == [1, 1, 1, 0]
        assert r.counters["denied"] == 1 and r.counters["rejected"] == 1


def test_with_no_rules_private_sources_pass_and_the_default_policy_applies_after_rules(
        make_backend) -> None:
    backend = make_backend("echo")
    with relay({"listen": "127.0.0.1:0", "to": backend.address}) as r, \
            connect(r.addresses[0][1], "127.0.0.9") as s:
        s.sendall(b"ok")
        assert s.recv(2) == b"ok"
    with relay({"listen": "127.0.0.1:0", "to": backend.address},
               rule=[{"action": "allow", "src": ["127.0.0.1/32"]}],
               default_policy="reject") as r:
        assert reset_by_relay(r.addresses[0][1], "127.0.0.9")


def test_udp_replies_return_to_the_right_client_of_many(udp_echo) -> None:
    with relay({"proto": "udp", "listen": "127.0.0.1:0",
                "to": f"127.0.0.1:{udp_echo.port}"}) as r:
        port = r.addresses[0][1]
        clients = []
        for i in range(20):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.0.{1 + i % 4}", 0))
            s.settimeout(3)
            clients.append(s)
        for round_ in range(3):
            for i, s in enumerate(clients):
                s.sendto(f"client {i} round {round_}".encode(), ("127.0.0.1", port))
            for i, s in enumerate(clients):
                assert s.recvfrom(100)[0] == f"echo:client {i} round {round_}".encode()
        big = os.urandom(65000)  # never truncated
        clients[0].sendto(big, ("127.0.0.1", port))
        assert clients[0].recvfrom(70000)[0] == b"echo:" + big
        table = r.call(lambda: table_view(r.service, {}))
        assert len(table) == 20 and all(row["proto"] == "udp" for row in table)
        assert {row["state"] for row in table} == {"established"}
        for s in clients:
            s.close()


def test_udp_flows_expire_when_idle(udp_echo) -> None:
    with relay({"proto": "udp", "listen": "127.0.0.1:0",
                "to": f"127.0.0.1:{udp_echo.port}"}, udp_idle_timeout=0.5) as r, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(b"hi", ("127.0.0.1", r.addresses[0][1]))
        assert s.recvfrom(10)[0] == b"echo:hi"
        assert r.counters["flows"] == 1
        time.sleep(1.5)
        assert r.counters["flows"] == 0 and r.counters["udp_expired"] == 1
        s.sendto(b"again", ("127.0.0.1", r.addresses[0][1]))  # a new flow
        assert s.recvfrom(20)[0] == b"echo:again"


def test_table_limits_hold_under_a_flood_of_new_flows(make_backend, udp_echo) -> None:
    backend = make_backend("echo")
    with relay({"listen": "127.0.0.1:0", "to": backend.address},
               {"proto": "udp", "listen": "127.0.0.1:0", "to": f"127.0.0.1:{udp_echo.port}"},
               max_entries=40, max_per_source=10) as r:
        tcp_port, udp_port = (a[1] for a in r.addresses)
        held = [connect(tcp_port, "127.0.0.5") for _ in range(10)]
        time.sleep(0.3)
        for s in held:
            s.sendall(b"x")
            assert s.recv(1) == b"x"
        for _ in range(5):  # over the per-source limit: RST
            assert reset_by_relay(tcp_port, "127.0.0.5")
        flood = []
        for i in range(200):  # new UDP flows from many sources and ports
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((f"127.0.1.{i % 50 + 1}", 0))
            s.sendto(b"f", ("127.0.0.1", udp_port))
            flood.append(s)
        time.sleep(0.5)
        assert r.counters["flows"] <= 40
        assert r.counters["refused_table_full"] + r.counters["refused_per_source"] >= 170
        for s in held + flood:
            s.close()


def test_faults_latency_reset_blackhole_and_loss(make_backend, udp_echo) -> None:
    backend = make_backend("echo")
    with relay({"name": "slow", "listen": "127.0.0.1:0", "to": backend.address,
                "faults": {"latency": 0.15}},
               {"name": "lossy", "proto": "udp", "listen": "127.0.0.1:0",
                "to": f"127.0.0.1:{udp_echo.port}", "faults": {"loss": 1.0}}) as r:
        tcp_port, udp_port = (a[1] for a in r.addresses)
        with connect(tcp_port) as s:
            t0 = time.monotonic()
            s.sendall(b"ping")
            assert s.recv(4) == b"ping"
            took = time.monotonic() - t0
        assert 0.3 <= took < 1.0, took  # 0.15 s each way
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(0.5)
            u.sendto(b"lost", ("127.0.0.1", udp_port))
            with pytest.raises(TimeoutError):
                u.recvfrom(10)
            r.call(lambda: faults_view(r.service, {"forward": "lossy", "loss": "0"}))
            u.sendto(b"found", ("127.0.0.1", udp_port))
            assert u.recvfrom(20)[0] == b"echo:found"
        r.call(lambda: faults_view(r.service, {"forward": "slow", "latency": "0",
                                               "reset_after": "10000"}))
        with connect(tcp_port) as s:
            got = 0
            with pytest.raises(ConnectionResetError):
                for _ in range(100):
                    s.sendall(b"y" * 1000)
                    got += len(s.recv(4096))
            assert 3000 <= got <= 12000  # reset once about 10,000 bytes had passed
        r.call(lambda: faults_view(r.service, {"forward": "slow", "reset_after": "0",
                                               "blackhole": "true"}))
        with connect(tcp_port) as s:
            s.settimeout(0.5)
            s.sendall(b"anyone?")
            with pytest.raises(TimeoutError):
                s.recv(10)
        assert backend.connections == 2  # the blackholed one never reached it


def test_netkit_link_changes_faults_at_run_time(netkit_link, make_backend) -> None:
    backend = make_backend("echo")
    link = netkit_link(("127.0.0.1", backend.port), latency=0.2)
    with connect(link.port) as s:
        t0 = time.monotonic()
        s.sendall(b"a")
        assert s.recv(1) == b"a" and time.monotonic() - t0 >= 0.4
    assert link.set(latency=0)["latency"] == 0
    with connect(link.port) as s:
        t0 = time.monotonic()
        s.sendall(b"b")
        assert s.recv(1) == b"b" and time.monotonic() - t0 < 0.2


def test_round_robin_first_healthy_and_the_proxy_header(make_backend) -> None:
    a, b = make_backend("echo"), make_backend("echo")
    with relay({"listen": "127.0.0.1:0", "to": [a.address, b.address],
                "send_proxy": "v2"}) as r:
        for _ in range(4):
            with connect(r.addresses[0][1], "127.0.0.7") as s:
                s.sendall(b"z")
                s.recv(64)
        # (the health checks connect too, and send nothing)
        signature = b"\r\n\r\n\x00\r\nQUIT\n"
        assert [sum(f.startswith(signature) for f in x.first) for x in (a, b)] == [2, 2]
        assert all(f.startswith(signature) or f == b"" for f in a.first + b.first)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    with relay({"listen": "127.0.0.1:0", "to": [f"127.0.0.1:{dead_port}", a.address],
                "balance": "first-healthy", "health_interval": 0.2}) as r:
        time.sleep(0.6)  # the check has found the first one down
        with connect(r.addresses[0][1]) as s:
            s.sendall(b"q")
            assert s.recv(1) == b"q"
        assert r.status()["targets"]["tcp/127.0.0.1:0"][f"127.0.0.1:{dead_port}"] is False


@pytest.mark.parametrize("key,value,message", [
    ("relay.rule", '[{action = "allow", dport = "90-80"}]', "relay.rule[0].dport"),
    ("relay.rule", '[{action = "allow", src = ["10.0.0.0/33"]}]', "relay.rule[0].src[0]"),
    ("relay.rule", '[{action = "maybe"}]', "relay.rule[0].action"),
    ("relay.route", '[{dst = "10.0.0.0/8", via = "::1"}]', "relay.route[0]"),
])
def test_rules_that_cannot_parse_are_errors_naming_the_rule(key: str, value: str,
                                                            message: str) -> None:
    r = subprocess.run([sys.executable, "-m", "netkit.servers.relay", "--check-config",
                        "--set", 'relay.forward=[{listen = "127.0.0.1:0", to = "127.0.0.1:9"}]',
                        "--set", f"{key}={value}"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_route_get_and_the_source_address_of_outbound_flows(make_backend, tmp_path) -> None:
    backend = make_backend("echo")
    conf = tmp_path / "relay.toml"
    conf.write_text(f"""[relay]
[[relay.forward]]
listen = "127.0.0.1:0"
to = "{backend.address}"
[[relay.route]]
dst = "127.0.0.0/8"
via = "127.0.0.20"
[[relay.route]]
dst = "127.0.0.1/32"
via = "127.0.0.30"
""")
    out = subprocess.run([sys.executable, "-m", "netkit.servers.relay", "route-get",
                          "127.0.0.1", "--config", str(conf)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == \
        "127.0.0.1 via 127.0.0.30 (route 127.0.0.1/32)"
    out = subprocess.run([sys.executable, "-m", "netkit.servers.relay", "route-get",
                          "10.1.1.1", "--config", str(conf)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 1 and "no route" in out.stdout
    with serve_in_thread("relay", conf.read_text()) as r, connect(r.addresses[0][1]) as s:
        s.sendall(b"w")
        assert s.recv(1) == b"w"
        table = r.call(lambda: table_view(r.service, {}))
        assert table[0]["outside"].startswith("127.0.0.30:")  # the longest prefix


def test_workers_are_refused_and_nothing_configured_refuses_to_start() -> None:
    r = subprocess.run([sys.executable, "-m", "netkit.servers.relay"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "nothing to forward" in r.stderr
    r = subprocess.run([sys.executable, "-m", "netkit.servers.relay", "--workers", "2",
                        "--set", 'relay.forward=[{listen = "127.0.0.1:0", to = "127.0.0.1:9"}]'],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "one connection table per relay" in r.stderr


def test_sighup_changes_rules_and_a_broken_rule_keeps_the_old(spawn, tmp_path,
                                                              make_backend) -> None:
    import signal

    backend = make_backend("echo")
    conf = tmp_path / "relay.toml"
    base = f"""[relay]
[[relay.forward]]
listen = "127.0.0.1:0"
to = "{backend.address}"
"""
    conf.write_text(base)
    proc = spawn("netkit.servers.relay", ["--config", str(conf)])
    ((_, port),) = proc.listening(1)
    with connect(port, "127.0.0.4") as s:
        s.sendall(b"1")
        assert s.recv(1) == b"1"
    conf.write_text(base + '[[relay.rule]]\naction = "reject"\nsrc = ["127.0.0.4/32"]\n')
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"reload")
    time.sleep(0.3)
    assert reset_by_relay(port, "127.0.0.4")
    conf.write_text(base + '[[relay.rule]]\naction = "allow"\ndport = "9-1"\n')
    start = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"relay\.rule\[0\]\.dport", start=start)
    assert reset_by_relay(port, "127.0.0.4")  # the old rules still hold
    assert proc.proc.poll() is None and "Traceback" not in proc.log


def test_netkit_ctl_prints_the_table_and_the_rules(spawn, tmp_path, make_backend) -> None:
    backend = make_backend("echo")
    control = tmp_path / "ctl.sock"
    proc = spawn("netkit.servers.relay", [
        "--control", str(control), "--set",
        f'relay.forward=[{{name = "web", listen = "127.0.0.1:0", to = "{backend.address}"}}]',
        "--set", 'relay.rule=[{action = "allow", src = ["127.0.0.0/8"], dport = "1-65535"}]'])
    ((_, port),) = proc.listening(1)
    with connect(port, "127.0.0.6") as s:
        s.sendall(b"abc")
        assert s.recv(3) == b"abc"
        r = subprocess.run([sys.executable, "-m", "netkit", "ctl", "--socket", str(control),
                            "table"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    head, row = r.stdout.splitlines()
    assert head.split() == ["proto", "inside", "outside", "target", "state", "idle",
                            "bytes_in", "bytes_out", "forward"]
    cells = row.split()
    assert cells[0] == "tcp" and cells[1].startswith("127.0.0.6:")
    assert cells[3] == backend.address and cells[4] == "established"
    assert cells[6:9] == ["3", "3", "web"]
    r = subprocess.run([sys.executable, "-m", "netkit", "ctl", "--socket", str(control),
                        "rules"], capture_output=True, text=True, timeout=30)
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["rule", "action"] and lines[1].split()[:2] == ["0", "allow"]
    assert "default" in lines[2]


def test_a_bandwidth_limit_paces_a_transfer(make_backend) -> None:
    backend = make_backend("sink")
    with relay({"listen": "127.0.0.1:0", "to": backend.address,
                "faults": {"bandwidth": 100_000}}) as r, connect(r.addresses[0][1]) as s:
        t0 = time.monotonic()
        s.sendall(b"b" * 200_000)
        s.shutdown(socket.SHUT_WR)
        s.recv(10)  # the sink closes at EOF, which comes after the last paced byte
        took = time.monotonic() - t0
        deadline = time.monotonic() + 5
        while backend.received < 200_000 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert backend.received == 200_000
    assert 1.5 <= took < 5, took  # 200 kB at 100 kB/s, less the first 10 kB burst
