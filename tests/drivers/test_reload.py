"""A reload (SIGHUP) never exits: whatever fails keeps the old config and says why."""

from __future__ import annotations

import signal
import socket
import time


def get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


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
