"""The delivery queue's SQL (fan-out stage): the schema of deliveries.db and the jobs queue.py runs on the
engine's writer and reader connections, as plain functions of a connection.

Each payload is stored once. Every subscriber that gets the same view of one alert version gets the same bytes
(subscriptions.plan: the bundle id names the version and the view, not the subscriber), so a delivery row
references a `payloads` row, found again by the body's SHA-256, instead of carrying a copy: for a thousand
subscribers one body per view rather than ~2 MB of WAL per alert. What differs per subscriber (the idempotency
key, and the signature, made at send time) stays in the delivery row or out of the database. Pruning deletes
the payloads no entry references any more.
"""

import hashlib
import sqlite3
from collections.abc import Sequence
from typing import Any

from exchange.fanout.records import ChannelKind, Delivery, DeliveryState, Outgoing, QueueStats

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE streams (
        subscription TEXT PRIMARY KEY,
        last_seq     INTEGER NOT NULL DEFAULT 0,
        acked_seq    INTEGER NOT NULL DEFAULT 0,
        pending      INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        subscription    TEXT NOT NULL,
        seq             INTEGER NOT NULL,
        channel         TEXT NOT NULL,
        alert_id        TEXT NOT NULL,
        version         TEXT NOT NULL,
        idem_key        TEXT NOT NULL,
        body            BLOB NOT NULL,
        state           TEXT NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        queued_at       INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        settled_at      INTEGER,
        UNIQUE (subscription, alert_id, version),
        UNIQUE (subscription, seq)
    );
    CREATE INDEX deliveries_pending ON deliveries(subscription, seq) WHERE state = 'pending';
    CREATE INDEX deliveries_dead ON deliveries(subscription, seq) WHERE state = 'dead';
    CREATE INDEX deliveries_settled ON deliveries(settled_at) WHERE state != 'pending';
    """,
    # 2: payloads stored once. The bodies of existing entries move to payloads of their own (no digest: they
    # are never shared), so entries queued before the upgrade are still delivered. SQLite cannot drop a column
    # from a table with indexes on it, hence the copy; it keeps ids, sequences and the AUTOINCREMENT high mark.
    """
    CREATE TABLE payloads (
        id     INTEGER PRIMARY KEY,
        digest BLOB UNIQUE,  -- SHA-256 of body; NULL for bodies moved here by this migration
        body   BLOB NOT NULL
    );
    INSERT INTO payloads (id, body) SELECT id, body FROM deliveries;
    CREATE TABLE deliveries_v2 (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        subscription    TEXT NOT NULL,
        seq             INTEGER NOT NULL,
        channel         TEXT NOT NULL,
        alert_id        TEXT NOT NULL,
        version         TEXT NOT NULL,
        idem_key        TEXT NOT NULL,
        payload         INTEGER NOT NULL REFERENCES payloads (id),
        state           TEXT NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        queued_at       INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        settled_at      INTEGER,
        UNIQUE (subscription, alert_id, version),
        UNIQUE (subscription, seq)
    );
    INSERT INTO sqlite_sequence (name, seq) SELECT 'deliveries_v2', seq FROM sqlite_sequence WHERE name = 'deliveries';
    INSERT INTO deliveries_v2 (id, subscription, seq, channel, alert_id, version, idem_key, payload, state, attempts,
                               created_at, queued_at, next_attempt_at, last_error, settled_at)
        SELECT id, subscription, seq, channel, alert_id, version, idem_key, id, state, attempts, created_at,
               queued_at, next_attempt_at, last_error, settled_at FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v2 RENAME TO deliveries;
    CREATE INDEX deliveries_pending ON deliveries(subscription, seq) WHERE state = 'pending';
    CREATE INDEX deliveries_dead ON deliveries(subscription, seq) WHERE state = 'dead';
    CREATE INDEX deliveries_settled ON deliveries(settled_at) WHERE state != 'pending';
    CREATE INDEX deliveries_payload ON deliveries(payload);
    """,
    # 3: the queued-once key leads with the alert version, not the subscription. Keyed by subscription first,
    # the thousand entries of one alert version landed on a thousand leaf pages of that index, one per
    # subscriber's range: each enqueue rewrote them all into the WAL (6 MB per alert to 1,000 subscribers after
    # 60 alerts, growing with the file) and took twice as long. Keyed by alert version first they are
    # neighbours. Same columns, same uniqueness; the copy keeps ids, sequences and the AUTOINCREMENT mark.
    """
    CREATE TABLE deliveries_v3 (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        subscription    TEXT NOT NULL,
        seq             INTEGER NOT NULL,
        channel         TEXT NOT NULL,
        alert_id        TEXT NOT NULL,
        version         TEXT NOT NULL,
        idem_key        TEXT NOT NULL,
        payload         INTEGER NOT NULL REFERENCES payloads (id),
        state           TEXT NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        queued_at       INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        settled_at      INTEGER,
        UNIQUE (alert_id, version, subscription),
        UNIQUE (subscription, seq)
    );
    INSERT INTO sqlite_sequence (name, seq) SELECT 'deliveries_v3', seq FROM sqlite_sequence WHERE name = 'deliveries';
    INSERT INTO deliveries_v3 (id, subscription, seq, channel, alert_id, version, idem_key, payload, state, attempts,
                               created_at, queued_at, next_attempt_at, last_error, settled_at)
        SELECT id, subscription, seq, channel, alert_id, version, idem_key, payload, state, attempts, created_at,
               queued_at, next_attempt_at, last_error, settled_at FROM deliveries;
    DROP TABLE deliveries;
    ALTER TABLE deliveries_v3 RENAME TO deliveries;
    CREATE INDEX deliveries_pending ON deliveries(subscription, seq) WHERE state = 'pending';
    CREATE INDEX deliveries_dead ON deliveries(subscription, seq) WHERE state = 'dead';
    CREATE INDEX deliveries_settled ON deliveries(settled_at) WHERE state != 'pending';
    CREATE INDEX deliveries_payload ON deliveries(payload);
    """,
)
BACKLOG_CAP_REASON = "backlog cap"
# An entry with its payload's body, in the order `delivery_of` reads.
SELECT_DELIVERIES = (
    "SELECT d.id, d.subscription, d.seq, d.channel, d.alert_id, d.version, d.idem_key, p.body, d.state, d.attempts,"
    " d.created_at, d.queued_at, d.next_attempt_at, d.last_error, d.settled_at"
    " FROM deliveries AS d JOIN payloads AS p ON p.id = d.payload")


def insert_new(conn: sqlite3.Connection, outgoing: Sequence[Outgoing],
               now: int) -> tuple[list[Delivery], dict[str, int]]:
    """Insert the entries not queued before (same subscription, alert and version), in order; returns them and
    the pending count of each subscription they went to.

    Bulk statements (executemany), not two statements with RETURNING per entry: for a thousand subscribers
    that is a third of the time, and it is on the path of every alert. So ids, sequence numbers and what is
    already queued are worked out here. That is no check-then-insert race: the engine's transaction began
    IMMEDIATE, so no other writer (the CLI's replay in another process) can come between the reads and the
    writes; and the unique keys still refuse a duplicate (the job fails, nothing is lost).
    """
    subscriptions = list(dict.fromkeys(o.subscription_id for o in outgoing))
    streams: dict[str, list[int]] = {}  # subscription -> [last_seq, pending]
    queued: set[tuple[str, str, str]] = set()
    for start in range(0, len(subscriptions), 300):  # SQLite's default limit is 999 parameters per statement
        chunk = subscriptions[start:start + 300]
        marks = ", ".join("?" * len(chunk))
        for subscription, last_seq, pending in conn.execute(
                f"SELECT subscription, last_seq, pending FROM streams WHERE subscription IN ({marks})", chunk):
            streams[subscription] = [last_seq, pending]
    for start in range(0, len(outgoing), 300):
        keys = [(o.subscription_id, o.alert_id, o.version) for o in outgoing[start:start + 300]]
        values = ", ".join(["(?, ?, ?)"] * len(keys))
        queued.update(conn.execute(  # CROSS JOIN keeps this order: one lookup in the unique index per key
            f"SELECT d.subscription, d.alert_id, d.version FROM (VALUES {values}) AS k CROSS JOIN deliveries AS d"
            " ON d.alert_id = k.column2 AND d.version = k.column3 AND d.subscription = k.column1",
            [v for key in keys for v in key]))
    next_id = 1 + conn.execute(  # AUTOINCREMENT: never reuse the id of an entry pruned since
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'), 0),"
        " coalesce((SELECT max(id) FROM deliveries), 0))").fetchone()[0]
    added: list[Delivery] = []
    for o in outgoing:
        key = (o.subscription_id, o.alert_id, o.version)
        if key in queued:
            continue
        queued.add(key)
        stream = streams.setdefault(o.subscription_id, [0, 0])
        stream[0] += 1
        stream[1] += 1
        added.append(Delivery(id=next_id, subscription_id=o.subscription_id, seq=stream[0], channel=o.channel,
                              alert_id=o.alert_id, version=o.version, idempotency_key=o.idempotency_key,
                              body=o.body, state=DeliveryState.PENDING, attempts=0, created_at=now, queued_at=now,
                              next_attempt_at=now, last_error=None, settled_at=None))
        next_id += 1
    payloads: dict[bytes, int] = {}  # plan gives every subscriber of one view the same bytes object
    for d in added:
        if d.body not in payloads:
            payloads[d.body] = store_payload(conn, d.body)
    conn.executemany(
        "INSERT INTO deliveries (id, subscription, seq, channel, alert_id, version, idem_key, payload, created_at,"
        " queued_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(d.id, d.subscription_id, d.seq, d.channel.value, d.alert_id, d.version, d.idempotency_key,
          payloads[d.body], now, now, now) for d in added])
    touched = {d.subscription_id: streams[d.subscription_id] for d in added}
    conn.executemany(
        "INSERT INTO streams (subscription, last_seq, pending) VALUES (?, ?, ?) ON CONFLICT (subscription)"
        " DO UPDATE SET last_seq = excluded.last_seq, pending = excluded.pending",
        [(subscription, last_seq, pending) for subscription, (last_seq, pending) in touched.items()])
    return added, {subscription: pending for subscription, (_, pending) in touched.items()}


def store_payload(conn: sqlite3.Connection, body: bytes) -> int:
    """The id of the payload row holding `body`, added if no entry has it yet."""
    digest = hashlib.sha256(body).digest()
    row = conn.execute("SELECT id FROM payloads WHERE digest = ?", (digest,)).fetchone()
    if row is not None:
        return int(row[0])
    return int(conn.execute("INSERT INTO payloads (digest, body) VALUES (?, ?) RETURNING id",
                            (digest, body)).fetchone()[0])


def replay_dead(conn: sqlite3.Connection, where: str, params: tuple[object, ...], cap: int,
                now: int) -> list[Delivery]:
    """Dead letters (`where` picks them) back to pending at the end of their queues, oldest first, with a fresh
    retry budget; returns those the backlog cap did not evict at once."""
    rows = conn.execute(f"SELECT id, subscription FROM deliveries WHERE {where} ORDER BY seq", params).fetchall()
    out = []
    for delivery_id, subscription in rows:
        conn.execute("UPDATE deliveries SET state = 'pending', seq = ?, attempts = 0, queued_at = ?,"
                     " next_attempt_at = ?, last_error = NULL, settled_at = NULL WHERE id = ?",
                     (next_seq(conn, subscription), now, now, delivery_id))
        out.append(delivery_of(conn.execute(f"{SELECT_DELIVERIES} WHERE d.id = ?", (delivery_id,)).fetchone()))
    evicted: set[int] = set()
    for subscription in {d.subscription_id for d in out}:
        evicted |= enforce_cap(conn, subscription, cap, now)
    return [d for d in out if d.id not in evicted]


def prune_settled(conn: sqlite3.Connection, delivered_before: int, dead_before: int) -> int:
    """Delete settled entries past their retention, then the payloads no entry references any more."""
    rows = conn.execute(
        "DELETE FROM deliveries WHERE (state = 'delivered' AND settled_at < ?) OR (state = 'dead' AND settled_at < ?)"
        " RETURNING payload", (delivered_before, dead_before)).fetchall()
    conn.executemany("DELETE FROM payloads WHERE id = ? AND NOT EXISTS (SELECT 1 FROM deliveries WHERE payload = ?)",
                     [(payload, payload) for payload in {r[0] for r in rows}])
    return len(rows)


def next_seq(conn: sqlite3.Connection, subscription: str) -> int:
    row = conn.execute("UPDATE streams SET last_seq = last_seq + 1, pending = pending + 1 WHERE subscription = ?"
                       " RETURNING last_seq", (subscription,)).fetchall()
    return int(row[0][0])


def settle_delivered(conn: sqlite3.Connection, ids: Sequence[int], now: int) -> None:
    """mark_delivered for many entries: pending and dead ones become delivered, pending counts follow."""
    for start in range(0, len(ids), 500):  # SQLite's default limit is 999 parameters per statement
        chunk = ids[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        # One statement, not one per subscription: the marks are written while the event loop serves the
        # other receivers, and each statement step of this thread is a GIL hand-off with it.
        conn.execute(f"UPDATE streams SET pending = pending - marked.n FROM (SELECT subscription, count(*) AS n"
                     f" FROM deliveries WHERE id IN ({marks}) AND state = 'pending' GROUP BY subscription) AS marked"
                     " WHERE streams.subscription = marked.subscription", chunk)
        conn.execute(f"UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, settled_at = ?,"
                     f" last_error = NULL WHERE id IN ({marks}) AND state != 'delivered'", (now, *chunk))


def leave_pending(conn: sqlite3.Connection, delivery_id: int, *, allow_dead: bool) -> str | None:
    """The entry's state if it may move on (keeping the pending count right), else None."""
    row = conn.execute("SELECT state, subscription FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    if row is None or row[0] == DeliveryState.DELIVERED or (row[0] == DeliveryState.DEAD and not allow_dead):
        return None
    if row[0] == DeliveryState.PENDING:
        conn.execute("UPDATE streams SET pending = pending - 1 WHERE subscription = ?", (row[1],))
    return str(row[0])


def enforce_cap(conn: sqlite3.Connection, subscription: str, cap: int, now: int) -> set[int]:
    """Dead-letter the oldest pending entries beyond the cap; returns their ids."""
    pending = conn.execute("SELECT pending FROM streams WHERE subscription = ?", (subscription,)).fetchone()[0]
    if pending <= cap:
        return set()
    rows = conn.execute(
        "UPDATE deliveries SET state = 'dead', last_error = ?, settled_at = ? WHERE id IN (SELECT id FROM deliveries"
        " WHERE subscription = ? AND state = 'pending' ORDER BY seq LIMIT ?) RETURNING id",
        (f"{BACKLOG_CAP_REASON}: more than {cap} pending", now, subscription, pending - cap)).fetchall()
    conn.execute("UPDATE streams SET pending = pending - ? WHERE subscription = ?", (len(rows), subscription))
    return {r[0] for r in rows}


def queue_stats(conn: sqlite3.Connection) -> list[QueueStats]:
    rows = conn.execute(
        "SELECT s.subscription, s.pending, s.last_seq,"
        " (SELECT count(*) FROM deliveries d WHERE d.subscription = s.subscription AND d.state = 'delivered'),"
        " (SELECT count(*) FROM deliveries d WHERE d.subscription = s.subscription AND d.state = 'dead'),"
        " (SELECT min(queued_at) FROM deliveries d WHERE d.subscription = s.subscription AND d.state = 'pending')"
        " FROM streams s ORDER BY s.subscription").fetchall()
    return [QueueStats(subscription_id=r[0], pending=r[1], last_seq=r[2], delivered=r[3], dead=r[4],
                       oldest_pending_at=r[5]) for r in rows]


def delivery_of(row: tuple[Any, ...]) -> Delivery:
    (id_, subscription, seq, channel, alert_id, version, key, body, state, attempts, created_at, queued_at,
     next_attempt_at, last_error, settled_at) = row
    return Delivery(id=id_, subscription_id=subscription, seq=seq, channel=ChannelKind(channel), alert_id=alert_id,
                    version=version, idempotency_key=key, body=bytes(body), state=DeliveryState(state),
                    attempts=attempts, created_at=created_at, queued_at=queued_at, next_attempt_at=next_attempt_at,
                    last_error=last_error, settled_at=settled_at)
