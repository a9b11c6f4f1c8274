"""The DHCP server on the loopback interface: our client against it (as a relay agent
would talk to it), bad input, a flood, reload, durability, and the refusal to start
without an interface and a subnet."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netkit import events
from netkit.clients import dhcp
from netkit.proto.dhcp import options as o
from netkit.proto.dhcp.client import ClientSession
from netkit.proto.dhcp.packet import MAGIC, build, parse
from netkit.testing.dhcp import GIADDR, DHCPTestServer

MAC = "02:00:00:00:10:01"


def relay_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((GIADDR, 0))
    s.settimeout(2)
    return s


def test_our_client_gets_renews_and_releases_a_lease(netkit_dhcp) -> None:
    got: list[object] = []
    unsubscribe = events.subscribe("dhcp.lease", got.append)
    try:
        lease = netkit_dhcp.obtain(mac=MAC, hostname="laptop")
        assert lease.address == "127.0.10.100" and lease.router == ["127.0.10.1"]
        assert lease.dns == ["127.0.10.53"] and lease.domain == "lan.test"
        assert lease.lease_time == 3600 and lease.prefix == 24
        renewed = asyncio.run(dhcp.renew(lease, server=netkit_dhcp.address,
                                         giaddr=GIADDR))
        assert renewed.address == lease.address
        asyncio.run(dhcp.release(lease, server=netkit_dhcp.address, giaddr=GIADDR))
        deadline = time.monotonic() + 5
        while netkit_dhcp.leases()[lease.address][1] != "released":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        unsubscribe()
    kinds = [(e.kind, e.lease.hostname) for e in got]  # type: ignore[attr-defined]
    assert kinds == [("new", "laptop"), ("renewed", "laptop"), ("released", "laptop")]
    assert netkit_dhcp.counters["acks"] == 2 and netkit_dhcp.counters["releases"] == 1


def test_bad_input_is_counted_and_dropped_never_a_crash(netkit_dhcp) -> None:
    good = build(ClientSession(MAC, xid=5, giaddr=GIADDR).discover(), 600)
    bad = [b"", b"x", os.urandom(100), bytes(236) + MAGIC,          # short, garbage, op 0
           b"\x01\x01\x06\x00" + bytes(232) + b"junk" + b"\xff",    # wrong magic cookie
           good[:240] + b"\x35\xff\x01",                           # an option past the end
           good[:240] + b"\x34\x01\x09\xff",                       # overload 9
           bytes([2]) + good[1:]]                                  # a BOOTREPLY
    with relay_socket() as s:
        for data in bad:
            s.sendto(data, ("127.0.0.1", netkit_dhcp.port))
        for _ in range(200):
            blob = bytearray(good)
            for _ in range(4):
                blob[random.randrange(len(blob))] = random.randrange(256)
            s.sendto(bytes(blob), ("127.0.0.1", netkit_dhcp.port))
        s.sendto(good, ("127.0.0.1", netkit_dhcp.port))
        while True:  # the good one is still answered (mutated ones may be too)
            reply = parse(s.recvfrom(4096)[0])
            if reply.xid == 5:
                break
    counters = netkit_dhcp.counters
    assert counters["malformed"] >= 6 and counters["dropped"] >= 1
    assert netkit_dhcp.obtain(mac=MAC).address.startswith("127.0.10.")


def test_a_flood_of_random_macs_does_not_exhaust_the_pool() -> None:
    with DHCPTestServer(max_offers=30) as server, relay_socket() as s:
        for i in range(500):
            mac = "02:" + ":".join(f"{random.randrange(256):02x}" for _ in range(5))
            s.sendto(build(ClientSession(mac, xid=i, giaddr=GIADDR).discover(), 600),
                     ("127.0.0.1", server.port))
        time.sleep(0.5)
        assert server.counters["offers"] == 30
        assert server.server is not None
        drops = server.server.status()["drops"]
        # dropped and counted (the socket's buffer may drop some of the burst before us)
        assert 100 <= drops["too many offers outstanding"] <= 470
        held = [a for a, (_, state) in server.leases().items() if state == "offered"]
        assert len(held) == 30  # of 100: most of the pool was never touched


def test_offers_lapse_and_a_real_client_gets_through_after_a_flood() -> None:
    with DHCPTestServer(max_offers=5, offer_timeout=1) as server, relay_socket() as s:
        for i in range(50):
            mac = "02:" + ":".join(f"{random.randrange(256):02x}" for _ in range(5))
            s.sendto(build(ClientSession(mac, xid=i, giaddr=GIADDR).discover(), 600),
                     ("127.0.0.1", server.port))
        time.sleep(2.5)  # the expiry pass runs each second
        assert server.obtain(mac=MAC).address.startswith("127.0.10.")


def test_inform_and_a_nak_for_a_wrong_network(netkit_dhcp) -> None:
    with relay_socket() as s:
        c = ClientSession(MAC, xid=77, giaddr=GIADDR)
        inform = c._message(o.INFORM)
        inform.ciaddr = "127.0.10.42"
        s.sendto(build(inform, 600), ("127.0.0.1", netkit_dhcp.port))
        reply = parse(s.recvfrom(4096)[0])
        assert reply.type == o.ACK and reply.yiaddr == "0.0.0.0" and 51 not in reply.options
        assert reply.options[15] == b"lan.test"
        reboot = c._message(o.REQUEST, o50=o.encode(50, "10.1.2.3"))
        s.sendto(build(reboot, 600), ("127.0.0.1", netkit_dhcp.port))
        nak = parse(s.recvfrom(4096)[0])
        assert nak.type == o.NAK and nak.options[56] == b"wrong network"


def test_without_an_interface_and_a_subnet_it_refuses_to_start(tmp_path: Path) -> None:
    for args in ([], ["--set", "dhcp.interface=lo"],
                 ["--set", "dhcp.subnet=127.0.10.0/24"]):
        r = subprocess.run([sys.executable, "-m", "netkit.servers.dhcp", *args],
                           capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert "not set: a DHCP server answers only on the interface and for the subnet" \
            in r.stderr
    assert not list(tmp_path.iterdir())  # no lease database was made
    r = subprocess.run([sys.executable, "-m", "netkit.servers.dhcp", "--workers", "2",
                        "--set", "dhcp.interface=lo", "--set", "dhcp.subnet=127.0.10.0/24",
                        "--set", 'dhcp.pool=["127.0.10.100-127.0.10.110"]'],
                       capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert r.returncode == 2 and "one lease database per server" in r.stderr


def _config(tmp_path: Path, reservation: str = "") -> Path:
    conf = tmp_path / "dhcp.toml"
    conf.write_text(f"""[dhcp]
