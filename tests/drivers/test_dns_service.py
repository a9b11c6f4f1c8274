"""The DNS server's query handling in-process: fuzzed packets, coalescing, no sockets needed
beyond one fake authority."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

import anyio
from dnslib import QTYPE, RR, A, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from netkit.config import Address
from netkit.proto.dns.cache import Cache
from netkit.servers.dns.resolver import Resolver
from netkit.servers.dns.service import Config, DNSService, LocalRecord

VALID = [DNSRecord.question(n, t).pack() for n, t in (
    ("router.lan", "A"), ("localhost", "AAAA"), ("example.com", "ANY"), ("x.test", "MX"))]


def service(tmp_path) -> DNSService:  # type: ignore[no-untyped-def]
    # the root is a loopback address where nothing listens: queries end at once (ICMP)
    hints = tmp_path / "root.hints"
    hints.write_text(". 1 NS a.root.\na.root. 1 A 127.0.0.9\n")
    return DNSService(Config(local=(LocalRecord(name="router.lan", value="192.168.1.1"),),
                             listen=(Address("127.0.0.1", 0),), total_timeout=0.05,
                             server_timeout=0.01, root_hints=hints,
                             query_private_authorities=True))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=600),
                          st.tuples(st.sampled_from(VALID), st.binary(min_size=1, max_size=8),
                                    st.integers(0, 40)).map(
                              lambda t: bytes(b ^ (t[1][i % len(t[1])] if i >= t[2] else 0)
                                              for i, b in enumerate(t[0])))),
                max_size=20))
def test_random_and_mutated_packets_never_raise(tmp_path_factory, packets):
    async def main() -> None:
        svc = service(tmp_path_factory.mktemp("hints"))
        replies: list[bytes] = []
        for data in packets:
            for client in ("127.0.0.1", "203.0.113.9"):  # allowed, and refused
                svc.handle(data, client, replies.append, 65535)
        for _ in range(200):  # resolutions end within total_timeout (0.05 s)
            if not svc.resolver._inflight:
                break
            await asyncio.sleep(0.005)
        assert not svc.resolver._inflight
        for reply in replies:
            assert len(reply) >= 12 and reply[2] & 0x80  # always a response, never garbage
    asyncio.run(main())


def test_identical_concurrent_questions_make_one_upstream_query():
    seen: list[bytes] = []
    auth = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    auth.bind(("127.0.0.1", 0))
    port = auth.getsockname()[1]

    def authority() -> None:  # answers everything after 0.2 s, authoritatively
        auth.settimeout(5)
        while True:
            try:
                data, addr = auth.recvfrom(4096)
            except OSError:
                return
            seen.append(data)
            q = DNSRecord.parse(data)
            r = q.reply()
            r.header.aa = 1
            r.add_answer(RR(q.q.qname, QTYPE.A, ttl=60, rdata=A("192.0.2.7")))
            time.sleep(0.2)
            auth.sendto(r.pack(), addr)

    threading.Thread(target=authority, daemon=True).start()
    resolver = Resolver(root_hints=". 1 NS a.root.\na.root. 1 A 127.0.0.1\n", cache=Cache(),
                        port=port, query_private_authorities=True, qname_minimisation=False)

    async def main() -> list:
        return await asyncio.gather(*(resolver.resolve("www.example.test.", QTYPE.A)
                                      for _ in range(20)))

    results = asyncio.run(main())
    auth.close()
    resolver.exchange.close()  # its epoll, not left to the garbage collector
    assert all(r.answer[0].address == "192.0.2.7" for r in results)
    assert len(seen) == 1 and resolver.upstream_queries == 1


def test_both_loopbacks_by_default_and_no_ipv6_is_one_warning(monkeypatch, caplog):
    import errno as errno_mod

    from netkit.servers.dns import service as service_mod

    assert Config().listen == (Address("127.0.0.1", 5300), Address("::1", 5300))
    real = service_mod.bind_udp_tcp

    def no_ipv6(address, **kw):  # type: ignore[no-untyped-def]
        if ":" in address.host:
            raise OSError(errno_mod.EADDRNOTAVAIL, "Cannot assign requested address")
        return real(address, **kw)

    monkeypatch.setattr(service_mod, "bind_udp_tcp", no_ipv6)

    async def main() -> None:
        service = DNSService(Config(listen=(Address("127.0.0.1", 0), Address("::1", 0))))
        async with anyio.create_task_group() as tg:
            await service.start(tg, {})
            assert [str(a.host) for a in service.tcp.addresses] == ["127.0.0.1"]
            service.udp.close()
            service.tcp.close()
            tg.cancel_scope.cancel()

    anyio.run(main, backend="asyncio")
    assert "not listening on [::1]:0: Cannot assign requested address (no IPv6" in caplog.text


def test_any_octet_in_a_label_is_answered_and_nothing_leaks(tmp_path):
    # \xff in a label, a dot and a backslash inside labels: legal (RFC 2181 11)
    names = [b"\x01\xff\x02fw\x07example\x00", b"\x03a.b\x03c\\d\x00"]

    async def main() -> None:
        svc = service(tmp_path)
        svc.resolver.engine.qname_minimisation = False  # the whole odd name goes upstream
        replies: list[bytes] = []
        for i in range(300):
            wire = names[i % 2]
            query = struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + wire + b"\x00\x01\x00\x01"
            svc.handle(query, "127.0.0.1", replies.append, 65535,
                       svc.fast_answer(query, "127.0.0.1")[1])
        for _ in range(200):
            if not svc.resolver._inflight and len(replies) == 300:
                break
            await asyncio.sleep(0.005)
        assert not svc.resolver._inflight  # every waiter answered, none left behind
        assert len(replies) == 300
        for reply in replies:  # SERVFAIL here (the fake root is silent), with the question
            assert reply[3] & 0x0F == 2 and (names[0] in reply or names[1] in reply)
        svc.resolver.exchange.close()  # its epoll, not left to the garbage collector
    asyncio.run(main())


def _ask(svc: DNSService, query: bytes) -> list[bytes]:
    out: list[bytes] = []
    svc.handle(query, "127.0.0.1", out.append, 65535, svc.fast_answer(query, "127.0.0.1")[1])
    return out


def test_header_rules_formerr_badvers_tc_and_ad(tmp_path):
    from dnslib import EDNS0

    async def main() -> None:
        svc = service(tmp_path)
        header = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
        for qname in (b"\x40" + b"a" * 64 + b"\x00",  # a label of 64 octets
                      b"".join(b"\x3f" + b"b" * 63 for _ in range(4)) + b"\x00"):  # 257
            (reply,) = _ask(svc, header + qname + b"\x00\x01\x00\x01")
            assert reply[:2] == b"\x00\x07" and reply[2] & 0x80 and reply[3] & 0x0F == 1
        q = DNSRecord.question("localhost", "A")
        q.add_ar(EDNS0(version=1))
        (reply,) = _ask(svc, q.pack())
        r = DNSRecord.parse(reply)
        opt = next(rr for rr in r.ar if rr.rtype == QTYPE.OPT)
        assert r.header.rcode == 0 and (opt.ttl >> 24) == 1 and (opt.ttl >> 16) & 0xFF == 0
        q = DNSRecord.question("router.lan", "A")
        q.header.tc, q.header.ad = 1, 1
        (reply,) = _ask(svc, q.pack())
        r = DNSRecord.parse(reply)
        assert not r.header.tc and not r.header.ad and r.header.aa
    asyncio.run(main())


def test_built_in_zones_are_answered_here_and_local_and_forward_come_first(tmp_path):
    from netkit.servers.dns.service import ForwardZone

    async def main() -> None:
        hints = tmp_path / "root.hints"
        hints.write_text(". 1 NS a.root.\na.root. 1 A 127.0.0.9\n")
        svc = DNSService(Config(
            listen=(Address("127.0.0.1", 0),), root_hints=hints, total_timeout=0.05,
            server_timeout=0.01, query_private_authorities=True, version="netkit-test",
            local=(LocalRecord(name="1.1.168.192.in-addr.arpa", type="PTR",
                               value="router.lan."),),
            forward=(ForwardZone(zone="10.in-addr.arpa", servers=(Address("127.0.0.9", 53),)),)))

        def ask(name: str, qtype: str, qclass: str = "IN") -> DNSRecord:
            (reply,) = _ask(svc, DNSRecord.question(name, qtype, qclass).pack())
            return DNSRecord.parse(reply)

        for name in ("1.0.0.127.in-addr.arpa", "1." + "0." * 31 + "ip6.arpa"):
            r = ask(name, "PTR")
            assert r.header.aa and str(r.rr[0].rdata) == "localhost."
        for name in ("9.9.168.192.in-addr.arpa", "5.20.172.in-addr.arpa", "x.invalid",
                     "a.test", "1.2.0.192.in-addr.arpa"):
            r = ask(name, "PTR")
            assert r.header.rcode == 3 and r.header.aa and r.auth[0].rtype == QTYPE.SOA, name
        assert svc.resolver.upstream_queries == 0  # none of those went upstream
        assert str(ask("1.1.168.192.in-addr.arpa", "PTR").rr[0].rdata) == "router.lan."
        r = ask("version.bind", "TXT", "CH")
        assert r.header.rcode == 0 and str(r.rr[0].rdata) == '"netkit-test"'
        assert ask("id.server", "TXT", "CH").header.rcode == 5  # hidden: no identity set
        # a forward zone over a built-in one: the forwarders are asked, not answered here
        replies: list[bytes] = []
        svc.handle(DNSRecord.question("4.3.2.10.in-addr.arpa", "PTR").pack(), "127.0.0.1",
                   replies.append, 65535)
        for _ in range(100):
            if replies:
                break
            await asyncio.sleep(0.005)
        svc.resolver.exchange.close()  # its epoll, not left to the garbage collector
        assert svc.resolver.upstream_queries >= 1
    asyncio.run(main())
