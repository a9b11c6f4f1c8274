"""Our SMTP relay against a trivial aiosmtpd handler, on the same load.

Postfix's `smtp-source` (10 parallel sessions, MSGS messages of ~1 KB, core 1) into
  - our relay (core 0): every message fsynced into the queue before its 250, then
    delivered to Postfix's `smtp-sink` (core 1) through `smtp.smarthost`;
  - a trivial aiosmtpd handler (core 0) that answers 250 and keeps nothing.
Accepted/s is MSGS over smtp-source's run; delivered/s for ours is MSGS over the time
until its queue is empty again.

    python bench/smtp.py [--messages 2000] [--rounds 3]
prints  smtp-accepted-vs-aiosmtpd ours/peer = ...  and the delivered rate
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    LOAD_CORE,
    free_port,
    pinned,
    report,
    require,
    start,
    stop,
    wait_port,
)

TRIVIAL = """
import asyncio, sys
from aiosmtpd.smtp import SMTP
import uvloop

class Handler:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Handler()), "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

uvloop.run(main())
"""


def source(port: int, messages: int) -> float:
    """Seconds smtp-source takes to send `messages` over 10 sessions."""
    import subprocess
    t0 = time.perf_counter()
    subprocess.run(pinned(LOAD_CORE, [require("smtp-source"), "-s", "10", "-m", str(messages),
                                      "-l", "1000", "-f", "bench@source.test",
                                      "-t", "sink@remote.test", f"127.0.0.1:{port}"]),
                   check=True, timeout=600, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-smtp-"))
    (tmp / "trivial.py").write_text(TRIVIAL)
    sink_port, ours_port, trivial_port = free_port(), free_port(), free_port()
    queue = tmp / "queue"
    procs = [
        start([require("smtp-sink"), "-u", "nobody", f"127.0.0.1:{sink_port}", "100"],
              core=LOAD_CORE),
        start([sys.executable, "-m", "netkit.servers.smtp", "--listen",
               f"127.0.0.1:{ours_port}", "--log-level", "warning",
               "--set", f"smtp.queue_dir={queue}", "--set", f"smtp.maildir={tmp / 'mail'}",
               "--set", f"smtp.smarthost=127.0.0.1:{sink_port}",
               "--set", "smtp.max_sessions_per_client=100"]),
        start([sys.executable, str(tmp / "trivial.py"), str(trivial_port)]),
    ]
    accepted: dict[str, list[float]] = {"ours": [], "aiosmtpd": []}
    delivered: list[float] = []
    try:
        for port in (sink_port, ours_port, trivial_port):
            wait_port(port)
        for _ in range(args.rounds):
            took = source(ours_port, args.messages)
            accepted["ours"].append(args.messages / took)
            t0 = time.perf_counter() - took
            deadline = time.monotonic() + 600
            while any((queue / "active").iterdir()) and time.monotonic() < deadline:
                time.sleep(0.01)
            delivered.append(args.messages / (time.perf_counter() - t0))
            accepted["aiosmtpd"].append(args.messages / source(trivial_port, args.messages))
    finally:
        for proc in procs:
            stop(proc)
    report("smtp-accepted-vs-aiosmtpd", accepted["ours"], accepted["aiosmtpd"], "msg/s")
    report("smtp-delivered-vs-accepted-by-aiosmtpd", delivered, accepted["aiosmtpd"], "msg/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
