"""The TLS wrapper against stunnel4: same certificate, same backend, same load.

Both wrappers run in server mode on core 0 (TLS in, plaintext to a backend);
the load and the backend run on core 1. Rounds alternate between the two.

  bulk-up    a client sends N MiB through the tunnel; the backend acknowledges
             once it has them all (the wrapper decrypts)
  bulk-down  the backend sends N MiB through the tunnel (the wrapper encrypts)
  handshakes two `openssl s_time -new` processes, full handshakes for T seconds
  memory     RSS per connection, 300 idle ones and 300 half-open ones (a ClientHello
             sent, the handshake never finished), measured in a fresh server

Each is also reported per server CPU-second: on 2 cores the load side is often
the limit, and work per CPU-second is what a wrapper costs.

    python bench/tls.py [--mib 512] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    LOAD_CORE,
    ROOT,
    cpu_seconds,
    free_port,
    pinned,
    report,
    require,
    start,
    stop,
    wait_port,
)

CHUNK = 256 * 1024


def backend(port_holder: list[int], mib: int) -> None:
    """Per connection: first byte "U" = receive `mib` MiB then say "ok"; "D" = send them."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    port_holder.append(srv.getsockname()[1])
    total = mib << 20

    def handle(c: socket.socket) -> None:
        with c:
            try:
                cmd = c.recv(1)
                if cmd == b"U":
                    buf = bytearray(CHUNK)
                    got = 0
                    while got < total:
                        n = c.recv_into(buf)
                        if not n:
                            return
                        got += n
                    c.sendall(b"ok")
                elif cmd == b"D":
                    block = b"\xa5" * CHUNK
                    for _ in range(total // CHUNK):
                        c.sendall(block)
            except OSError:
                return

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def bulk(port: int, ca: Path, mib: int, direction: str) -> float:
    ctx = ssl.create_default_context(cafile=str(ca))
    total = mib << 20
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        t0 = time.perf_counter()
        if direction == "up":
            s.sendall(b"U")
            block = b"\x5a" * CHUNK
            for _ in range(total // CHUNK):
                s.sendall(block)
            if s.recv(2) != b"ok":
                raise SystemExit("bench: backend did not acknowledge the upload")
        else:
            s.sendall(b"D")
            buf = bytearray(CHUNK)
            got = 0
            while got < total:
                n = s.recv_into(buf)
                if not n:
                    raise SystemExit(f"bench: download ended after {got} of {total} bytes")
                got += n
        return mib / (time.perf_counter() - t0)


def handshakes(port: int, ca: Path, seconds: int) -> float:
    """Full handshakes/s from two s_time processes on the load core."""
    argv = [require("openssl"), "s_time", "-connect", f"127.0.0.1:{port}", "-new",
            "-time", str(seconds), "-CAfile", str(ca)]
    procs = [subprocess.Popen(pinned(LOAD_CORE, argv), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    total = 0.0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 60)
        m = re.search(r"(\d+) connections in ([\d.]+)s", out)
        if not m:
            raise SystemExit(f"bench: s_time printed no count:\n{out}")
        total += int(m.group(1)) / seconds
    return total


def memory_per_connection(pid: int, port: int, hello: bytes, n: int = 300) -> tuple[float, float]:
    """KiB of the server's RSS per connection: n idle (connected, silent), then n
    half-open (a ClientHello sent, the handshake never finished)."""
    out = []
    for payload in (b"", hello):
        before = rss_kib(pid)
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            if payload:
                s.sendall(payload)
            socks.append(s)
        time.sleep(1.0)
        out.append((rss_kib(pid) - before) / n)
        for s in socks:
            s.close()
        time.sleep(0.5)
    return out[0], out[1]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def stunnel_argv(tmp: Path, port: int, backend_port: int, cert: Path, key: Path) -> list[str]:
    conf = tmp / "stunnel.conf"
    conf.write_text(f"""foreground = yes
pid = {tmp}/stunnel.pid
debug = 3
[bench]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{backend_port}
cert = {cert}
key = {key}
""")
    return [require("stunnel4"), str(conf)]


def netkit_argv(tmp: Path, port: int, backend_port: int, cert: Path, key: Path) -> list[str]:
    conf = tmp / "netkit.toml"
    conf.write_text(f"""[tls]
watch_interval = 0
[[tls.tunnel]]
listen = ["127.0.0.1:{port}"]
forward = "127.0.0.1:{backend_port}"
cert = "{cert}"
key = "{key}"
""")
    return [sys.executable, "-m", "netkit.servers.tls", "--config", str(conf),
            "--log-level", "warning"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from netkit import certs

    tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-tls-"))
    cert, key = certs.issue(tmp, ["localhost", "127.0.0.1"])
    ca = tmp / certs.CA_CERT
    holder: list[int] = []
    threading.Thread(target=backend, args=(holder, args.mib), daemon=True).start()
    while not holder:
        time.sleep(0.01)
    backend_port = holder[0]
    names = ("bulk-up", "bulk-down", "handshakes")
    from netkit.testing.tls import client_hello

    hello = client_hello()
    memory: dict[tuple[str, str], list[float]] = {
        (w, k): [] for w in ("netkit", "stunnel") for k in ("idle", "half-open")}
    rates = {(w, n): [] for w in ("netkit", "stunnel") for n in names}
    per_cpu = {(w, n): [] for w in ("netkit", "stunnel") for n in names}
    for _ in range(args.rounds):
        for who in ("netkit", "stunnel"):
            port = free_port()
            make = netkit_argv if who == "netkit" else stunnel_argv
            proc = start(make(tmp, port, backend_port, cert, key), log=tmp / f"{who}.log")
            try:
                wait_port(port)
                idle, half_open = memory_per_connection(proc.pid, port, hello)
                memory[who, "idle"].append(idle)
                memory[who, "half-open"].append(half_open)
                for name in names:
                    cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                    if name == "handshakes":
                        rate = handshakes(port, ca, args.seconds)
                    else:
                        rate = bulk(port, ca, args.mib, name.split("-")[1])
                    wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
                    rates[who, name].append(rate)
                    per_cpu[who, name].append(rate * wall / max(cpu, 1e-3))
            finally:
                stop(proc)
    for kind in ("idle", "half-open"):  # lower is better here
        report(f"tls-memory-per-{kind}-connection", memory["netkit", kind],
               memory["stunnel", kind], "KiB")
    units = {"bulk-up": "MiB/s", "bulk-down": "MiB/s", "handshakes": "hs/s"}
    for name in names:
        report(f"tls-{name}", rates["netkit", name], rates["stunnel", name], units[name])
        report(f"tls-{name}-per-cpu", per_cpu["netkit", name], per_cpu["stunnel", name],
               units[name].replace("/s", "/cpu-s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
