"""Real OpenSSH clients (`ssh -L`, `-R`, `-D`) against netkit's forwarding-only server;
its permit rules and authorized_keys options; garbage on its port; and netkit's own
forwarder against it."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest

from netkit.testing.ssh import SSHServer
from tests.peers.test_sshfwd import push_through
from tests.support.fixtures import free_port, need, wait_listening

pytestmark = pytest.mark.peer


@pytest.fixture
def ours() -> Iterator[SSHServer]:
    with SSHServer() as server:
        yield server


def ssh_client(server: SSHServer, *forward: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([need("ssh"), *server.ssh_args(), "-N",
                             "-o", "ExitOnForwardFailure=yes", *forward, "test@127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def closed_at_once(port: int) -> bool:
    """ssh -L closes (or resets) a local connection whose channel the server refused."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(b"x")
            return s.recv(10) == b""
        except ConnectionResetError:
            return True


def stop(proc: subprocess.Popen[bytes]) -> bytes:
    """End an ssh client we started (by PID), its stderr back; SIGKILL if SIGTERM is not
    enough within 5 s."""
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=5)
    return err


def test_ssh_L_R_and_D_through_our_server(ours: SSHServer, make_backend) -> None:
    backend = make_backend("echo")
    local, remote, socks = free_port(), free_port(), free_port()
    proc = ssh_client(ours, "-L", f"{local}:127.0.0.1:{backend.port}",
                      "-R", f"127.0.0.1:{remote}:127.0.0.1:{backend.port}", "-D", str(socks))
    try:
        for port in (local, remote, socks):
            wait_listening(proc, port, "ssh forward")
        data = os.urandom(8 << 20)
        assert push_through(local, data) == data + b"[eof]"
        assert push_through(remote, data) == data + b"[eof]"
        with socket.create_connection(("127.0.0.1", socks), timeout=10) as s:
            s.sendall(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01" +
                      struct.pack("!H", backend.port))
            assert s.recv(2) == b"\x05\x00" and s.recv(10)[:2] == b"\x05\x00"
            s.sendall(b"socks")
            assert s.recv(5) == b"socks"
    finally:
        stop(proc)
    counters = ours.counters
    assert counters["channels"] >= 2 and counters["listeners"] == 1


def test_permit_refuses_other_destinations_and_listeners(make_backend) -> None:
    backend = make_backend("echo")
    with SSHServer(permit=(f"127.0.0.1:{backend.port}",)) as ours:
        other = free_port()
        local = free_port()
        proc = ssh_client(ours, "-L", f"{local}:127.0.0.1:{other}")
        try:
            wait_listening(proc, local, "ssh -L")
            assert closed_at_once(local)  # the channel was refused
        finally:
            err = stop(proc)
        assert b"administratively prohibited" in err or b"not permitted" in err
        proc = ssh_client(ours, "-R", f"127.0.0.1:{free_port()}:127.0.0.1:{backend.port}")
        try:
            assert proc.wait(10) != 0  # ExitOnForwardFailure: the listener was refused
        finally:
            stop(proc)
        assert ours.counters["refused"] >= 2


def test_authorized_keys_options_are_honoured(make_backend) -> None:
    backend = make_backend("echo")
    with SSHServer(permit=("*:*",)) as ours:
        line = ours.authorized_keys.read_text()
        ours.authorized_keys.write_text(
            f'restrict,port-forwarding,permitopen="127.0.0.1:{backend.port}" {line}')
        allowed, denied = free_port(), free_port()
        proc = ssh_client(ours, "-L", f"{allowed}:127.0.0.1:{backend.port}",
                          "-L", f"{denied}:127.0.0.1:{free_port()}")
        try:
            wait_listening(proc, allowed, "ssh -L")
            assert push_through(allowed, b"ok") == b"ok[eof]"
            assert closed_at_once(denied)
        finally:
            stop(proc)
        ours.authorized_keys.write_text(f'from="127.0.0.2" {line}')  # we come from .1
        proc = subprocess.run([need("ssh"), *ours.ssh_args(), "-N", "-o",
                               "ConnectTimeout=5", "test@127.0.0.1"],
                              capture_output=True, timeout=30)
        assert proc.returncode != 0 and b"Permission denied" in proc.stderr


