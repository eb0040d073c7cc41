"""The durable delivery queue (fan-out stage): one ordered queue per subscription in its own SQLite file.

WAL with synchronous=FULL through the project's engine: `enqueue` returns after the commit, so nothing it
accepted is lost on a crash. Each subscription has its own sequence (the SSE event ids) and a pending count
kept in the same transactions as the entries, which the backlog cap reads without scanning. After a commit
the queue tells in-process watchers (the webhook workers) and listeners (SSE connections) what it added.
The schema and the SQL the engine's threads run are in queue_sql.py (payloads stored once: see there).
"""

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from exchange.fanout.marks import DeliveredMarks
from exchange.fanout.queue_sql import (
    MIGRATIONS,
    SELECT_DELIVERIES,
    delivery_of,
    enforce_cap,
    insert_new,
    leave_pending,
    prune_settled,
    queue_stats,
    replay_dead,
    settle_delivered,
)
from exchange.fanout.records import Delivery, DeliveryState, Outgoing, QueueStats
from exchange.model.timestamps import now_micros
from exchange.store.sqlite.engine import SQLiteEngine

_DAY = 86_400


@dataclass(frozen=True, slots=True)
class QueueLimits:
    backlog_cap: int = 10_000  # pending entries per subscription; beyond, the oldest are dead-lettered
    delivered_retention: float = 7 * _DAY  # seconds delivered entries stay: enqueue idempotency and SSE resume
    dead_retention: float = 30 * _DAY  # seconds dead letters stay replayable
    mark_delay: float = 0.05  # seconds a noted delivered mark may wait to be committed with others (marks.py)


@dataclass(frozen=True, slots=True)
class StreamPosition:
    last_seq: int  # the newest sequence number given out
    acked_seq: int  # the newest a client resumed past (SSE Last-Event-ID)


class StreamEnded(Exception):
    """A listener fell more than its buffer behind, or the hub is shutting down: its connection closes."""


class Listener:
    """Live entries of one subscription for one SSE connection, bounded: overflowing ends it (the client
    resumes from the queue with Last-Event-ID), so a slow reader never makes the hub buffer without end."""

    def __init__(self, maxsize: int) -> None:
        self._items: deque[Delivery] = deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self.ended: str | None = None  # why the connection must close

    def push(self, entry: Delivery) -> None:
        if self.ended is not None:
            return
        if len(self._items) >= self._maxsize:
            self.end(f"more than {self._maxsize} entries behind")
        else:
            self._items.append(entry)
            self._ready.set()

    def end(self, reason: str) -> None:
        self.ended = reason
        self._items.clear()
        self._ready.set()

    async def take(self, wait: float) -> list[Delivery]:
        """Everything buffered, waiting up to `wait` seconds for something; [] when nothing came."""
        if not self._items and self.ended is None:
            try:
                await asyncio.wait_for(self._ready.wait(), wait)
            except TimeoutError:
                return []
        self._ready.clear()
        if self.ended is not None:
            raise StreamEnded(self.ended)
        items = list(self._items)
        self._items.clear()
        return items


Watcher = Callable[[Sequence[Delivery]], None]


