"""The SSH forwarder against a real OpenSSH sshd on loopback: -L, -R and -D carry data
byte-identical, host keys are checked as OpenSSH checks them, and the forwards come
back by themselves when sshd is killed and restarted."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.fixtures import free_port
from tests.support.sshd import SSHD, keygen

pytestmark = pytest.mark.peer
MIB = 1 << 20
BULK_MIB = int(os.environ.get("NETKIT_SSH_TEST_MIB", "50"))
UP = r"root@127\.0\.0\.1:\d+: up"


@pytest.fixture
def ssh(tmp_path: Path):  # type: ignore[no-untyped-def]
    key = keygen(tmp_path / "client_ed25519")
    sshd = SSHD(tmp_path / "sshd", key).start()
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line())
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"""Host gw
    HostName 127.0.0.1
    Port {sshd.port}
    User root
    IdentityFile {key}
    IdentitiesOnly yes
    UserKnownHostsFile {known}
    ServerAliveInterval 1
    ServerAliveCountMax 2
""")
    yield sshd, cfg, known
    sshd.stop()


def push_through(port: int, data: bytes) -> bytes:
    """Send `data` to an echo backend through 127.0.0.1:port, half-close, read it all."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        got = bytearray()

        def reader() -> None:
            while chunk := s.recv(1 << 16):
                got.extend(chunk)
        t = threading.Thread(target=reader)
        t.start()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        t.join(60)
    return bytes(got)


def iter_recv(s: socket.socket) -> bytes:
    out = bytearray()
    while chunk := s.recv(1 << 16):
        out.extend(chunk)
    return bytes(out)


@pytest.mark.parametrize("cipher", ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"])
def test_local_forward_carries_50_mb_byte_identical(spawn, ssh, make_backend,
                                                    cipher: str) -> None:
    """Both ciphers, against OpenSSH: chacha20 goes through fastchacha.py's methods."""
    _, cfg, _ = ssh
    cfg.write_text(cfg.read_text() + f"    Ciphers {cipher}\n")
    backend = make_backend("echo")
    proc = spawn("netkit.servers.sshfwd", ["-F", str(cfg), "-N",
                                           "-L", f"127.0.0.1:0:127.0.0.1:{backend.port}", "gw"])
    ((_, port),) = proc.listening(1)
    proc.wait_for(UP)
    data = os.urandom(BULK_MIB * MIB)
    try:
        got = push_through(port, data)
    except OSError:
        raise AssertionError(proc.log) from None
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data + b"[eof]").hexdigest()


def test_dynamic_forward_speaks_socks5_and_socks4a(spawn, ssh, make_backend) -> None:
    _, cfg, _ = ssh
    backend = make_backend("echo")
    proc = spawn("netkit.servers.sshfwd", ["-F", str(cfg), "-D", "127.0.0.1:0", "gw"])
    ((_, port),) = proc.listening(1)
    proc.wait_for(UP)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # SOCKS5, a name
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00", proc.log
        name = b"localhost"
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name +
                  struct.pack("!H", backend.port))
        assert s.recv(10)[:2] == b"\x05\x00"
        s.sendall(b"ping5")
        assert s.recv(5) == b"ping5"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # SOCKS5, IPv4
        s.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" +
                  struct.pack("!H", backend.port) + b"early")
        assert s.recv(2) == b"\x05\x00" and s.recv(10)[:2] == b"\x05\x00"
        assert s.recv(5) == b"early"  # bytes sent with the request are not lost
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # SOCKS4a
        s.sendall(b"\x04\x01" + struct.pack("!H", backend.port) + b"\x00\x00\x00\x01" +
                  b"me\x00localhost\x00")
        assert s.recv(8)[:2] == b"\x00\x5a"
        s.sendall(b"ping4")
        assert s.recv(5) == b"ping4"
    data = os.urandom(BULK_MIB * MIB)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:  # bulk, SOCKS5
        s.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" +
                  struct.pack("!H", backend.port))
        assert s.recv(2) == b"\x05\x00" and s.recv(10)[:2] == b"\x05\x00"
        got = bytearray()
        reader = threading.Thread(target=lambda: got.extend(iter_recv(s)))
        reader.start()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reader.join(60)
    assert hashlib.sha256(bytes(got)).digest() == hashlib.sha256(data + b"[eof]").digest()
    closed = free_port()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # refused target
        s.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", closed))
        assert s.recv(2) == b"\x05\x00"
        assert s.recv(10)[:2] == b"\x05\x05"  # connection refused, and the others go on
    proc.wait_for(rf"cannot open 127.0.0.1:{closed} through the tunnel")


