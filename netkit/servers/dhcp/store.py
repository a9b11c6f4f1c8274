"""Where leases live across restarts: one small interface, SQLite behind it.

    store = open_store("leases.db")      # the path in dhcp.lease_db
    store.load() -> [Lease]              # at start
    store.save([Lease, ...])             # one transaction, durable when it returns

The server saves a loop turn's changed leases in one call before it sends their ACKs
(several clients answered in the same turn share one commit). SQLite runs in WAL mode
with synchronous=FULL: a commit is on disk when `save` returns.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Protocol

from netkit.proto.dhcp.leases import Lease

SCHEMA_VERSION = 1


class LeaseStore(Protocol):
    def load(self) -> list[Lease]: ...
    def save(self, leases: list[Lease]) -> None: ...
    def close(self) -> None: ...


class SQLiteLeases:
    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                      isolation_level=None)
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

    def load(self) -> list[Lease]:
        rows = self.db.execute("SELECT address, client, mac, hostname, state, expires, "
                               "subnet FROM leases ORDER BY address").fetchall()
        return [Lease(*row) for row in rows]

    def save(self, leases: list[Lease]) -> None:
        if not leases:
            return
        rows = [(x.address, x.client, x.mac, x.hostname, x.state, x.expires, x.subnet)
                for x in leases]
        self.db.execute("BEGIN")
        try:
            self.db.executemany("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?, ?)",
                                rows)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def open_store(where: str | Path, *, readonly: bool = False) -> LeaseStore:
    """The store for `dhcp.lease_db`: a file path (SQLite)."""
    return SQLiteLeases(Path(where), readonly=readonly)