class DeliveryQueue:
    def __init__(self, path: Path, limits: QueueLimits = QueueLimits(), *,
                 now: Callable[[], int] = now_micros) -> None:
        self.limits = limits
        self._engine = SQLiteEngine(path, MIGRATIONS, readers=4, synchronous="FULL", cache_mib=8)
        self._now = now
        self._watchers: list[Watcher] = []
        self._listeners: dict[str, set[Listener]] = {}
        self._marks = DeliveredMarks(self._settle, limits.mark_delay)

    async def start(self) -> None:
        await self._engine.start()

    async def close(self) -> None:
        await self._marks.close()  # the marks noted and not yet written, now
        await self._engine.close()

    # -- in-process notification (after commit) --

    def watch(self, watcher: Watcher) -> Callable[[], None]:
        """Call `watcher(entries)` after every commit that adds pending entries, in commit order; returns the
        undo. Watchers run on the loop and must not block."""
        self._watchers.append(watcher)
        return lambda: self._watchers.remove(watcher)

    @contextmanager
    def listen(self, subscription_id: str, maxsize: int) -> Iterator[Listener]:
        listener = Listener(maxsize)
        self._listeners.setdefault(subscription_id, set()).add(listener)
        try:
            yield listener
        finally:
            group = self._listeners.get(subscription_id)
            if group is not None:
                group.discard(listener)
                if not group:
                    del self._listeners[subscription_id]

    def end_streams(self) -> int:
        """Close every SSE connection (call it from the app's on_shutdown: open streams would otherwise hold
        the shutdown for its whole timeout); returns how many there were."""
        listeners = [listener for group in self._listeners.values() for listener in group]
        for listener in listeners:
            listener.end("the hub is shutting down")
        return len(listeners)

    def _announce(self, entries: Sequence[Delivery]) -> None:
        if not entries:
            return
        for entry in entries:
            for listener in self._listeners.get(entry.subscription_id, ()):
                listener.push(entry)
        for watcher in list(self._watchers):
            watcher(entries)

    # -- writes --

    async def enqueue(self, outgoing: Sequence[Outgoing]) -> list[Delivery]:
        """Add entries, committed before this returns; the ones already queued (same subscription, alert and
        version) are skipped. Returns the new entries that are pending."""
        now = self._now()
        cap = self.limits.backlog_cap

        def job(conn: sqlite3.Connection) -> list[Delivery]:
            added, pending = insert_new(conn, outgoing, now)
            evicted: set[int] = set()
            for subscription, count in pending.items():
                if count > cap:  # only subscriptions past the cap pay for a look at their backlog
                    evicted |= enforce_cap(conn, subscription, cap, now)
            return [d for d in added if d.id not in evicted]

        added = await self._engine.write(job) if outgoing else []
        self._announce(added)
        return added

    def note_delivered(self, delivery_id: int) -> None:
        """Settle an entry its receiver took, even a dead one (the backlog cap may evict the entry a worker is
        sending: it did arrive), within `limits.mark_delay`, in one write with the other marks noted by then
        (marks.py says why). Until `marks_written()` returns, the file may still show the entry pending."""
        self._marks.note(delivery_id)

    async def mark_delivered(self, delivery_id: int) -> None:
        """note_delivered, written at the next turn of the loop (with the marks of this turn) rather than after
        the delay; returns once that is committed."""
        await asyncio.shield(self._marks.note(delivery_id, urgent=True))  # a cancelled caller must not cancel
        # the others' commit

    async def marks_written(self, *, now: bool = False) -> bool:
        """Until every mark noted so far is committed (`now`: without waiting for the delay); False when a write
        of them failed."""
        return await self._marks.written(now=now)

    async def _settle(self, ids: list[int]) -> None:
        now = self._now()
        await self._engine.write(lambda conn: settle_delivered(conn, ids, now))

    async def mark_retry(self, delivery_id: int, error: str, next_attempt_at: int) -> None:
        await self._engine.write(lambda conn: conn.execute(
            "UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
            " WHERE id = ? AND state = 'pending'", (error, next_attempt_at, delivery_id)))

    async def mark_dead(self, delivery_id: int, error: str) -> None:
        now = self._now()

        def job(conn: sqlite3.Connection) -> None:
            if leave_pending(conn, delivery_id, allow_dead=False) is not None:
                conn.execute("UPDATE deliveries SET state = 'dead', attempts = attempts + 1, last_error = ?,"
                             " settled_at = ? WHERE id = ?", (error, now, delivery_id))

        await self._engine.write(job)

    async def acknowledge(self, subscription_id: str, seq: int) -> int:
        """An SSE client resumed after `seq`: it has every entry up to there. Returns how many were pending."""
        now = self._now()

        def job(conn: sqlite3.Connection) -> int:
            # SSE entries only: a stream mounted on a webhook subscription by mistake must not settle its queue.
            done = conn.execute("UPDATE deliveries SET state = 'delivered', settled_at = ? WHERE subscription = ?"
                                " AND state = 'pending' AND seq <= ? AND channel = 'sse'",
                                (now, subscription_id, seq)).rowcount
            conn.execute("UPDATE streams SET acked_seq = max(acked_seq, ?), pending = pending - ?"
                         " WHERE subscription = ?", (seq, done, subscription_id))
            return done

        return await self._engine.write(job)

    async def replay(self, delivery_id: int) -> Delivery | None:
        """A dead letter back to pending, at the end of its queue (a new seq, so SSE clients get it too), with
        a fresh retry budget. None when there is no such dead letter."""
        return next(iter(await self._replay("id = ? AND state = 'dead'", (delivery_id,))), None)

    async def replay_subscription(self, subscription_id: str) -> list[Delivery]:
        """Every dead letter of a subscription back to pending, oldest first."""
        return await self._replay("subscription = ? AND state = 'dead'", (subscription_id,))

    async def _replay(self, where: str, params: tuple[object, ...]) -> list[Delivery]:
        now, cap = self._now(), self.limits.backlog_cap
        replayed = await self._engine.write(lambda conn: replay_dead(conn, where, params, cap, now))
        self._announce(replayed)
        return replayed

    async def prune(self) -> int:
        """Forget settled entries past their retention, and the payloads only they referenced (call it now and
        then); returns how many entries."""
        now = self._now()
        delivered_before = now - int(self.limits.delivered_retention * 1e6)
        dead_before = now - int(self.limits.dead_retention * 1e6)
        return await self._engine.write(lambda conn: prune_settled(conn, delivered_before, dead_before))

    # -- reads --

    async def head(self, subscription_id: str) -> Delivery | None:
        """The oldest pending entry: webhooks deliver in order, one at a time per subscription."""
        rows = await self._engine.read(lambda c: c.execute(
            f"{SELECT_DELIVERIES} WHERE d.subscription = ? AND d.state = 'pending' ORDER BY d.seq LIMIT 1",
            (subscription_id,)).fetchall())
        return delivery_of(rows[0]) if rows else None

    async def pending_subscriptions(self) -> set[str]:
        """The subscriptions with pending entries (the webhook workers' periodic look)."""
        rows = await self._engine.read(lambda c: c.execute(
            "SELECT subscription FROM streams WHERE pending > 0").fetchall())
        return {r[0] for r in rows}

    async def after(self, subscription_id: str, seq: int, limit: int) -> list[Delivery]:
        """Entries after `seq` that are not dead, in order: what an SSE client resuming there has not seen."""
        rows = await self._engine.read(lambda c: c.execute(
            f"{SELECT_DELIVERIES} WHERE d.subscription = ? AND d.seq > ? AND d.state != 'dead'"
            " ORDER BY d.seq LIMIT ?", (subscription_id, seq, limit)).fetchall())
        return [delivery_of(r) for r in rows]

    async def position(self, subscription_id: str) -> StreamPosition:
        row = await self._engine.read(lambda c: c.execute(
            "SELECT last_seq, acked_seq FROM streams WHERE subscription = ?", (subscription_id,)).fetchone())
        return StreamPosition(last_seq=row[0], acked_seq=row[1]) if row else StreamPosition(0, 0)

    async def get(self, delivery_id: int) -> Delivery | None:
        rows = await self._engine.read(lambda c: c.execute(
            f"{SELECT_DELIVERIES} WHERE d.id = ?", (delivery_id,)).fetchall())
        return delivery_of(rows[0]) if rows else None

    async def entries(self, subscription_id: str, state: DeliveryState | None = None) -> list[Delivery]:
        """A subscription's entries in order (tests, diagnostics); the queue is bounded, so is this."""
        where, params = ("d.subscription = ?", (subscription_id,)) if state is None else (
            "d.subscription = ? AND d.state = ?", (subscription_id, state.value))
        rows = await self._engine.read(lambda c: c.execute(
            f"{SELECT_DELIVERIES} WHERE {where} ORDER BY d.seq", params).fetchall())
        return [delivery_of(r) for r in rows]

    async def dead_letters(self, subscription_id: str | None = None, *, limit: int = 100,
                           after_id: int = 0) -> list[Delivery]:
        """Dead letters by id (keyset pages: pass the last id as `after_id`), of one subscription or all."""
        where = "d.state = 'dead' AND d.id > ?" + (" AND d.subscription = ?" if subscription_id is not None else "")
        params: tuple[object, ...] = (after_id, subscription_id) if subscription_id is not None else (after_id,)
        rows = await self._engine.read(lambda c: c.execute(
            f"{SELECT_DELIVERIES} WHERE {where} ORDER BY d.id LIMIT ?", (*params, limit)).fetchall())
        return [delivery_of(r) for r in rows]

    async def stats(self) -> list[QueueStats]:
        return await self._engine.read(queue_stats)