interface = "lo"
subnet = "127.0.10.0/24"
pool = ["127.0.10.100-127.0.10.120"]
port = 0
lease_db = "{tmp_path / 'leases.db'}"
{reservation}
""")
    return conf


def test_sighup_changes_reservations_and_a_broken_config_keeps_the_old(spawn,
                                                                       tmp_path: Path) -> None:
    conf = _config(tmp_path)
    proc = spawn("netkit.servers.dhcp", ["--config", str(conf)])
    ((_, port),) = proc.listening(1)
    where = f"127.0.0.1:{port}"
    first = asyncio.run(dhcp.obtain(server=where, giaddr=GIADDR, mac=MAC))
    assert first.address == "127.0.10.100"
    conf.write_text(conf.read_text() + '\n[[dhcp.reservation]]\nmac = "02:00:00:00:10:02"\n'
                    'address = "127.0.10.7"\nhostname = "printer"\n')
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"reloaded: 1 subnet\(s\), 1 reservation")
    printer = asyncio.run(dhcp.obtain(server=where, giaddr=GIADDR, mac="02:00:00:00:10:02"))
    assert printer.address == "127.0.10.7" and printer.hostname == "printer"
    conf.write_text(conf.read_text().replace('pool = ["127.0.10.100-127.0.10.120"]',
                                             'pool = ["10.9.9.9-10.9.9.1"]'))
    start = len(proc.lines)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"pool: '10\.9\.9\.9-10\.9\.9\.1' is not a range", start=start)
    again = asyncio.run(dhcp.obtain(server=where, giaddr=GIADDR, mac="02:00:00:00:10:03"))
    assert again.address == "127.0.10.101"  # still serving the old pool
    assert proc.proc.poll() is None and "Traceback" not in proc.log


def test_an_acknowledged_lease_survives_sigkill(spawn, tmp_path: Path) -> None:
    conf = _config(tmp_path)
    proc = spawn("netkit.servers.dhcp", ["--config", str(conf)])
    ((_, port),) = proc.listening(1)
    lease = asyncio.run(dhcp.obtain(server=f"127.0.0.1:{port}", giaddr=GIADDR, mac=MAC,
                                    hostname="keep"))
    proc.proc.send_signal(signal.SIGKILL)  # right after the ACK: it was on disk before
    proc.proc.wait()
    out = subprocess.run([sys.executable, "-m", "netkit.servers.dhcp", "leases", "--config",
                          str(conf)], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    assert f"{lease.address}     {MAC}  keep" in out and " bound " in out
    proc = spawn("netkit.servers.dhcp", ["--config", str(conf)])
    ((_, port),) = proc.listening(1)
    other = asyncio.run(dhcp.obtain(server=f"127.0.0.1:{port}", giaddr=GIADDR,
                                    mac="02:00:00:00:10:09"))
    assert other.address != lease.address  # the restarted server knows it is taken
    again = asyncio.run(dhcp.obtain(server=f"127.0.0.1:{port}", giaddr=GIADDR, mac=MAC))
    assert again.address == lease.address


def test_the_client_command_line_prints_the_exchange(netkit_dhcp) -> None:
    r = subprocess.run([sys.executable, "-m", "netkit.clients.dhcp", "--server",
                        netkit_dhcp.address, "--giaddr", GIADDR, "--mac", MAC, "-v"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("> DHCPDISCOVER") and lines[1].startswith("< DHCPOFFER")
    assert lines[2].startswith("> DHCPREQUEST") and lines[3].startswith("< DHCPACK")
    assert "address      127.0.10.100/24 (netmask 255.255.255.0)" in lines
    r = subprocess.run([sys.executable, "-m", "netkit.clients.dhcp", "--server",
                        "127.0.0.1:9", "--giaddr", GIADDR, "--timeout", "0.2"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "no DHCPOFFER after 4 tries" in r.stderr


@pytest.mark.parametrize("key,value,message", [
    ("dhcp.pool", '["127.0.10.0-127.0.10.5"]', "network's own or broadcast"),
    ("dhcp.options", '{"no-such" = 1}', "unknown DHCP option 'no-such'"),
    ("dhcp.subnet", '"::/64"', "an IPv4 network is needed"),
])
def test_config_problems_are_named(key: str, value: str, message: str) -> None:
    r = subprocess.run([sys.executable, "-m", "netkit.servers.dhcp", "--check-config",
                        "--set", "dhcp.interface=lo", "--set", "dhcp.subnet=127.0.10.0/24",
                        "--set", 'dhcp.pool=["127.0.10.100-127.0.10.110"]',
                        "--set", f"{key}={value}"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_several_subnets_are_chosen_by_the_relay_address(tmp_path: Path) -> None:
    from netkit.running import serve_in_thread

    toml = f"""[dhcp]
