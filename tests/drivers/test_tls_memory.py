"""A TLS connection that is idle, or whose handshake never finishes, costs the wrapper
little memory (it cost ~270 KiB each; stunnel ~85 KiB)."""

from __future__ import annotations

import socket
import time

from netkit import certs
from netkit.testing.tls import client_hello
from tests.support.badpeers import rss_kib


def test_idle_and_half_open_connections_cost_under_100_kib(spawn, tmp_path):
    cert, key = certs.issue(tmp_path, ["localhost"])
    conf = tmp_path / "t.toml"
    conf.write_text(f'[tls]\nwatch_interval = 0\n[[tls.tunnel]]\nlisten = ["127.0.0.1:0"]\n'
                    f'forward = "127.0.0.1:9"\ncert = "{cert}"\nkey = "{key}"\n'
                    f'[tls.tunnel.limits]\nhandshake_timeout = "30s"\n')
    proc = spawn("netkit.servers.tls", ["--config", str(conf)])
    ((_, port),) = proc.listening(1)
    hello = client_hello()
    for payload, what in ((hello, "half-open"), (b"", "idle")):
        before = rss_kib(proc.proc.pid)
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
        for s in socks:
            if payload:
                s.sendall(payload)
        time.sleep(0.8)
        per = (rss_kib(proc.proc.pid) - before) / len(socks)
        for s in socks:
            s.close()
        time.sleep(0.3)
        assert per < 100, f"{what}: {per:.0f} KiB a connection"