def test_remote_forward(spawn, ssh, make_backend) -> None:
    _, cfg, _ = ssh
    backend = make_backend("echo")
    remote_port = free_port()
    proc = spawn("netkit.servers.sshfwd", ["-F", str(cfg),
                                           "-R", f"{remote_port}:127.0.0.1:{backend.port}",
                                           "gw"])
    proc.wait_for(r"-R .*: up")
    data = os.urandom(BULK_MIB * MIB)
    got = push_through(remote_port, data)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data + b"[eof]").digest()


def test_remote_forward_to_a_target_that_speaks_first(spawn, ssh, make_backend) -> None:
    from tests.peers.test_sshfwd_server import first_line

    _, cfg, _ = ssh
    backend = make_backend("banner")
    remote_port = free_port()
    proc = spawn("netkit.servers.sshfwd", ["-F", str(cfg),
                                           "-R", f"{remote_port}:127.0.0.1:{backend.port}",
                                           "gw"])
    proc.wait_for(r"-R .*: up")
    assert [first_line(remote_port) for _ in range(20)] == [b"220 banner\r\n"] * 20


def test_unknown_and_changed_host_keys_are_refused_with_the_fingerprint(spawn, ssh,
                                                                        tmp_path) -> None:
    sshd, cfg, known = ssh
    known.write_text("")  # unknown
    proc = spawn("netkit.servers.sshfwd", ["-F", str(cfg), "-L", "127.0.0.1:0:127.0.0.1:9",
                                           "gw"])
    fingerprint = re.escape(sshd.fingerprint())
    proc.wait_for(rf"host key of \[127.0.0.1\]:{sshd.port} is not known: ssh-ed25519 key "
                  rf"{fingerprint}\. To accept it")
    assert proc.proc.wait(10) == 1  # it gave up by itself: a refused key is not retried
    other = keygen(tmp_path / "other_host")
    kind, b64 = Path(str(other) + ".pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{sshd.port} {kind} {b64}\n")  # changed
    proc = spawn("netkit.servers.sshfwd", ["-F", str(cfg), "-L", "127.0.0.1:0:127.0.0.1:9",
                                           "gw"])
    proc.wait_for(rf"REMOTE HOST IDENTIFICATION HAS CHANGED .*{fingerprint}")
    proc.stop()
    known.write_text("")
    proc = spawn("netkit.servers.sshfwd", ["-F", str(cfg), "-o",
                                           "StrictHostKeyChecking=accept-new",
                                           "-L", "127.0.0.1:0:127.0.0.1:9", "gw"])
    proc.wait_for(r"new host key added")
    proc.wait_for(UP)
    assert known.read_text() == sshd.known_hosts_line()
    proc.stop()
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True)  # hashed
    assert known.read_text().startswith("|1|")
    proc = spawn("netkit.servers.sshfwd", ["-F", str(cfg), "-L", "127.0.0.1:0:127.0.0.1:9",
                                           "gw"])
    proc.wait_for(UP)  # a hashed entry is found like a plain one


def test_forwards_recover_when_sshd_is_killed_and_restarted(spawn, ssh, make_backend) -> None:
    sshd, cfg, _ = ssh
    backend = make_backend("echo")
    remote = free_port()
    proc = spawn("netkit.servers.sshfwd", [
        "-F", str(cfg), "-L", f"127.0.0.1:0:127.0.0.1:{backend.port}",
        "-R", f"{remote}:127.0.0.1:{backend.port}",
        "--set", "sshfwd.backoff_min=0.2", "--set", "sshfwd.backoff_max=1",
        "--set", "sshfwd.tunnel_wait=20", "gw"])
    ((_, port),) = proc.listening(1)
    proc.wait_for(UP)
    assert push_through(port, b"before") == b"before[eof]"
    sshd.kill()  # the server and every session it had
    start = len(proc.lines)
    proc.wait_for(r": down", start=start)
    time.sleep(0.5)
    sshd.start()
    # a client arriving now waits for the tunnel instead of failing
    assert push_through(port, b"after") == b"after[eof]"
    proc.wait_for(UP, start=start)
    proc.wait_for(r"-R .*: up", start=start)  # asked for again on the new connection
    assert push_through(remote, b"remote again") == b"remote again[eof]"


