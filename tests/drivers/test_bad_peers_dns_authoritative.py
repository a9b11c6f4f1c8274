"""The bad-peer kit against the authoritative-only DNS server (what the netkit_dns
fixture runs, here with a 1 s TCP idle timeout): garbage over TCP and UDP, a flood of
connections, pipelined queries never read; a good client is answered throughout and
nothing is left behind."""

from __future__ import annotations

import socket
import struct
import time

from dnslib import DNSRecord

from netkit.testing.dns import DNSZones
from tests.support.badpeers import Meanwhile, flood, garbage, never_reads


def framed(name: str, ident: int) -> bytes:
    q = DNSRecord.question(name)
    q.header.id = ident
    data = q.pack()
    return struct.pack("!H", len(data)) + data


def test_bad_peers_do_not_stop_the_answers() -> None:
    with DNSZones({"dns": {"tcp": {"idle_timeout": "1s"}}}) as dns:
        check(dns)


def check(netkit_dns: DNSZones) -> None:
    netkit_dns.add("api.test", "A", "192.0.2.10")
    address = (netkit_dns.host, netkit_dns.port)

    def good() -> bool:
        reply = DNSRecord.parse(DNSRecord.question("api.test").send(*address, timeout=2))
        return str(reply.a.rdata) == "192.0.2.10"

    with Meanwhile(good, interval=0.05) as meanwhile:
        # garbage over TCP: a length prefix and noise; closed, never a hang
        started = time.monotonic()
        garbage(address, size=4096, seed=7, timeout=5)
        assert time.monotonic() - started < 2  # the idle timeout at the latest
        # garbage over UDP: a header-sized message with a bad question gets FORMERR
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(2)
            udp.sendto(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff", address)
            reply = udp.recv(512)
            assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == 1  # FORMERR
        assert flood(address, framed("api.test", 1), connections=200) == 200
        with never_reads(address, b"".join(framed("api.test", i) for i in range(5000))):
            time.sleep(0.5)
    assert not meanwhile.failures and meanwhile.answered >= 5
    assert netkit_dns.server is not None and netkit_dns.server.counters["formerr"] >= 1
    deadline = time.monotonic() + 5
    while netkit_dns.server.counters["active"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert netkit_dns.server.counters["active"] == 0
