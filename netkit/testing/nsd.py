"""A local DNS hierarchy of real NSD servers on 127.X.Y.N port 53, and its root hints.

X.Y is random per run (`Hierarchy.addr(N)` gives an address), so two runs on one host
do not collide; the table below writes them as 127.0.0.N.

    127.0.0.2   .            root: delegates com. and org. (with glue)
    127.0.0.3   com.         example.com. (glue), glueless.com. (NS in org., no glue),
                             lame.com. (its server does not serve it), dead.com. (never answers)
    127.0.0.4   example.com. www A, alias CNAME -> www.example.org., txt-only (NODATA),
                             big TXT (truncated over UDP), short (TTL 2)
    127.0.0.5   org.         example.org. (glue)
    127.0.0.6   example.org. www A; also serves glueless.com.
    127.0.0.7   (NSD with no zone for lame.com.: answers REFUSED)
    127.0.0.8   a UDP socket that reads and never answers (the test binds it)

Each NSD runs in the foreground with its own config in a temp dir and is stopped by PID.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from netkit.config import Address
from netkit.transport.listeners import bind_socket, bind_udp_tcp

SOA = "{z} IN SOA ns.{z} admin.{z} 1 3600 600 86400 {neg}"

ZONES: dict[str, tuple[str, str]] = {
    # zone name: (server address, zone text)
    ".": ("127.0.0.2", """
. IN SOA a.root. admin.root. 1 3600 600 86400 300
. IN NS a.root.
a.root. IN A 127.0.0.2
com. IN NS ns.com.
ns.com. IN A 127.0.0.3
org. IN NS ns.org.
ns.org. IN A 127.0.0.5
"""),
    "com.": ("127.0.0.3", """
com. IN SOA ns.com. admin.com. 1 3600 600 86400 300
com. IN NS ns.com.
ns.com. IN A 127.0.0.3
example.com. IN NS ns1.example.com.
ns1.example.com. IN A 127.0.0.4
glueless.com. IN NS ns.example.org.
lame.com. IN NS ns.lame.com.
ns.lame.com. IN A 127.0.0.7
dead.com. IN NS ns.dead.com.
ns.dead.com. IN A 127.0.0.8
"""),
    "example.com.": ("127.0.0.4", """
example.com. IN SOA ns1.example.com. admin.example.com. 1 3600 600 86400 60
example.com. IN NS ns1.example.com.
ns1.example.com. IN A 127.0.0.4
www.example.com. 300 IN A 192.0.2.10
www.example.com. 300 IN AAAA 2001:db8::10
alias.example.com. IN CNAME www.example.org.
txt-only.example.com. IN TXT "no address here"
short.example.com. 2 IN A 192.0.2.11
prefetch.example.com. 5 IN A 192.0.2.13
mail.example.com. IN MX 10 www.example.com.
old.example.com. IN DNAME example.org.
deep.a.b.c.example.com. IN A 192.0.2.12
"""),
    "org.": ("127.0.0.5", """
org. IN SOA ns.org. admin.org. 1 3600 600 86400 300
org. IN NS ns.org.
ns.org. IN A 127.0.0.5
example.org. IN NS ns.example.org.
ns.example.org. IN A 127.0.0.6
"""),
    "example.org.": ("127.0.0.6", """
example.org. IN SOA ns.example.org. admin.example.org. 1 3600 600 86400 60
example.org. IN NS ns.example.org.
ns.example.org. IN A 127.0.0.6
www.example.org. IN A 192.0.2.20
"""),
    "glueless.com.": ("127.0.0.6", """
