"""Our SMTP relay against a trivial aiosmtpd handler and against Postfix, same load.

Postfix's `smtp-source` (10 parallel sessions, MSGS messages of ~1 KB, one session per
message, core 1) into
  - our relay (core 0): every message fsynced into the queue before its 250, then
    delivered to Postfix's `smtp-sink` (core 1) through `smtp.smarthost`;
  - a trivial aiosmtpd handler (core 0) that answers 250 and keeps nothing;
  - Postfix itself (a private instance in a temporary directory, every process on
    core 0): its own queue, relaying to the same sink.
Accepted/s is MSGS over smtp-source's run; delivered/s is MSGS over the time until the
relay's queue is empty again. One unmeasured round first warms every server up (our
spare queue files, Postfix's processes). CPU per message (all threads, all Postfix
processes not counted) is printed for ours and the trivial handler.

    python bench/smtp.py [--messages 2000] [--rounds 3]
prints  smtp-accepted-vs-aiosmtpd, smtp-accepted-vs-postfix, smtp-delivered-vs-postfix
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
    SERVER_CORE,
    cpu_seconds,
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


POSTFIX_MAIN = """compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/spool
data_directory = {d}/data
maillog_file_prefixes = {d}
maillog_file = {d}/maillog
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench.test
mydestination =
relayhost = [127.0.0.1]:{sink}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
local_recipient_maps =
smtp_dns_support_level = disabled
default_process_limit = 100
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
"""


class Postfix:
    """A private Postfix instance (root): its own config, queue and log under `d`, its
    smtpd on 127.0.0.1:port, no chroot; stopped through its master's PID."""

    def __init__(self, d: Path, port: int, sink: int) -> None:
        import re
        import shutil
        import subprocess
        self.d = d
        (d / "etc").mkdir(parents=True)
        (d / "spool").mkdir()
        (d / "data").mkdir()
        shutil.chown(d / "data", "postfix")
        (d / "etc" / "main.cf").write_text(POSTFIX_MAIN.format(d=d, sink=sink))
        lines = []
        for line in Path("/etc/postfix/master.cf").read_text().splitlines():
            fields = line.split()
            if line[:1].isalpha() and len(fields) >= 8:
                fields[4] = "n"  # no chroot: nothing copied into the queue directory
                if fields[0] == "smtp" and fields[1] == "inet":
                    fields[0] = f"127.0.0.1:{port}"
                line = " ".join(fields)
            lines.append(line)
        (d / "etc" / "master.cf").write_text("\n".join(lines) + "\n")
        subprocess.run(pinned(SERVER_CORE, [require("postfix"), "-c", str(d / "etc"),
                                            "start"]), check=True, timeout=60,
                       capture_output=True)
        pid_file = d / "spool" / "pid" / "master.pid"
        self.pid = int(re.sub(r"\s", "", pid_file.read_text()))

    def queued(self) -> int:
        return sum(1 for sub in ("maildrop", "incoming", "active", "deferred")
                   for p in (self.d / "spool" / sub).rglob("*") if p.is_file())

    def stop(self) -> None:
        import os
        import signal
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{self.pid}").exists():
            time.sleep(0.05)


def drained(queued, since: float, messages: int) -> float:  # type: ignore[no-untyped-def]
    """Messages per second from `since` until `queued()` is 0 (600 s at most)."""
    deadline = time.monotonic() + 600
    while queued() and time.monotonic() < deadline:
        time.sleep(0.01)
    return messages / (time.perf_counter() - since)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    n = args.messages
    tmp = Path(tempfile.mkdtemp(prefix="netkit-bench-smtp-"))
    tmp.chmod(0o755)  # Postfix's daemons (user postfix) reach their data directory
    (tmp / "trivial.py").write_text(TRIVIAL)
    sink_port, ours_port, trivial_port, postfix_port = (free_port() for _ in range(4))
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
    postfix = None
    accepted: dict[str, list[float]] = {"ours": [], "aiosmtpd": [], "postfix": []}
    delivered: dict[str, list[float]] = {"ours": [], "postfix": []}
    cpu: dict[str, list[float]] = {"ours": [], "aiosmtpd": []}

    def ours_queued() -> int:
        return sum(1 for _ in (queue / "active").iterdir())

    try:
        postfix = Postfix(tmp / "postfix", postfix_port, sink_port)
        for port in (sink_port, ours_port, trivial_port, postfix_port):
            wait_port(port)
        for port in (ours_port, trivial_port, postfix_port):  # warm-up, not measured
            source(port, n)
        drained(ours_queued, time.perf_counter(), n)
        drained(postfix.queued, time.perf_counter(), n)
        for _ in range(args.rounds):
            c0 = cpu_seconds(procs[1].pid)
            took = source(ours_port, n)
            accepted["ours"].append(n / took)
            delivered["ours"].append(drained(ours_queued, time.perf_counter() - took, n))
            cpu["ours"].append((cpu_seconds(procs[1].pid) - c0) / n * 1e6)
            c0 = cpu_seconds(procs[2].pid)
            accepted["aiosmtpd"].append(n / source(trivial_port, n))
            cpu["aiosmtpd"].append((cpu_seconds(procs[2].pid) - c0) / n * 1e6)
            took = source(postfix_port, n)
            accepted["postfix"].append(n / took)
            delivered["postfix"].append(drained(postfix.queued, time.perf_counter() - took,
                                                n))
    finally:
        if postfix is not None:
            postfix.stop()
        for proc in procs:
            stop(proc)
    report("smtp-accepted-vs-aiosmtpd", accepted["ours"], accepted["aiosmtpd"], "msg/s")
    report("smtp-accepted-vs-postfix", accepted["ours"], accepted["postfix"], "msg/s")
    report("smtp-delivered-vs-postfix", delivered["ours"], delivered["postfix"], "msg/s")
    report("smtp-cpu-per-message-vs-aiosmtpd", cpu["ours"], cpu["aiosmtpd"], "us/msg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
