"""DHCP servers sharing one PostgreSQL lease database (Debian's postgresql, started here
on a free loopback port as an unprivileged user, stopped by PID): two servers answering
a few hundred clients at once never hand one address to two clients; a server that
loses the database answers renewals only, then recovers by itself; the schema is
versioned; the `leases` command reads the database."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from netkit.clients import dhcp
from netkit.clients.dhcp import DHCPError
from netkit.proto.dhcp import options as o
from netkit.proto.dhcp.client import ClientSession
from netkit.proto.dhcp.packet import build, parse
from netkit.running import serve_in_thread
from netkit.testing.dhcp import GIADDR
from netkit.testing.postgres import PostgresServer, postgres_bin

pytestmark = pytest.mark.peer
CLIENTS = int(os.environ.get("NETKIT_DHCP_PG_CLIENTS", "300"))


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    if postgres_bin() is None:
        pytest.skip("no PostgreSQL server (bash scripts/install-peers.sh)")
    with PostgresServer() as pg:
        yield pg


@pytest.fixture
def database(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A database of its own for each test."""
    name = "t_" + request.node.name.lower()[:50].replace("[", "_").replace("]", "")

    async def create() -> None:
        conn = await asyncpg.connect(postgres.dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
    asyncio.run(create())
    return postgres.dsn.rsplit("/", 1)[0] + "/" + name


def server(dsn: str, server_id: str, **extra: Any):  # type: ignore[no-untyped-def]
    return serve_in_thread("dhcp", {"dhcp": {
        "interface": "lo", "subnet": "127.0.8.0/22", "pool": ["127.0.8.10-127.0.9.144"],
        "server_id": server_id, "port": 0, "lease_db": dsn, "offer_timeout": "2s",
        "max_offers": 4096, **extra}})


def rows(dsn: str) -> list[asyncpg.Record]:
    async def read() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetch("SELECT address, client, state, expires, server "
                                    "FROM netkit_leases")
        finally:
            await conn.close()
    return asyncio.run(read())


class Clients(asyncio.DatagramProtocol):
    """Many clients behind one relay agent: every DISCOVER and REQUEST goes to every
    server (as a broadcast on the client's link would), answers are told apart by xid."""

    def __init__(self, servers: list[tuple[str, int]]) -> None:
        self.servers = servers
        self.waiting: dict[int, asyncio.Queue[Any]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = parse(data)
        queue = self.waiting.get(reply.xid)
        if queue is not None:
            queue.put_nowait(reply)

    def send(self, msg: Any) -> None:
        assert self.transport is not None
        for where in self.servers:
            self.transport.sendto(build(msg, 1400), where)

    async def answer(self, session: ClientSession, kinds: tuple[int, ...],
                     timeout: float) -> Any:
        queue = self.waiting[session.xid]
        deadline = asyncio.get_running_loop().time() + timeout
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                reply = await asyncio.wait_for(queue.get(), left)
            except TimeoutError:
                return None
            if session.answers(reply, *kinds):
                return reply
        return None

    async def dora(self, i: int) -> tuple[str, str]:
        """(the address, the server that gave it), trying again as a client does."""
        mac = f"02:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01"
        for attempt in range(15):
            # a new exchange, a new xid: a late answer to the last one is not taken for
            # an answer to this one
            session = ClientSession(mac, xid=(attempt << 24) + i, giaddr=GIADDR)
            self.waiting[session.xid] = asyncio.Queue()
            self.send(session.discover())
            offer = await self.answer(session, (o.OFFER,), 1.0)
            if offer is None:
                continue
            self.send(session.request(offer))
            ack = await self.answer(session, (o.ACK, o.NAK), 1.0)
            if ack is not None and ack.type == o.ACK:
                assert ack.yiaddr == offer.yiaddr
                return ack.yiaddr, ack.ip_option(54)
            await asyncio.sleep(0.05 * attempt)
        raise AssertionError(f"client {i} got no lease")


async def crowd(servers: list[tuple[str, int]], count: int) -> list[tuple[str, str]]:
    loop = asyncio.get_running_loop()
    _, clients = await loop.create_datagram_endpoint(
        lambda: Clients(servers), local_addr=(GIADDR, 0))
    try:
        return await asyncio.gather(*(clients.dora(i) for i in range(count)))
    finally:
        assert clients.transport is not None
        clients.transport.close()


def test_two_servers_never_hand_one_address_to_two_clients(database: str) -> None:
    with server(database, "127.0.8.1") as a, server(database, "127.0.8.2") as b:
        got = asyncio.run(crowd([a.addresses[0], b.addresses[0]], CLIENTS))
        addresses = [address for address, _ in got]
        twice = {x for x in addresses if addresses.count(x) > 1}
        assert not twice, [(i, got[i], [dict(r) for r in rows(database)
                                        if r["address"] == got[i][0]])
                           for i in range(CLIENTS) if got[i][0] in twice]
        by_server = {s: sum(1 for _, x in got if x == s) for s in ("127.0.8.1", "127.0.8.2")}
        assert all(by_server.values()), by_server  # both servers did answer
        bound = {r["address"]: r["client"] for r in rows(database) if r["state"] == "bound"}
        for i, (address, _) in enumerate(got):  # each client holds what it was given
            assert bound.get(address) == f"mac:02:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:" \
                f"{i & 255:02x}:01", (i, address)
        # a client that went with the other server's offer after a timeout may leave a
        # lease it does not use, bound until it expires (never one another client has)
        assert len(bound) >= CLIENTS
        assert {r["server"] for r in rows(database)} <= \
            {f"{socket.gethostname()}:{os.getpid()}/127.0.8.{n}" for n in (1, 2)}
        # offers the clients did not take were claimed too, and refused to the other
        refused = a.counters["claims_refused"] + b.counters["claims_refused"]
        assert a.counters["acks"] + b.counters["acks"] >= CLIENTS
        print(f"leases by server {by_server}, claims refused {refused}, "
              f"unused bound {len(bound) - CLIENTS}")


def test_a_lease_made_by_one_server_is_renewed_by_the_other(database: str) -> None:
    with server(database, "127.0.8.1") as a, server(database, "127.0.8.2") as b:
        where_a = f"127.0.0.1:{a.addresses[0][1]}"
        where_b = f"127.0.0.1:{b.addresses[0][1]}"
        lease = asyncio.run(dhcp.obtain(server=where_a, giaddr=GIADDR, mac="02:00:00:00:0a:01"))
        time.sleep(1.5)  # B reads what A wrote
        again = asyncio.run(dhcp.renew(lease, server=where_b, giaddr=GIADDR, rebinding=True))
        assert again.address == lease.address and again.server == "127.0.8.2"
        other = asyncio.run(dhcp.obtain(server=where_b, giaddr=GIADDR,
                                        mac="02:00:00:00:0a:02"))
        assert other.address != lease.address


def test_losing_the_database_renewals_only_then_back_by_itself(postgres: PostgresServer,
                                                               database: str) -> None:
    with server(database, "127.0.8.1", db_timeout="0.5s") as a:
        where = f"127.0.0.1:{a.addresses[0][1]}"
        lease = asyncio.run(dhcp.obtain(server=where, giaddr=GIADDR, mac="02:00:00:00:0b:01"))
        granted = time.time() + lease.lease_time
        postgres.stop()
        try:
            deadline = time.monotonic() + 10
            while a.counters["db_available"]:
                assert time.monotonic() < deadline, "the loss was not noticed"
                time.sleep(0.1)
            renewed = asyncio.run(dhcp.renew(lease, server=where, giaddr=GIADDR))
            assert renewed.address == lease.address
            # never past what the database granted: another server may take it then
            assert renewed.lease_time <= granted - time.time() + 1
            assert renewed.lease_time > lease.lease_time - 30
            with pytest.raises(DHCPError):  # nothing new
                asyncio.run(dhcp.obtain(server=where, giaddr=GIADDR,
                                        mac="02:00:00:00:0b:02", timeout=1, attempts=2))
            assert a.status()["drops"].get(
                "no new leases: the lease database is unreachable", 0) >= 1
        finally:
            postgres.start()
        deadline = time.monotonic() + 15
        while not a.counters["db_available"]:
            assert time.monotonic() < deadline, "did not reconnect"
            time.sleep(0.1)
        newcomer = asyncio.run(dhcp.obtain(server=where, giaddr=GIADDR,
                                           mac="02:00:00:00:0b:02"))
        assert newcomer.address != lease.address
        assert a.counters["db_outages"] == 1
    states = {r["address"]: r["state"] for r in rows(database)}
    assert states[newcomer.address] == "bound" and states[lease.address] == "bound"


def test_past_the_grace_period_nothing_is_answered(postgres: PostgresServer,
                                                   database: str) -> None:
    with server(database, "127.0.8.1", db_timeout="0.5s", db_grace="1s") as a:
        where = f"127.0.0.1:{a.addresses[0][1]}"
        lease = asyncio.run(dhcp.obtain(server=where, giaddr=GIADDR, mac="02:00:00:00:0c:01"))
        postgres.stop()
        try:
            deadline = time.monotonic() + 10
            while not a.counters["db_past_grace"]:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            with pytest.raises(DHCPError):
                asyncio.run(dhcp.renew(lease, server=where, giaddr=GIADDR, timeout=1,
                                       attempts=2))
        finally:
            postgres.start()
        deadline = time.monotonic() + 15
        while not a.counters["db_available"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert asyncio.run(dhcp.renew(lease, server=where, giaddr=GIADDR)).address == \
            lease.address


def test_the_schema_is_versioned_and_a_newer_one_is_refused(database: str) -> None:
    with server(database, "127.0.8.1"):
        pass

    async def bump() -> int:
        conn = await asyncpg.connect(database)
        try:
            version = await conn.fetchval("SELECT version FROM netkit_schema")
            await conn.execute("UPDATE netkit_schema SET version = 99")
            return int(version)
        finally:
            await conn.close()
    assert asyncio.run(bump()) == 1
    with pytest.raises(Exception, match="schema 99 is newer"), server(database, "127.0.8.1"):
        pass


def test_the_leases_command_reads_postgresql_and_check_config_touches_nothing(
        database: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    conf = tmp_path / "dhcp.toml"
    conf.write_text(f'[dhcp]\ninterface = "lo"\nsubnet = "127.0.8.0/22"\n'
                    f'pool = ["127.0.8.10-127.0.8.20"]\nlease_db = "{database}"\n')
    check = subprocess.run([sys.executable, "-m", "netkit.servers.dhcp", "--config",
                            str(conf), "--check-config"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    out = subprocess.run([sys.executable, "-m", "netkit.servers.dhcp", "leases", "--config",
                          str(conf), "--json"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout) == [], out.stderr

    async def tables() -> list[str]:
        conn = await asyncpg.connect(database)
        try:
            return [r[0] for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        finally:
            await conn.close()
    assert asyncio.run(tables()) == []  # neither made a schema
    with server(database, "127.0.8.1") as a:
        lease = asyncio.run(dhcp.obtain(server=f"127.0.0.1:{a.addresses[0][1]}",
                                        giaddr=GIADDR, mac="02:00:00:00:0d:01"))
    out = subprocess.run([sys.executable, "-m", "netkit.servers.dhcp", "leases", "--config",
                          str(conf), "--json"], capture_output=True, text=True)
    table = json.loads(out.stdout)
    assert [(r["address"], r["mac"], r["state"]) for r in table] == \
        [(lease.address, "02:00:00:00:0d:01", "bound")]
