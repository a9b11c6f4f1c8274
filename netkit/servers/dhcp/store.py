"""Where leases live across restarts: one small interface, two engines behind it.

    store = open_store(config.lease_db)  # a file path (SQLite) or postgresql://...
    await store.load() -> [Lease]        # at start (and after the database comes back)
    await store.save([Lease, ...])       # one transaction, durable when it returns
    await store.changes() -> [Lease]     # what other servers wrote since the last look

The server saves a loop turn's changed leases in one call before it sends their ACKs
(several clients answered in the same turn share one commit). SQLite runs in WAL mode
with synchronous=FULL on a thread of its own: a commit is on disk when `save` returns.

A shared store (PostgreSQL: postgres.py) has other servers writing the same addresses.
Its `save` is a claim: a lease is written only if the address is still as this server
last saw it (`Lease.version`), still the same client's, or free; the addresses it
refuses come back in `Saved.refused` with what the database holds for them. A store
that cannot be reached raises `StoreUnavailable` (the server then answers renewals
only, for `dhcp.db_grace`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from netkit.config import Location
from netkit.proto.dhcp.leases import Lease

SCHEMA_VERSION = 1


class StoreUnavailable(Exception):
    """The database cannot be reached (gone, refusing, or too slow to answer)."""


@dataclass(slots=True)
class Saved:
    versions: dict[str, int] = field(default_factory=dict)
    """address -> the version the database gave the lease written there."""
    refused: dict[str, Lease | None] = field(default_factory=dict)
    """address -> what the database holds there (another client's lease, newer)."""


class LeaseStore(Protocol):
    shared: bool
    """Other servers write the same leases (a save may be refused; `changes` matters)."""

    async def load(self) -> list[Lease]: ...
    async def save(self, leases: list[Lease]) -> Saved: ...
    async def changes(self) -> list[Lease]: ...
    async def close(self) -> None: ...


class SQLiteLeases:
    shared = False

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="netkit-dhcp-sqlite")
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                      isolation_level=None, check_same_thread=False)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            self.db.execute("""CREATE TABLE IF NOT EXISTS leases (
                address TEXT PRIMARY KEY, client TEXT NOT NULL, mac TEXT NOT NULL,
                hostname TEXT NOT NULL, state TEXT NOT NULL, expires REAL NOT NULL,
                subnet TEXT NOT NULL)""")
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        elif version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"{path}: lease database schema {version} is newer "
                                        f"than this server's ({SCHEMA_VERSION})")

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def load(self) -> list[Lease]:
        rows = await self._run(lambda: self.db.execute(
            "SELECT address, client, mac, hostname, state, expires, subnet FROM leases "
            "ORDER BY address").fetchall())
        return [Lease(*row) for row in rows]

    async def save(self, leases: list[Lease]) -> Saved:
        if leases:
            await self._run(self._save, [(x.address, x.client, x.mac, x.hostname, x.state,
                                          x.expires, x.subnet) for x in leases])
        return Saved()

    def _save(self, rows: list[tuple[object, ...]]) -> None:
        self.db.execute("BEGIN")
        try:
            self.db.executemany("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?, ?)",
                                rows)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    async def changes(self) -> list[Lease]:
        return []  # nobody else writes this file

    async def close(self) -> None:
        await self._run(self.db.close)
        self._thread.shutdown(wait=True)


def open_store(where: str | Path, *, readonly: bool = False, timeout: float = 2.0,
               name: str = "") -> LeaseStore:
    """The store for `dhcp.lease_db`: postgresql://... (or postgres://), else a file path
    (SQLite). `name` tells other servers who wrote a lease (PostgreSQL)."""
    location = Location(str(where))
    if location.scheme in ("postgresql", "postgres"):
        from .postgres import PostgresLeases
        return PostgresLeases(location, timeout=timeout, name=name, readonly=readonly)
    if location.is_url:
        raise ValueError(f"{where}: a lease database is a file path or postgresql://...")
    return SQLiteLeases(location.path, readonly=readonly)
