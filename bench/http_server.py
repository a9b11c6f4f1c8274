"""The HTTP server against uvicorn+httptools, aiohttp and nginx, with wrk.

  hello     keep-alive hello world, wrk -t1 -c50: our server running the ASGI app and a
            native handler, uvicorn (httptools, uvloop) running the same ASGI app, and
            aiohttp.web: requests/s (and per server CPU-second)
  browser   the ASGI app again, ours against uvicorn, but wrk sends what a browser sends
            (eleven fields, ~600 bytes) with a new target each time (bench/browser.lua):
            no request line repeats, so the parser's memory of lines helps only the fields
  static    a 1 MiB file, our server against nginx: MiB/s

Servers on core 0, wrk on core 1; rounds alternate.

    python bench/http_server.py [--seconds 5] [--rounds 3] [--only hello|browser|static]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    cpu_seconds,
    free_port,
    report,
    require,
    start,
    stop,
    wait_port,
    wrk,
)


def servers(port: int, www: Path, tmp: Path) -> dict[str, list[str]]:
    py = sys.executable
    # the servers import bench.http_apps from the project root
    os.environ["PYTHONPATH"] = str(ROOT)
    nginx_conf = tmp / f"nginx-{port}.conf"
    nginx_conf.write_text(f"""worker_processes 1;
pid {tmp}/nginx-{port}.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  sendfile on;
  server {{ listen 127.0.0.1:{port}; root {www}; }}
}}
""")
    return {
        "netkit-asgi": [py, "-m", "netkit.servers.http", "--listen", f"127.0.0.1:{port}",
                        "--app", "bench.http_apps:asgi_hello", "--log-level", "warning"],
        "netkit-native": [py, "-m", "netkit.servers.http", "--listen", f"127.0.0.1:{port}",
                          "--app", "bench.http_apps:native_hello", "--set", "http.app_type=native",
                          "--log-level", "warning"],
        "netkit-static": [py, "-m", "netkit.servers.http", "--listen", f"127.0.0.1:{port}",
                          "--set", f"http.root={www}", "--log-level", "warning"],
        "uvicorn": [py, "-m", "uvicorn", "bench.http_apps:asgi_hello", "--host", "127.0.0.1",
                    "--port", str(port), "--http", "httptools", "--loop", "uvloop",
                    "--log-level", "warning", "--no-access-log"],
        "aiohttp": [py, "-c", f"import bench.http_apps as a; a.aiohttp_main({port})"],
        "nginx": [require("nginx"), "-c", str(nginx_conf), "-p", str(tmp), "-g",
                  "daemon off;"],
    }


def measure(name: str, www: Path, tmp: Path, seconds: int, path: str,
            script: str | None = None) -> tuple[float, float]:
    port = free_port()
    admin = name.endswith("+admin")
    argv = servers(port, www, tmp)[name.removesuffix("+admin")]
    if admin:  # the admin endpoint on, scraped every second as Prometheus would
        admin_port = free_port()
        argv = [*argv, "--set", f"admin.listen=127.0.0.1:{admin_port}"]
    proc = start(argv, log=tmp / f"{name}.log")
    stop_scraping = threading.Event()
    try:
        wait_port(port)
        if admin:
            wait_port(admin_port)
            threading.Thread(target=scrape, args=(admin_port, stop_scraping),
                             daemon=True).start()
        cpu0 = cpu_seconds(proc.pid)
        try:
            rate = wrk(f"http://127.0.0.1:{port}{path}", seconds=seconds, script=script)
        except SystemExit as exc:
            raise SystemExit(f"bench: {name}: {exc}") from None
        cpu = cpu_seconds(proc.pid) - cpu0
        return rate, rate * seconds / max(cpu, 1e-3)
    finally:
        stop_scraping.set()
        stop(proc)


def scrape(port: int, done: threading.Event) -> None:
    """GET /metrics once a second until `done`; fails the bench if it stops answering."""
    import urllib.request
    while not done.wait(1.0):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert r.status == 200 and b"netkit_http_" in r.read()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("hello", "browser", "static"),
                        help="one part of the bench")
    parser.add_argument("--admin", action="store_true",
                        help="also ASGI hello with the admin endpoint on and scraped")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-http-"))
    tmp.chmod(0o755)  # nginx's workers run as nobody and must read the files
    www = tmp / "www"
    www.mkdir(mode=0o755)
    (www / "1mb.bin").write_bytes(os.urandom(1 << 20))
    rates: dict[str, list[float]] = {}
    per_cpu: dict[str, list[float]] = {}
    hello = args.only in (None, "hello")
    browser = args.only in (None, "browser")
    static = args.only in (None, "static")
    lua = str(Path(__file__).resolve().parent / "browser.lua")
    for _ in range(args.rounds):
        hello_names = ("netkit-asgi", "netkit-native", "uvicorn", "aiohttp")
        if args.admin:
            hello_names += ("netkit-asgi+admin",)
        for name in hello_names if hello else ():
            rate, eff = measure(name, www, tmp, args.seconds, "/")
            rates.setdefault(name, []).append(rate)
            per_cpu.setdefault(name, []).append(eff)
        for name in ("netkit-asgi", "uvicorn") if browser else ():
            rate, _ = measure(name, www, tmp, args.seconds, "/", script=lua)
            rates.setdefault(f"{name}-browser", []).append(rate)
        for name in ("netkit-static", "nginx") if static else ():
            rate, eff = measure(name, www, tmp, args.seconds, "/1mb.bin")
            rates.setdefault(name, []).append(rate)  # 1 MiB responses: req/s = MiB/s
            per_cpu.setdefault(name, []).append(eff)
    if hello:
        report("http-asgi-vs-uvicorn", rates["netkit-asgi"], rates["uvicorn"], "req/s")
        report("http-asgi-vs-uvicorn-per-cpu", per_cpu["netkit-asgi"], per_cpu["uvicorn"],
               "req/cpu-s")
        report("http-native-vs-uvicorn", rates["netkit-native"], rates["uvicorn"], "req/s")
        report("http-native-vs-aiohttp", rates["netkit-native"], rates["aiohttp"], "req/s")
        if args.admin:
            report("http-asgi-admin-on-vs-uvicorn", rates["netkit-asgi+admin"],
                   rates["uvicorn"], "req/s")
            report("http-asgi-admin-on-vs-off", rates["netkit-asgi+admin"],
                   rates["netkit-asgi"], "req/s")
    if browser:
        report("http-asgi-browser-heads-vs-uvicorn", rates["netkit-asgi-browser"],
               rates["uvicorn-browser"], "req/s")
    if static:
        report("http-static-1mib-vs-nginx", rates["netkit-static"], rates["nginx"], "MiB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