glueless.com. IN SOA ns.example.org. admin.glueless.com. 1 3600 600 86400 60
glueless.com. IN NS ns.example.org.
www.glueless.com. IN A 192.0.2.30
"""),
}

LAME_SERVER = "127.0.0.7"
DEAD_SERVER = "127.0.0.8"


def _big_txt() -> str:
    # about 3 KB of TXT: more than a 1232-byte EDNS buffer, so the UDP answer is truncated
    return "\n".join(f'big.example.com. IN TXT "{i:03d} {"x" * 90}"' for i in range(30)) + "\n"


@dataclass
class Hierarchy:
    root_hints: Path
    processes: list[subprocess.Popen]
    blackhole: socket.socket
    prefix: str = "127.0.0"  # the first three octets of every server's address

    def addr(self, n: int) -> str:
        """The address of the server the module docstring calls 127.0.0.`n`."""
        return f"{self.prefix}.{n}"

    def stop(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.blackhole.close()


def random_prefix() -> str:
    """Three octets of 127.0.0.0/8 for one run's servers: two runs on one host (two test
    sessions, a test and a benchmark) do not collide on port 53."""
    rng = random.SystemRandom()
    return f"127.{rng.randint(1, 254)}.{rng.randint(0, 254)}"


def start_hierarchy(base: Path, extra: dict[str, str] | None = None,
                    prefix: str | None = None) -> Hierarchy:
    """Start every NSD on `prefix`.2-.8 (default: random for this run; the docstring's
    127.0.0.N become PREFIX.N); `extra` adds records to zones (the benchmarks add
    thousands)."""
    prefix = prefix or random_prefix()

    def here(text: str) -> str:
        return text.replace("127.0.0.", prefix + ".")

    by_server: dict[str, list[tuple[str, str]]] = {}
    for zone, (server, text) in ZONES.items():
        text += (extra or {}).get(zone, "")
        if zone == "example.com.":
            text += _big_txt()
        by_server.setdefault(here(server), []).append((zone, "$TTL 3600\n" +
                                                       here(text.lstrip())))
    by_server.setdefault(here(LAME_SERVER), [])
    # reads nothing, answers nothing
    blackhole = bind_socket("udp", Address(here(DEAD_SERVER), 53))
    processes = [start_nsd(base / server, server, zones) for server, zones in by_server.items()]
    hints = base / "root.hints"
    hints.write_text(".                        3600000      NS    A.ROOT.\n"
                     f"A.ROOT.                  3600000      A     {prefix}.2\n")
    h = Hierarchy(hints, processes, blackhole, prefix)
    wait_ready(h, base, [(h.addr(int(server.rsplit(".", 1)[1])), zone)
                         for zone, (server, _) in ZONES.items()])
    return h


def start_nsd(d: Path, server: str, zones: list[tuple[str, str]]) -> subprocess.Popen:
    """One NSD in the foreground on `server` port 53 serving (zone, zone-file text) pairs,
    its config and files in `d`."""
    nsd = shutil.which("nsd") or "/usr/sbin/nsd"
    d.mkdir(parents=True, exist_ok=True)
    conf = [f"""server:
  ip-address: {server}@53
  username: ""
  chroot: ""
  server-count: 1
  pidfile: "{d}/nsd.pid"
  zonesdir: "{d}"
  database: ""
  xfrdfile: "{d}/xfrd.state"
  xfrdir: "{d}"
  zonelistfile: "{d}/zone.list"
  do-ip6: no
  verbosity: 1
  tcp-count: 50
  rrl-ratelimit: 0
remote-control:
  control-enable: no
"""]
    for zone, text in zones:
        fname = "root.zone" if zone == "." else f"{zone}zone"
        (d / fname).write_text(text)
        conf.append(f'zone:\n  name: "{zone}"\n  zonefile: "{fname}"\n')
    (d / "nsd.conf").write_text("".join(conf))
    with open(d / "nsd.log", "wb") as log:
        return subprocess.Popen([nsd, "-d", "-c", str(d / "nsd.conf")], stdout=log,
                                stderr=subprocess.STDOUT)


def wait_ready(h: Hierarchy, base: Path, zones: list[tuple[str, str]]) -> None:
    """Until every (server, zone) answers its SOA; RuntimeError with NSD's logs when one
    exits or does not answer within 20 s."""
    import dnslib

    deadline = time.monotonic() + 20
    for server, zone in zones:
        q = dnslib.DNSRecord.question(zone, "SOA")
        while True:
            for p in h.processes:
                if p.poll() is not None:
                    h.stop()
                    logs = "\n".join(f.read_text() for f in base.glob("*/nsd.log"))
                    raise RuntimeError(f"nsd exited ({p.returncode}):\n{logs}")
            try:
                answer = dnslib.DNSRecord.parse(q.send(server, 53, timeout=0.2))
                if answer.header.rcode == 0:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                h.stop()
                raise RuntimeError(f"nsd for {zone} on {server} did not answer")
            time.sleep(0.05)


def free_udp_tcp_port() -> int:
    """A port free for both UDP and TCP right now, for peers that cannot take port 0
    (Unbound). Probed, not reserved: callers retry if a peer fails to bind it."""
    udp, tcp = bind_udp_tcp(Address("127.0.0.1", 0))
    port = udp.getsockname()[1]
    udp.close()
    tcp.close()
    return port


def unbound_config(directory: Path, port: int, root_hints: Path, *,
                   trust_anchor: Path | None = None, rpz: Path | None = None) -> Path:
    """An Unbound config: one thread, asking our 127.0.0.x authorities; iterator only, or
    validating from `trust_anchor` (EDE on), or applying the RPZ zone file `rpz` (named
    rpz.local.)."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "unbound.conf"
    modules = "iterator"
    extra = rpz_section = ""
    if trust_anchor is not None:
        modules = "validator iterator"
        extra = f'  trust-anchor-file: "{trust_anchor}"\n  ede: yes\n'
    if rpz is not None:
        modules = "respip " + modules
        rpz_section = f'rpz:\n  name: "rpz.local."\n  zonefile: "{rpz}"\n'
    conf.write_text(f"""server:
  username: ""
  chroot: ""
  directory: "{directory}"
  pidfile: "{directory}/unbound.pid"
  interface: 127.0.0.1@{port}
  root-hints: "{root_hints}"
  do-not-query-localhost: no
  do-ip6: no
  use-syslog: no
  logfile: "{directory}/unbound.log"
  num-threads: 1
  access-control: 127.0.0.0/8 allow
  module-config: "{modules}"
  qname-minimisation: yes
  msg-cache-size: 64m
  rrset-cache-size: 64m
{extra}{rpz_section}remote-control:
  control-enable: no
""")
    return conf