def test_proxyjump_through_a_second_sshd(spawn, ssh, tmp_path, make_backend) -> None:
    """`ProxyJump gw` in the ssh config: the inner sshd is reached through the first."""
    _, cfg, known = ssh
    key = tmp_path / "client_ed25519"
    inner = SSHD(tmp_path / "inner", key).start()
    try:
        with known.open("a") as f:
            f.write(inner.known_hosts_line())
        cfg.write_text(cfg.read_text() + f"""
Host inner
    HostName 127.0.0.1
    Port {inner.port}
    User root
    IdentityFile {key}
    UserKnownHostsFile {known}
    ProxyJump gw
""")
        backend = make_backend("echo")
        proc = spawn("netkit.servers.sshfwd", ["-F", str(cfg), "-L",
                                               f"127.0.0.1:0:127.0.0.1:{backend.port}",
                                               "inner"])
        ((_, port),) = proc.listening(1)
        proc.wait_for(UP)
        assert push_through(port, b"jumped") == b"jumped[eof]"
        # the inner sshd saw its client come from the first sshd's forwarding
        assert "Accepted publickey for root" in (tmp_path / "inner" / "sshd.log").read_text()
    finally:
        inner.stop()


def test_an_encrypted_key_with_a_passphrase_file(spawn, ssh, tmp_path, make_backend) -> None:
    sshd, cfg, _ = ssh
    import subprocess
    secret = tmp_path / "locked_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "correct horse", "-f",
                    str(secret)], check=True)
    with (sshd.dir / "authorized_keys").open("a") as f:
        f.write(Path(str(secret) + ".pub").read_text())
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse\n")
    cfg.write_text(cfg.read_text().replace("IdentityFile", "# IdentityFile"))
    backend = make_backend("echo")
    proc = spawn("netkit.servers.sshfwd", [
        "-F", str(cfg), "-i", str(secret), "--set", f"sshfwd.passphrase_file={passphrase}",
        "-L", f"127.0.0.1:0:127.0.0.1:{backend.port}", "gw"])
    ((_, port),) = proc.listening(1)
    proc.wait_for(UP)
    assert push_through(port, b"unlocked") == b"unlocked[eof]"