interface = "lo"
port = 0
lease_db = "{tmp_path / 'leases.db'}"
[[dhcp.subnet]]
subnet = "127.0.10.0/24"
pool = ["127.0.10.100-127.0.10.110"]
domain = "ten.test"
[[dhcp.subnet]]
subnet = "127.0.11.0/24"
pool = ["127.0.11.50-127.0.11.60"]
domain = "eleven.test"
options = {{ "ntp-servers" = ["127.0.11.2"], "121" = ["10.8.0.0/16 127.0.11.1"] }}
"""
    with serve_in_thread("dhcp", toml) as server:
        where = f"127.0.0.1:{server.addresses[0][1]}"
        ten = asyncio.run(dhcp.obtain(server=where, giaddr="127.0.10.1", mac=MAC))
        eleven = asyncio.run(dhcp.obtain(server=where, giaddr="127.0.11.1",
                                         mac="02:00:00:00:11:01"))
    assert ten.address == "127.0.10.100" and ten.domain == "ten.test"
    assert eleven.address == "127.0.11.50" and eleven.domain == "eleven.test"
    assert eleven.options["ntp-servers"] == ["127.0.11.2"]
    assert eleven.options["classless-static-routes"] == ["10.8.0.0/16 127.0.11.1"]


def test_the_bad_peer_kit_garbage_and_a_flood_while_a_good_client_renews(spawn,
                                                                          tmp_path: Path) -> None:
    """UDP has no reader to starve and no connection to trickle on: the kit's garbage and
    flood, sent as datagrams, with a good client renewing meanwhile and memory bounded."""
    from tests.support import badpeers

    conf = _config(tmp_path)
    proc = spawn("netkit.servers.dhcp", ["--config", str(conf)])
    ((_, port),) = proc.listening(1)
    where = f"127.0.0.1:{port}"
    lease = asyncio.run(dhcp.obtain(server=where, giaddr=GIADDR, mac=MAC))
    before = badpeers.rss_kib(proc.proc.pid)

    def renews() -> bool:
        again = asyncio.run(dhcp.renew(lease, server=where, giaddr=GIADDR, timeout=1,
                                       attempts=3))
        return again.address == lease.address

    rng = random.Random(7)
    with badpeers.Meanwhile(renews, interval=0.05) as good, relay_socket() as s:
        deadline = time.monotonic() + 3
        sent = 0
        while time.monotonic() < deadline and sent < 60_000:
            if sent % 2:
                data = rng.randbytes(rng.randrange(1, 600))
            else:
                mac = "02:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))
                data = build(ClientSession(mac, xid=sent, giaddr=GIADDR).discover(), 600)
            s.sendto(data, ("127.0.0.1", port))
            sent += 1
            if sent % 500 == 0:
                time.sleep(0.01)
    grown = badpeers.rss_kib(proc.proc.pid) - before
    assert good.answered >= 5 and not good.failures, good.failures
    assert grown < 20_000, f"RSS grew by {grown} KiB"  # offers capped at max_offers
    assert proc.proc.poll() is None and "Traceback" not in proc.log


def test_rebinding_is_broadcast_and_answered(netkit_dhcp) -> None:
    lease = netkit_dhcp.obtain(mac=MAC)
    again = asyncio.run(dhcp.renew(lease, server=netkit_dhcp.address, giaddr=GIADDR,
                                   rebinding=True))
    assert again.address == lease.address and again.lease_time == 3600


def test_the_operator_releases_a_lease(netkit_dhcp) -> None:
    from netkit.servers.dhcp.service import release_view

    lease = netkit_dhcp.obtain(mac=MAC)
    server = netkit_dhcp.server
    answer = server.call(lambda: release_view(server.service, {"address": lease.address}))
    assert answer == {"address": lease.address, "released": True}
    assert netkit_dhcp.leases()[lease.address] == (MAC, "released")
    with pytest.raises(ValueError):
        server.call(lambda: release_view(server.service, {"address": "127.0.10.250"}))
    other = netkit_dhcp.obtain(mac="02:00:00:00:10:77")  # the address is free again
    assert other.address.startswith("127.0.10.")


def test_the_leases_command_reads_paths_relative_to_its_config(tmp_path: Path) -> None:
    from netkit.proto.dhcp.leases import Lease
    from netkit.servers.dhcp.store import open_store

    async def save() -> None:
        store = open_store(tmp_path / "leases.db")
        await store.save([Lease("10.0.0.9", "mac:" + MAC, MAC, "box", "bound",
                                time.time() + 60, "10.0.0.0/24")])
        await store.close()
    asyncio.run(save())
    conf = tmp_path / "dhcp.toml"
    conf.write_text('[dhcp]\nlease_db = "leases.db"\n')
    r = subprocess.run([sys.executable, "-m", "netkit.servers.dhcp", "leases", "--config",
                        str(conf)], capture_output=True, text=True, timeout=30, cwd="/")
    assert r.returncode == 0, r.stderr
    assert "10.0.0.9" in r.stdout and "box" in r.stdout
