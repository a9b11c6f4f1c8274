"""Leases in PostgreSQL, shared by several DHCP servers (asyncpg).

    dhcp.lease_db = "postgresql://netkit@db.example/netkit"

Every server keeps its own view of the leases in memory (the engine decides from it)
and the database decides who gets an address: `save` writes a batch in one statement,
an upsert whose ON CONFLICT ... WHERE lets a row change only if

  - it is still the version this server last saw (nobody wrote it since), or
  - it is the same client's lease (a renewal, a release, an offer turned into a lease;
    not an offer over a client's own lease), or
  - it is free: released, expired, or past its expiry.

A client that ends up with another server's lease may leave a row it no longer uses
bound until it expires: a write that ended it could be a late one, and would then free
an address the client does use (a stale ACK's write, seen happen in the tests).

The primary key on the address makes a double booking impossible; what the upsert
refuses comes back with the row that won, so the server learns who holds the address
and picks again (an OFFER) or answers NAK (a REQUEST). Every write takes a version from
one sequence; `changes` reads what others wrote since (every second, from the server).

The schema is created and migrated on start, under an advisory lock so that servers
starting together do not race: `netkit_schema` holds its version, MIGRATIONS the steps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg

from netkit.proto.dhcp.leases import Lease

from .store import Saved, StoreUnavailable

log = logging.getLogger("netkit.dhcp")

MIGRATIONS = [
    # 0 -> 1
    """CREATE TABLE netkit_leases (
        address text PRIMARY KEY, client text NOT NULL, mac text NOT NULL,
        hostname text NOT NULL, state text NOT NULL, expires double precision NOT NULL,
        subnet text NOT NULL, version bigint NOT NULL, prior bigint NOT NULL,
        server text NOT NULL, written timestamptz NOT NULL DEFAULT now());
    CREATE SEQUENCE netkit_lease_versions;
    CREATE INDEX netkit_leases_by_version ON netkit_leases (version);""",
]
SCHEMA_VERSION = len(MIGRATIONS)
LOCK = 0x6E6B6468  # "nkdh": the advisory lock taken while migrating

COLUMNS = "address, client, mac, hostname, state, expires, subnet, version"
CLAIM = f"""
INSERT INTO netkit_leases AS l ({COLUMNS}, prior, server)
SELECT t.address, t.client, t.mac, t.hostname, t.state, t.expires, t.subnet,
       nextval('netkit_lease_versions'), t.prior, $9
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[],
            $7::text[], $8::int8[])
     AS t(address, client, mac, hostname, state, expires, subnet, prior)
ON CONFLICT (address) DO UPDATE SET
    client = EXCLUDED.client, mac = EXCLUDED.mac, hostname = EXCLUDED.hostname,
    state = EXCLUDED.state, subnet = EXCLUDED.subnet,
    -- two servers renewing one client's lease: the later expiry stands, whichever
    -- write lands last (the client may hold either answer)
    expires = CASE WHEN l.client = EXCLUDED.client AND l.state = 'bound'
                        AND EXCLUDED.state = 'bound'
                   THEN greatest(l.expires, EXCLUDED.expires) ELSE EXCLUDED.expires END,
    version = EXCLUDED.version, prior = EXCLUDED.prior, server = EXCLUDED.server,
    written = now()
WHERE l.version = EXCLUDED.prior
   OR (l.client = EXCLUDED.client AND l.client <> ''
       AND (EXCLUDED.state IN ('bound', 'released', 'declined')
            OR l.state <> 'bound' OR l.expires <= $10))
   OR l.state IN ('released', 'expired')
   OR l.expires <= $10