def test_status_through_the_control_socket(spawn, ssh, tmp_path, make_backend) -> None:
    import json
    import subprocess
    import sys
    _, cfg, _ = ssh
    backend = make_backend("echo")
    control = tmp_path / "ctl.sock"
    proc = spawn("netkit.servers.sshfwd", ["-F", str(cfg), "--control", str(control),
                                           "-L", f"127.0.0.1:0:127.0.0.1:{backend.port}",
                                           "gw"])
    ((_, port),) = proc.listening(1)
    proc.wait_for(UP)
    assert push_through(port, b"x" * 1000) == b"x" * 1000 + b"[eof]"
    r = subprocess.run([sys.executable, "-m", "netkit", "ctl", "--socket", str(control),
                        "--json", "forwards"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    (view,) = json.loads(r.stdout)
    assert view["state"] == "up" and view["connections"] == 1
    assert view["bytes_in"] == 1000 and view["bytes_out"] == 1005


def test_a_probe_finds_a_dead_forward(spawn, ssh, tmp_path, make_backend) -> None:
    _, cfg, _ = ssh
    backend = make_backend("echo")
    conf = tmp_path / "sshfwd.toml"
    conf.write_text(f"""[sshfwd]
destination = "gw"
ssh_config = "{cfg}"
backoff_min = 0.2
[[sshfwd.forward]]
kind = "local"
listen = "127.0.0.1:0"
to = "127.0.0.1:{backend.port}"
probe_interval = 0.3
""")
    proc = spawn("netkit.servers.sshfwd", ["--config", str(conf)])
    proc.listening(1)
    proc.wait_for(UP)
    time.sleep(1)
    assert "probe failed" not in proc.log  # a healthy forward passes its probes
    backend.close()  # the target goes away: the tunnel is up, the forward is dead
    proc.wait_for(r"-L 127.0.0.1:0:127.0.0.1:\d+: probe failed")
    proc.wait_for(r"dropping the SSH connection to make it again")


def test_a_refused_key_and_an_unreachable_server_are_one_line_each(spawn, ssh,
                                                                   tmp_path) -> None:
    _, cfg, _ = ssh
    stranger = keygen(tmp_path / "stranger_ed25519")
    cfg.write_text(cfg.read_text().replace("IdentityFile", f"IdentityFile {stranger}\n#"))
    proc = spawn("netkit.servers.sshfwd", ["-F", str(cfg), "-L", "127.0.0.1:0:127.0.0.1:9",
                                           "gw"])
    proc.wait_for(r"root@127\.0\.0\.1:\d+: down \(Permission denied for user root")
    proc.stop()
    closed = free_port()
    proc = spawn("netkit.servers.sshfwd", ["-L", "127.0.0.1:0:127.0.0.1:9", "-F", str(cfg),
                                           "-o", "StrictHostKeyChecking=no",
                                           f"root@127.0.0.1:{closed}"])
    proc.wait_for(rf"root@127\.0\.0\.1:{closed}: down \(.*[Cc]onnect.*refused")
    proc.wait_for(r"reconnecting in \d+\.\d s")
    assert "Traceback" not in proc.log


def test_a_client_is_closed_cleanly_when_the_tunnel_stays_down(spawn, ssh,
                                                                make_backend) -> None:
    sshd, cfg, _ = ssh
    backend = make_backend("echo")
    proc = spawn("netkit.servers.sshfwd", [
        "-F", str(cfg), "-L", f"127.0.0.1:0:127.0.0.1:{backend.port}",
        "--set", "sshfwd.tunnel_wait=0.5", "--set", "sshfwd.backoff_min=5", "gw"])
    ((_, port),) = proc.listening(1)
    proc.wait_for(UP)
    sshd.kill()
    proc.wait_for(r": down")
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"anyone there?")
        assert s.recv(10) == b""  # closed, not left hanging
    assert 0.4 < time.monotonic() - t0 < 3
    proc.wait_for(r"the SSH connection is down; closing a new client after 0 s|after 1 s")


def test_keys_from_ssh_agent(spawn, ssh, tmp_path, make_backend) -> None:
    _, cfg, _ = ssh
    key = tmp_path / "client_ed25519"
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, timeout=10)
        cfg.write_text(cfg.read_text().replace("    IdentityFile", "    # IdentityFile")
                       .replace("    IdentitiesOnly yes", "    # IdentitiesOnly"))
        backend = make_backend("echo")
        os.environ["SSH_AUTH_SOCK"] = str(sock)  # the spawned forwarder inherits it
        try:
            proc = spawn("netkit.servers.sshfwd", [
                "-F", str(cfg), "-L", f"127.0.0.1:0:127.0.0.1:{backend.port}", "gw"])
        finally:
            del os.environ["SSH_AUTH_SOCK"]
        ((_, port),) = proc.listening(1)
        proc.wait_for(UP)
        assert push_through(port, b"agent") == b"agent[eof]"
    finally:
        agent.terminate()
        agent.wait(10)


def test_sighup_with_a_broken_config_keeps_the_forwards(spawn, ssh, tmp_path,
                                                        make_backend) -> None:
    import signal
    _, cfg, _ = ssh
    backend = make_backend("echo")
    conf = tmp_path / "sshfwd.toml"
    good = (f'[sshfwd]\ndestination = "gw"\nssh_config = "{cfg}"\n[[sshfwd.forward]]\n'
            f'listen = "127.0.0.1:0"\nto = "127.0.0.1:{backend.port}"\n')
    conf.write_text(good)
    proc = spawn("netkit.servers.sshfwd", ["--config", str(conf)])
    ((_, port),) = proc.listening(1)
    proc.wait_for(UP)
    conf.write_text(good.replace('destination = "gw"', 'destination = ""'))
    start = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"reload failed, keeping the running configuration", start=start)
    proc.wait_for(r"no SSH server given", start=start)
    assert proc.proc.poll() is None
    assert push_through(port, b"still here") == b"still here[eof]"