def test_no_shell_no_exec_no_password(ours: SSHServer) -> None:
    r = subprocess.run([need("ssh"), *ours.ssh_args(), "test@127.0.0.1", "id"],
                       capture_output=True, timeout=30)
    assert r.returncode != 0 and b"uid=" not in r.stdout
    r = subprocess.run([need("ssh"), "-p", str(ours.port), "-o", "BatchMode=yes",
                        "-o", f"UserKnownHostsFile={ours.known_hosts}",
                        "-o", "PubkeyAuthentication=no", "test@127.0.0.1", "true"],
                       capture_output=True, timeout=30)
    assert r.returncode == 255 and b"Permission denied (publickey)" in r.stderr


def test_garbage_on_the_ssh_port_never_crashes_it(ours: SSHServer) -> None:
    for payload in (os.urandom(5000), b"SSH-2.0-x\r\n" + os.urandom(3000),
                    b"GET / HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", ours.port), timeout=5) as s:
            s.sendall(payload)
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except (ConnectionResetError, TimeoutError):
                pass
    time.sleep(0.2)
    # still serving: a real client gets its forward
    local = free_port()
    proc = ssh_client(ours, "-L", f"{local}:127.0.0.1:{ours.port}")
    try:
        wait_listening(proc, local, "ssh -L")
        with socket.create_connection(("127.0.0.1", local), timeout=5) as s:
            assert s.recv(64).startswith(b"SSH-2.0-")  # our own banner, through ourselves
    finally:
        stop(proc)


def test_our_forwarder_against_our_server(spawn, ours: SSHServer, make_backend, tmp_path) -> None:
    backend = make_backend("echo")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"""Host ours
    HostName 127.0.0.1
    Port {ours.port}
    User test
    IdentityFile {ours.client_key}
    UserKnownHostsFile {ours.known_hosts}
""")
    proc = spawn("netkit.servers.sshfwd", ["-F", str(cfg),
                                           "-L", f"127.0.0.1:0:127.0.0.1:{backend.port}", "ours"])
    ((_, port),) = proc.listening(1)
    data = os.urandom(4 << 20)
    assert push_through(port, data) == data + b"[eof]"


def first_line(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.settimeout(10)
        got = b""
        while not got.endswith(b"\r\n"):
            chunk = s.recv(64)
            if not chunk:
                break
            got += chunk
        return got


def test_a_target_that_speaks_first_is_heard_through_ssh_L(ours: SSHServer,
                                                           make_backend) -> None:
    """SMTP and SSH servers send a banner at once; it used to be dropped when it came
    before the channel was open (asyncssh's forward_connection reads the target early)."""
    backend = make_backend("banner")
    local = free_port()
    proc = ssh_client(ours, "-L", f"{local}:127.0.0.1:{backend.port}")
    try:
        wait_listening(proc, local, "ssh -L")
        assert [first_line(local) for _ in range(20)] == [b"220 banner\r\n"] * 20
    finally:
        stop(proc)


@pytest.mark.parametrize("then_close", [False, True])
def test_connect_target_holds_the_banner_until_the_session_starts(then_close: bool) -> None:
    """Deterministic: the target speaks (and maybe closes) before the channel is open."""
    import asyncio

    from netkit.servers.sshfwd.targets import connect_target

    class Channel:
        def __init__(self) -> None:
            self.events: list[object] = []

        def write(self, data: bytes) -> None:
            self.events.append(data)

        def write_eof(self) -> None:
            self.events.append("eof")

        def close(self) -> None:
            self.events.append("close")

        def get_extra_info(self, name: str, default: object = None) -> object:
            return default

    async def main() -> list[object]:
        async def speak(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 banner\r\n")
            if not then_close:
                await reader.read()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(speak, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        session = await connect_target("127.0.0.1", port)
        await asyncio.sleep(0.3)  # the banner (and the close) are here before the channel
        channel = Channel()
        session.connection_made(channel)
        session.session_started()
        await asyncio.sleep(0.2)
        session.close()
        await asyncio.sleep(0.1)
        server.close()
        await server.wait_closed()
        return channel.events

    events = asyncio.run(main())
    assert events[0] == b"220 banner\r\n"
    assert events[1:] == (["eof", "close"] if then_close else ["close"])
