"""The DHCP server against real clients (ISC dhclient, busybox udhcpc) and our client
against dnsmasq, across network namespaces made by each test (tests/support/netns.py):
nothing reaches the host's own network, and no client touches the host's files."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.fixtures import need
from tests.support.netns import Link, recording_script

pytestmark = pytest.mark.peer
MAC1, MAC2, MAC3, MAC4 = (f"02:00:00:00:77:0{i}" for i in range(1, 5))


def server_config(tmp_path: Path, **extra: str) -> Path:
    conf = tmp_path / "dhcp.toml"
    lines = ['[dhcp]', 'interface = "br0"', 'subnet = "10.77.0.0/24"',
             'pool = ["10.77.0.100-10.77.0.101"]', 'router = ["10.77.0.1"]',
             'dns = ["10.77.0.53", "10.77.0.54"]', 'domain = "lab.test"',
             'lease_time = "20s"', f'lease_db = "{tmp_path / "leases.db"}"',
             *(f"{k} = {v}" for k, v in extra.items()),
             '[[dhcp.reservation]]', f'mac = "{MAC2}"', 'address = "10.77.0.50"',
             'hostname = "reserved"']
    conf.write_text("\n".join(lines) + "\n")
    return conf


def records(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [dict(kv.split("=", 1) for kv in line.split("|")) for line in
            path.read_text().splitlines()]


def wait_record(path: Path, reason: str, timeout: float = 30, after: int = 0
                ) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in records(path)[after:]:
            if r.get("reason", "").lower() == reason.lower():
                return r
        time.sleep(0.1)
    raise AssertionError(f"no {reason} in {records(path)}")


def dhclient(link: Link, ns: str, tmp_path: Path, name: str, *extra: str
             ) -> tuple[subprocess.Popen[str], Path]:
    need("dhclient")
    record = tmp_path / f"{name}.record"
    script = recording_script(tmp_path / f"{name}.sh", record)
    conf = tmp_path / f"{name}.conf"
    conf.write_text(f'send host-name "{name}";\nrequest subnet-mask, broadcast-address, '
                    f'routers, domain-name, domain-name-servers, host-name;\n')
    proc = subprocess.Popen([*link.prefix(ns), "dhclient", "-d", "-v", "-sf", str(script),
                             "-cf", str(conf), "-lf", str(tmp_path / f"{name}.leases"),
                             "-pf", str(tmp_path / f"{name}.pid"), *extra, "eth0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, record


def stop(proc: subprocess.Popen[str]) -> str:
    """Stop a client started here (by its PID) and return what it printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""


