"""A reload (SIGHUP) never exits: whatever fails keeps the old config and says why."""

from __future__ import annotations

import signal
import socket
import time

from tests.support.fixtures import free_port, http_get


def get(port: int) -> bytes:
    return http_get(port)


def test_sighup_with_a_non_utf8_file_or_a_broken_app_keeps_serving(spawn, tmp_path,
                                                                   monkeypatch):
    app = tmp_path / "reloadapp.py"
    app.write_text("from tests.support.apps import native as handler\n")
    conf = tmp_path / "http.toml"
    good = '[http]\nlisten = ["127.0.0.1:0"]\napp = "reloadapp:handler"\napp_type = "native"\n'
    conf.write_text(good)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the apps live there
    proc = spawn("netkit.servers.http", ["--config", str(conf)])
    ((_, port),) = proc.listening(1)
    assert get(port).endswith(b"native hello\n")

    conf.write_bytes(good.encode() + b"# caf\xe9\n")
    start = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"reload failed, keeping the running configuration", start=start)
    proc.wait_for(r"not UTF-8", start=start)
    assert proc.proc.poll() is None and get(port).endswith(b"native hello\n")

    conf.write_text(good.replace("reloadapp:handler", "brokenapp:handler"))
    (tmp_path / "brokenapp.py").write_text("def handler(:\n")  # a SyntaxError
    start = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"cannot load 'brokenapp:handler': SyntaxError", start=start)
    time.sleep(0.2)
    assert proc.proc.poll() is None and get(port).endswith(b"native hello\n")
    assert proc.stop() == 0



def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sighup_applies_new_listen_addresses_and_keeps_old_ones_on_a_bind_failure(
        spawn, tmp_path):
    (tmp_path / "index.html").write_text("hi\n")
    a, b = free_port(), free_port()
    conf = tmp_path / "http.toml"
    conf.write_text(f'[http]\nlisten = ["127.0.0.1:{a}"]\nroot = "{tmp_path}"\n')
    proc = spawn("netkit.servers.http", ["--config", str(conf)])
    proc.listening(1)
    held = socket.create_connection(("127.0.0.1", a), timeout=5)  # an open connection
    conf.write_text(f'[http]\nlisten = ["127.0.0.1:{b}"]\nroot = "{tmp_path}"\n')
    proc.signal(signal.SIGHUP)
    proc.wait_for(rf"stopped listening on 127\.0\.0\.1:{a}")
    proc.wait_for(rf"listening on 127\.0\.0\.1:{b}")
    assert get(b).endswith(b"hi\n") and refused(a)
    held.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert held.recv(65536).startswith(b"HTTP/1.1 200")  # kept across the change
    held.close()
    # a port that cannot be bound: the reload fails as a whole, the old port stays
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        conf.write_text(f'[http]\nlisten = ["127.0.0.1:{busy}"]\nroot = "{tmp_path}"\n')
        start = len(proc.lines)
        proc.signal(signal.SIGHUP)
        proc.wait_for(rf"http.listen: cannot listen on 127\.0\.0\.1:{busy}", start=start)
    assert get(b).endswith(b"hi\n")
    assert proc.stop() == 0


def test_dns_listen_change_applies_to_udp_and_tcp(spawn, tmp_path):
    from dnslib import DNSRecord

    old, new = free_port(), free_port()
    conf = tmp_path / "dns.toml"
    conf.write_text(f'[dns]\nlisten = ["127.0.0.1:{old}"]\n')
    proc = spawn("netkit.servers.dns", ["--config", str(conf)])
    proc.listening(2)
    conf.write_text(f'[dns]\nlisten = ["127.0.0.1:{new}"]\n')
    proc.signal(signal.SIGHUP)
    proc.wait_for(rf"listening on 127\.0\.0\.1:{new} \(tcp\)")
    proc.wait_for(rf"stopped listening on 127\.0\.0\.1:{old} \(udp\)")
    q = DNSRecord.question("localhost", "A")
    assert DNSRecord.parse(q.send("127.0.0.1", new, timeout=3)).header.rcode == 0
    assert DNSRecord.parse(q.send("127.0.0.1", new, tcp=True, timeout=3)).header.rcode == 0
    assert refused(old)
    assert proc.stop() == 0
