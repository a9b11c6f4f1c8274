"""The server contract: one registry read by the CLI and the loader, `netkit run`, the
control channel, and the `--workers` refusal for single-process servers."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass

from dnslib import DNSRecord

from netkit import cli, config
from netkit.contract import ServerSpec, spec_of
from netkit.servers import REGISTRY
from netkit.transport.control import request


def netkit(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netkit", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_every_registered_server_has_a_spec_named_like_its_entry():
    assert (*REGISTRY, "admin") == config.SECTIONS  # and the process's admin endpoint
    for name in REGISTRY:
        spec = spec_of(name)
        assert spec.name == name and spec.summary
        assert callable(spec.create) and callable(spec.listen_specs)
        assert "shutdown_timeout" in spec.config.__dataclass_fields__


def test_unknown_section_is_named_with_the_registered_ones(tmp_path):
    conf = tmp_path / "x.toml"
    conf.write_text("[dsn]\nlisten = ['127.0.0.1:0']\n")
    r = netkit("dns", "--config", str(conf), "--check-config")
    assert r.returncode == 2
    assert f"{conf}: dsn: unknown section (did you mean 'dns'?)" in r.stderr


@dataclass(frozen=True, slots=True, kw_only=True)
class _Config:
    shutdown_timeout: float = 1.0


def test_workers_refused_for_a_single_process_server(capsys, monkeypatch):
    monkeypatch.setattr(cli.log_mod, "setup", lambda *a: None)  # leave logging to pytest
    spec = ServerSpec(name="pool", summary="x", config=_Config, create=lambda c: None,
                      listen_specs=lambda c: [], single_process="the lease pool is in memory")
    args = argparse.Namespace(log_level="error", log_format="text", check_config=False,
                              workers=2, config=None)
    assert cli._start([cli.Running(spec, _Config())], args) == 2
    assert "--workers: pool: the lease pool is in memory" in capsys.readouterr().err


def test_run_starts_every_section_and_the_control_channel_answers(spawn, tmp_path):
    conf = tmp_path / "both.toml"
    conf.write_text('[dns]\nlisten = ["127.0.0.1:0"]\n\n[http]\nlisten = ["127.0.0.1:0"]\n'
                    f'root = "{tmp_path}"\n')
    (tmp_path / "index.html").write_text("hi\n")
    control = tmp_path / "ctl.sock"
    proc = spawn("netkit", ["run", "--config", str(conf), "--control", str(control)])
    proc.wait_for(r"control: listening on")
    addresses = proc.listening(3)  # dns udp, dns tcp, http
    assert stat.S_IMODE(os.stat(control).st_mode) == 0o600

    # both servers answer, in one process
    q = DNSRecord.question("localhost", "A")
    answer = DNSRecord.parse(q.send(addresses[0][0], addresses[0][1], timeout=5))
    assert str(answer.rr[0].rdata) == "127.0.0.1"
    with socket.create_connection(addresses[2], timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hi\n")

    status = request(control, {"command": "status"})
    assert status["ok"] and status["result"]["pid"] == proc.proc.pid
    servers = status["result"]["servers"]
    assert set(servers) == {"dns", "http"}
    assert servers["dns"]["datagrams_in"] == 1 and servers["http"]["accepted"] == 1

    offered = request(control, {"command": "commands"})["result"]
    assert offered["cache"] == ["dns"] and offered["status"] == ["*"]
    bad = request(control, {"command": "explode"})
    assert not bad["ok"] and "unknown command 'explode'" in bad["error"]

    # a broken file on reload: the running config is kept, the process lives on
    conf.write_text('[dns]\nlisten = ["127.0.0.1:0"]\nserver_timeout = "soon"\n')
    reloaded = request(control, {"command": "reload"})
    assert not reloaded["ok"]
    assert reloaded["result"]["problems"] == [
        f'{conf}: dns.server_timeout: expected a duration such as 30, "250ms", "30s", '
        f'"5m" or "2h", got "soon"']
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"reload failed, keeping the running configuration")
    answer = DNSRecord.parse(q.send(addresses[0][0], addresses[0][1], timeout=5))
    assert answer.header.rcode == 0 and proc.proc.poll() is None

    assert proc.stop() == 0
    assert not control.exists()  # removed on the way out


def test_ctl_command_line(spawn, tmp_path):
    control = tmp_path / "dns.sock"
    proc = spawn("netkit.servers.dns", ["--listen", "127.0.0.1:0", "--control", str(control)])
    proc.wait_for(r"control: listening on")
    r = netkit("ctl", "--socket", str(control), "cache", "name=localhost")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"rrsets": 0, "answers": 0, "entries": []}
    r = netkit("ctl", "--socket", str(control), "cache", "name")
    assert r.returncode == 2 and "'name': expected KEY=VALUE" in r.stderr
    r = netkit("ctl", "--socket", str(tmp_path / "nobody.sock"), "status")
    assert r.returncode == 1 and "cannot connect to" in r.stderr


def test_default_control_path_names_the_servers_and_the_pid(spawn, tmp_path):
    env_dir = tmp_path / "run"
    os.environ["XDG_RUNTIME_DIR"] = str(env_dir)
    try:
        proc = spawn("netkit.servers.dns", ["--listen", "127.0.0.1:0"])
        proc.wait_for(r"control: listening on")
        path = env_dir / "netkit" / f"dns-{proc.proc.pid}.sock"
        assert path.exists()
        r = subprocess.run([sys.executable, "-m", "netkit", "ctl", "status"],
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ))
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["pid"] == proc.proc.pid
    finally:
        del os.environ["XDG_RUNTIME_DIR"]


def test_stale_control_sockets_of_dead_processes_are_removed(tmp_path, monkeypatch):
    from netkit import control

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    d = control.runtime_dir()
    d.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, alive = d / f"dns-{dead.pid}.sock", d / f"http-{os.getpid()}.sock"
    stale.touch()
    alive.touch()
    assert control.find_sockets() == [alive]
    control.remove_stale_sockets()
    assert not stale.exists() and alive.exists()