def test_dhclient_and_udhcpc_get_correct_leases_that_survive_a_restart(spawn, tmp_path: Path
                                                                       ) -> None:
    with Link("10.77.0.1/24") as link:
        c1, c2, c3 = link.client(MAC1), link.client(MAC2), link.client(MAC3)
        conf = server_config(tmp_path)
        server = spawn("netkit.servers.dhcp", ["--config", str(conf)],
                       prefix=link.prefix(link.server))
        server.wait_for(r"listening on 10\.77\.0\.1:67 ")
        d1, rec1 = dhclient(link, c1, tmp_path, "c1")
        d2, rec2 = dhclient(link, c2, tmp_path, "c2")
        try:
            got1 = wait_record(rec1, "BOUND")
            got2 = wait_record(rec2, "BOUND")
            assert got1["ip"] in ("10.77.0.100", "10.77.0.101")
            assert got1["routers"] == "10.77.0.1" and got1["mask"] == "255.255.255.0"
            assert got1["dns"] == "10.77.0.53 10.77.0.54" and got1["domain"] == "lab.test"
            assert got1["lease"] == "20" and got1["server"] == "10.77.0.1"
            assert got2["ip"] == "10.77.0.50"  # the reservation
            # renewal (T1 = 10 s) keeps the address, across a restart of the server
            server.stop()
            server = spawn("netkit.servers.dhcp", ["--config", str(conf)],
                           prefix=link.prefix(link.server))
            server.wait_for(r"2 lease\(s\) from")
            renewed = wait_record(rec1, "RENEW", timeout=30)
            assert renewed["ip"] == got1["ip"]
            server.wait_for(rf"renewed {re.escape(got1['ip'])} {MAC1} \(c1\)")
            # udhcpc: a lease, another address than dhclient's, renewed (SIGUSR1: a
            # unicast REQUEST with ciaddr) and released (SIGUSR2)
            need("udhcpc")
            rec3 = tmp_path / "c3.record"
            script = recording_script(tmp_path / "c3.sh", rec3)
            u = subprocess.Popen([*link.prefix(c3), "udhcpc", "-f", "-t", "5", "-T", "1",
                                  "-i", "eth0", "-s", str(script), "-x", "hostname:c3"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                got3 = wait_record(rec3, "bound")
                assert got3["ip"] in ("10.77.0.100", "10.77.0.101")
                assert got3["ip"] != got1["ip"]
                assert got3["routers"] == "10.77.0.1" and got3["domain"] == "lab.test"
                start = len(server.lines)
                u.send_signal(signal.SIGUSR1)
                assert wait_record(rec3, "renew", after=1)["ip"] == got3["ip"]
                server.wait_for(rf"renewed {re.escape(got3['ip'])} {MAC3}", start=start)
                u.send_signal(signal.SIGUSR2)
                server.wait_for(rf"released {re.escape(got3['ip'])} {MAC3}")
            finally:
                stop(u)
            # the pool is full but for the released address: a new client gets it
            c4 = link.client(MAC4)
            r = link.run(c4, [sys.executable, "-m", "netkit.clients.dhcp", "-i", "eth0",
                              "--mac", MAC4, "-v"], timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
            assert f"address      {got3['ip']}/24" in r.stdout
        finally:
            stop(d1)
            stop(d2)
        listing = subprocess.run([sys.executable, "-m", "netkit.servers.dhcp", "leases",
                                  "--config", str(conf)], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
        assert re.search(rf"10\.77\.0\.50\s+{MAC2}\s+reserved\s+bound", listing), listing


def test_our_client_against_dnsmasq(tmp_path: Path) -> None:
    need("dnsmasq")
    with Link("10.78.0.1/24") as link:
        c1 = link.client(MAC1)
        dnsmasq = subprocess.Popen(
            [*link.prefix(link.server), "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
             "--port=0", "--interface=br0", "--bind-interfaces",
             "--dhcp-range=10.78.0.150,10.78.0.160,255.255.255.0,2m",
             "--dhcp-option=option:router,10.78.0.1", "--dhcp-option=option:dns-server,"
             "10.78.0.53", "--domain=peer.test", f"--dhcp-leasefile={tmp_path / 'dm.leases'}",
             f"--pid-file={tmp_path / 'dm.pid'}", "--log-dhcp"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(0.5)
            r = link.run(c1, [sys.executable, "-m", "netkit.clients.dhcp", "-i", "eth0",
                              "--mac", MAC1, "--hostname", "ours", "-v", "--release"],
                         timeout=30)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "< DHCPOFFER yiaddr=10.78.0.1" in r.stdout
            lease = dict(line.split(None, 1) for line in r.stdout.splitlines()
                         if line and not line.startswith(("<", ">")))
            assert lease["address"].startswith("10.78.0.1") and "/24" in lease["address"]
            assert lease["router"] == "10.78.0.1" and lease["dns"] == "10.78.0.53"
            assert lease["domain"] == "peer.test" and lease["server"] == "10.78.0.1"
            assert lease["lease"].startswith("time   120 s")
        finally:
            out = stop(dnsmasq)  # type: ignore[arg-type]
        assert "DHCPRELEASE" in out, out


def test_ping_check_skips_an_address_someone_uses_without_a_lease(spawn,
                                                                   tmp_path: Path) -> None:
    with Link("10.77.0.1/24") as link:
        squatter, c1 = link.client(MAC3), link.client(MAC1)
        subprocess.run([*link.prefix(squatter), "ip", "addr", "add", "10.77.0.100/24",
                        "dev", "eth0"], check=True)  # a static address, no lease
        conf = server_config(tmp_path, ping_check="true")
        server = spawn("netkit.servers.dhcp", ["--config", str(conf)],
                       prefix=link.prefix(link.server))
        server.wait_for(r"listening on 10\.77\.0\.1:67 ")
        r = link.run(c1, [sys.executable, "-m", "netkit.clients.dhcp", "-i", "eth0",
                          "--mac", MAC1], timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "address      10.77.0.101/24" in r.stdout
        server.wait_for(r"10\.77\.0\.100 answered a ping but nobody holds a lease for it")