RETURNING l.address, l.version"""

UNAVAILABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
               asyncpg.InterfaceError, asyncpg.exceptions.OperatorInterventionError)


class _Connection:
    """One connection, made when first needed and again after it broke."""

    def __init__(self, dsn: str, timeout: float) -> None:
        self.dsn, self.timeout = dsn, timeout
        self.conn: asyncpg.Connection | None = None
        self.lock = asyncio.Lock()

    async def run(self, method: str, query: str, *args: Any) -> Any:
        async with self.lock:
            try:
                if self.conn is None or self.conn.is_closed():
                    self.conn = await asyncpg.connect(self.dsn, timeout=self.timeout)
                return await getattr(self.conn, method)(query, *args, timeout=self.timeout)
            except UNAVAILABLE as exc:
                self.drop()
                raise StoreUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.terminate()
            self.conn = None


class PostgresLeases:
    shared = True

    def __init__(self, dsn: str, *, timeout: float = 2.0, name: str = "",
                 readonly: bool = False) -> None:
        self.dsn = dsn
        self.readonly = readonly  # reading only: no schema made or changed
        self.name = name
        self.writes = _Connection(dsn, timeout)
        self.reads = _Connection(dsn, timeout)  # `changes` never waits behind a commit
        self.seen = 0  # the highest version read
        self.migrated = False

    def __repr__(self) -> str:
        return f"PostgresLeases({_without_password(self.dsn)})"

    async def migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION (one server at a time)."""
        async with self.writes.lock:
            try:
                if self.writes.conn is None or self.writes.conn.is_closed():
                    self.writes.conn = await asyncpg.connect(self.dsn,
                                                             timeout=self.writes.timeout)
                conn = self.writes.conn
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK)
                    await conn.execute("CREATE TABLE IF NOT EXISTS netkit_schema "
                                       "(version integer NOT NULL)")
                    version = await conn.fetchval("SELECT max(version) FROM netkit_schema")
                    version = version or 0
                    if version > SCHEMA_VERSION:
                        raise RuntimeError(f"lease database schema {version} is newer than "
                                           f"this server's ({SCHEMA_VERSION})")
                    for step in range(version, SCHEMA_VERSION):
                        await conn.execute(MIGRATIONS[step])
                        log.info("dhcp: lease database schema %d -> %d", step, step + 1)
                    if version < SCHEMA_VERSION:
                        await conn.execute("DELETE FROM netkit_schema")
                        await conn.execute("INSERT INTO netkit_schema VALUES ($1)",
                                           SCHEMA_VERSION)
            except UNAVAILABLE as exc:
                self.writes.drop()
                raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        self.migrated = True

    async def load(self) -> list[Lease]:
        if self.readonly:
            if await self.reads.run("fetchval", "SELECT to_regclass('netkit_leases')") is None:
                return []
        elif not self.migrated:
            await self.migrate()
        rows = await self.reads.run("fetch", f"SELECT {COLUMNS} FROM netkit_leases")
        leases = [_lease(r) for r in rows]
        self.seen = max((x.version for x in leases), default=0)
        return leases

    async def save(self, leases: list[Lease]) -> Saved:
        latest = {x.address: x for x in leases}  # a batch may change an address twice
        if not latest:
            return Saved()
        batch = list(latest.values())
        now = time.time()
        rows = await self.writes.run(
            "fetch", CLAIM, [x.address for x in batch], [x.client for x in batch],
            [x.mac for x in batch], [x.hostname for x in batch], [x.state for x in batch],
            [x.expires for x in batch], [x.subnet for x in batch],
            [x.version for x in batch], self.name, now)
        saved = Saved(versions={r["address"]: r["version"] for r in rows})
        refused = [a for a in latest if a not in saved.versions]
        if refused:
            held = await self.writes.run(
                "fetch", f"SELECT {COLUMNS} FROM netkit_leases WHERE address = ANY($1)",
                refused)
            by_address = {r["address"]: _lease(r) for r in held}
            saved.refused = {a: by_address.get(a) for a in refused}
        return saved

    async def changes(self) -> list[Lease]:
        # versions come from a sequence: a write that took an older number may commit
        # after a newer one was read, so the last few are read again
        rows = await self.reads.run(
            "fetch", f"SELECT {COLUMNS} FROM netkit_leases WHERE version > $1 "
                     f"ORDER BY version", max(self.seen - 64, 0))
        leases = [_lease(r) for r in rows]
        if leases:
            self.seen = max(self.seen, leases[-1].version)
        return leases

    async def close(self) -> None:
        for c in (self.writes, self.reads):
            if c.conn is not None and not c.conn.is_closed():
                try:
                    await asyncio.wait_for(c.conn.close(), 1)
                except (*UNAVAILABLE, asyncpg.PostgresError):
                    c.drop()
            c.conn = None


def _lease(row: asyncpg.Record) -> Lease:
    return Lease(row["address"], row["client"], row["mac"], row["hostname"], row["state"],
                 row["expires"], row["subnet"], row["version"])


def _without_password(dsn: str) -> str:
    head, at, tail = dsn.rpartition("@")
    if not at or ":" not in head.split("//", 1)[-1]:
        return dsn
    scheme, _, user = head.partition("//")
    return f"{scheme}//{user.split(':', 1)[0]}:***@{tail}"
