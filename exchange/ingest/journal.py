"""The journal: every accepted envelope, raw, committed (WAL, synchronous=FULL) before the 202.

The processor works from here; on restart whatever is not marked processed is replayed. Bodies stay
after processing so an operator can inspect exactly what a peer sent.
"""

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import msgpack

from exchange.store.sqlite.engine import SQLiteEngine

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE envelopes (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        status_id   TEXT NOT NULL UNIQUE,
        api_root    TEXT NOT NULL,
        collection  TEXT NOT NULL,
        account     TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        total       INTEGER NOT NULL,
        pending     BLOB NOT NULL,
        body        BLOB NOT NULL,
        processed   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX envelopes_unprocessed ON envelopes(seq) WHERE processed = 0;
    """,
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """An accepted TAXII envelope as the journal keeps it."""

    status_id: str
    api_root: str
    collection_id: str
    account: str
    received_at: int
    total: int
    pending: list[tuple[str, str]]  # (id, version) of each object, for the pending status view
    body: bytes
    seq: int = 0


class Journal:
    def __init__(self, path: Path) -> None:
        self._engine = SQLiteEngine(path, MIGRATIONS, readers=2, synchronous="FULL", cache_mib=4)

    async def start(self) -> None:
        await self._engine.start()

    async def close(self) -> None:
        await self._engine.close()

    async def append(self, env: Envelope) -> int:
        """Commit one envelope durably; returns its sequence number."""
        def job(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO envelopes (status_id, api_root, collection, account, received_at, total, pending, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (env.status_id, env.api_root, env.collection_id, env.account, env.received_at, env.total,
                 msgpack.packb(env.pending), env.body),
            )
            return int(cur.lastrowid or 0)

        return await self._engine.write(job)

    async def unprocessed(self, limit: int, *, after: int = 0) -> list[Envelope]:
        rows = await self._engine.read(lambda c: c.execute(
            "SELECT seq, status_id, api_root, collection, account, received_at, total, pending, body"
            " FROM envelopes WHERE processed = 0 AND seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall())
        return [_envelope(r) for r in rows]

    async def mark_processed(self, seqs: list[int]) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.executemany("UPDATE envelopes SET processed = 1 WHERE seq = ?", [(s,) for s in seqs])

        await self._engine.write(job)

    async def find(self, status_id: str) -> Envelope | None:
        row = await self._engine.read(lambda c: c.execute(
            "SELECT seq, status_id, api_root, collection, account, received_at, total, pending, x'' FROM envelopes"
            " WHERE status_id = ?", (status_id,)).fetchone())
        return _envelope(row) if row else None

    async def backlog(self) -> int:
        return await self._engine.read(lambda c: c.execute(
            "SELECT count(*) FROM envelopes WHERE processed = 0").fetchone()[0])


def _envelope(row: tuple[int, str, str, str, str, int, int, bytes, bytes]) -> Envelope:
    seq, status_id, api_root, collection, account, received_at, total, pending, body = row
    return Envelope(status_id=status_id, api_root=api_root, collection_id=collection, account=account,
                    received_at=received_at, total=total, pending=[tuple(p) for p in msgpack.unpackb(pending)],
                    body=body, seq=seq)
