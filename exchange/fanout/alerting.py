"""The alert intake of the fan-out stage: canonical indicators in, alert versions out to the alerts collection
and the members' delivery queues.

Reads the canonical collection after a persisted cursor, asks correlate (pure) which threats changed and which
alerts move, publishes each new alert version as a STIX grouping and queues it for the subscriptions it
matches. Decisions are correlate's; this module only moves data. Order of effects per batch: alert objects to
the store, deliveries to the queue (both idempotent), then states and cursor: a crash in between redoes the
batch, and a redone batch finds its alerts unchanged, so nothing is delivered twice.
"""

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import orjson

from exchange.correlate.alert_stix import ALERT_EXTENSION, alert_object, parse_alert
from exchange.correlate.alerts import Alert, alert_id, recompute
from exchange.correlate.canonical import observations_from_canonical
from exchange.correlate.families import FamilyIndex
from exchange.correlate.rules import AlertRules
from exchange.correlate.spread import SpreadState, keys_to_load, state_from_wire, state_to_wire, update
from exchange.dedup.merge import HubIdentity
from exchange.errors import InvalidObject
from exchange.fanout.publish import publish
from exchange.fanout.queue import DeliveryQueue
from exchange.fanout.records import Member, Notice
from exchange.model.timestamps import format_timestamp, now_micros
from exchange.policy.tlp import Tlp
from exchange.store.base import ObjectQuery, Store, VersionMatch
from exchange.store.sqlite.engine import SQLiteEngine, read_offline

log = logging.getLogger(__name__)
BATCH = 500
RETRY_DELAY = 1.0

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE spread (key TEXT PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE alerts (
        threat_key TEXT PRIMARY KEY,
        id         TEXT NOT NULL,
        level      INTEGER NOT NULL,
        status     TEXT NOT NULL,
        modified   INTEGER NOT NULL,
        body       BLOB NOT NULL
    );
    CREATE INDEX alerts_by_status ON alerts(status);
    CREATE TABLE progress (collection TEXT PRIMARY KEY, cursor INTEGER NOT NULL);
    """,
)


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One line of `exchange alerts` / GET /admin/alerts: the latest version of one alert."""

    id: str
    threat_key: str
    level: int
    status: str
    modified: int
    body: dict[str, Any]


class AlertBook:
    """alerts.db: spread states by threat key, the latest version of each alert, the canonical cursor."""

    def __init__(self, path: Path) -> None:
        self._engine = SQLiteEngine(path, MIGRATIONS, readers=2, synchronous="FULL", cache_mib=8)

    async def start(self) -> None:
        await self._engine.start()

    async def close(self) -> None:
        await self._engine.close()

    async def cursor(self, collection: str) -> int:
        """How far the intake has read `collection` (our date_added)."""
        row = await self._engine.read(lambda c: c.execute(
            "SELECT cursor FROM progress WHERE collection = ?", (collection,)).fetchone())
        return int(row[0]) if row else 0

    async def states(self, keys: Iterable[str]) -> dict[str, SpreadState]:
        wanted = sorted(keys)

        def run(conn: sqlite3.Connection) -> dict[str, SpreadState]:
            out = {}
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                for key, data in conn.execute(
                        f"SELECT key, data FROM spread WHERE key IN ({', '.join('?' * len(chunk))})", chunk):
                    out[key] = state_from_wire(msgpack.unpackb(data))
            return out

        return await self._engine.read(run) if wanted else {}

    async def alerts(self, keys: Iterable[str] | None = None, *, active_only: bool = False) -> list[AlertRow]:
        wanted = sorted(keys) if keys is not None else None

        def run(conn: sqlite3.Connection) -> list[AlertRow]:
            return _alert_rows(conn, wanted, active_only)

        return await self._engine.read(run)

    async def save(self, states: Iterable[SpreadState], alerts: Sequence[tuple[Alert, dict[str, Any]]],
                   cursor: tuple[str, int] | None) -> None:
        rows = [(s.key, msgpack.packb(state_to_wire(s))) for s in states]

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT INTO spread (key, data) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET"
                             " data = excluded.data", rows)
            conn.executemany(
                "INSERT INTO alerts (threat_key, id, level, status, modified, body) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (threat_key) DO UPDATE SET level = excluded.level, status = excluded.status,"
                " modified = excluded.modified, body = excluded.body",
                [(a.threat_key, a.id, a.level, a.status.value, a.modified, orjson.dumps(o)) for a, o in alerts])
            if cursor is not None:
                conn.execute("INSERT INTO progress (collection, cursor) VALUES (?, ?) ON CONFLICT (collection)"
                             " DO UPDATE SET cursor = max(cursor, excluded.cursor)", cursor)

        await self._engine.write(job)


def _alert_rows(conn: sqlite3.Connection, keys: list[str] | None, active_only: bool) -> list[AlertRow]:
    sql = "SELECT id, threat_key, level, status, modified, body FROM alerts"
    clauses, params = [], []
    if keys is not None:
        if not keys:
            return []
        clauses.append(f"threat_key IN ({', '.join('?' * len(keys))})")
        params += keys
    if active_only:
        clauses.append("status IN ('open', 'escalated')")
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY level DESC, modified DESC"
    return [AlertRow(id=r[0], threat_key=r[1], level=r[2], status=r[3], modified=r[4], body=orjson.loads(r[5]))
            for r in conn.execute(sql, params)]


def read_alert_rows(path: Path) -> list[AlertRow]:
    """For `exchange alerts`: straight from the file (the hub may be running or not)."""
    return read_offline(path, lambda c: _alert_rows(c, None, False), [])


@dataclass(frozen=True, slots=True)
class AlertingSettings:
    hub: HubIdentity
    canonical_collection: str
    alerts_collection: str
    rules: AlertRules
    audience: Tlp  # of the canonical collection: what the alerts may be built from
    default_tlp: Tlp
    sweep_interval: float = 60.0
    # Where peer hubs' alerts land (the collections pulled into or pushed to) and whose alerts count: the
    # identity ids of configured peer hubs. An alert from anyone else is kept verbatim and not merged.
    intake_collections: tuple[str, ...] = ()
    peer_hubs: frozenset[str] = frozenset()


class Alerter:
    """Runs forever as one task; never raises (store trouble is retried)."""

    def __init__(self, settings: AlertingSettings, store: Store, book: AlertBook, queue: DeliveryQueue | None,
                 members: Sequence[Member], *, families: FamilyIndex | None = None,
                 now: Callable[[], int] = now_micros) -> None:
        self._s = settings
        self._store = store
        self._book = book
        self._queue = queue
        self._members = members
        self._families = families
        self._now = now
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self.published = 0  # alert versions published since start (metrics, demo)
        self.on_alert: Callable[[Alert], None] = lambda alert: None  # metrics: told every published version

    def wake(self, *_: Any) -> None:
        self._idle.clear()
        self._wake.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self._s.sweep_interval
        self._wake.set()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_sweep - loop.time()))
            self._wake.clear()
            try:
                while await self.step():
                    pass
                if loop.time() >= next_sweep:
                    await self.sweep()
                    next_sweep = loop.time() + self._s.sweep_interval
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alerting failed; retrying in %.1fs", RETRY_DELAY)
                await asyncio.sleep(RETRY_DELAY)
                self._wake.set()
                continue
            if not self._wake.is_set():
                self._idle.set()

    async def step(self) -> bool:
        """One batch of canonical indicators, then of peer hubs' alerts; returns whether there may be more."""
        canonical = self._s.canonical_collection
        cursor = await self._book.cursor(canonical)
        page = await self._store.query_objects(ObjectQuery(
            collection_id=canonical, limit=BATCH, after_key=cursor or None,
            types=("indicator",), version_matches=(VersionMatch.ALL,)))
        more = page.more
        if page.items:
            observations = [o for item in page.items
                            for o in observations_from_canonical(orjson.loads(item.body), self._s.hub.id)]
            await self._apply(observations, (), (canonical, page.items[-1].date_added))
        for collection in self._s.intake_collections if self._s.peer_hubs else ():  # no peer hub: no peer alerts
            cursor = await self._book.cursor(collection)
            page = await self._store.query_objects(ObjectQuery(
                collection_id=collection, limit=BATCH, after_key=cursor or None, types=("grouping",),
                version_matches=(VersionMatch.ALL,)))
            if page.items:
                remote = [a.spread for a in (self._peer_alert(orjson.loads(i.body)) for i in page.items) if a]
                await self._apply([], remote, (collection, page.items[-1].date_added))
                more = more or page.more
        return more

    def _peer_alert(self, obj: dict[str, Any]) -> Alert | None:
        """A peer hub's alert, to merge its spread (countries and reporters unioned, never counted twice)."""
        if obj.get("created_by_ref") not in self._s.peer_hubs or ALERT_EXTENSION not in (obj.get("extensions") or {}):
            return None
        try:
            return parse_alert(obj, default_tlp=self._s.default_tlp)
        except InvalidObject as exc:
            log.warning("alert %s from %s not merged: %s", obj.get("id"), obj.get("created_by_ref"), exc)
            return None

    async def _apply(self, observations: list[Any], remote: Sequence[SpreadState], cursor: tuple[str, int]) -> None:
        admission = self._s.rules.admission(audience=self._s.audience)
        keys = keys_to_load(observations, remote, families=self._families)
        states = await self._book.states(keys)
        more = keys_to_load(observations, remote, families=self._families, loaded=states) - keys
        states |= await self._book.states(more)
        changed = update(states, observations, admission, self._families, remote=remote)
        now = self._now()
        previous = {r.threat_key: parse_alert(r.body, default_tlp=self._s.default_tlp)
                    for r in await self._book.alerts(changed)}
        caught_up = await self._published_since_book(previous, changed)
        previous |= {alert.threat_key: alert for alert, _ in caught_up}
        moved = [a for key, state in changed.items()
                 if (a := recompute(previous.get(key), state, self._s.rules, now=now)) is not None]
        published = await self._publish(moved)
        await self._book.save(changed.values(), [*caught_up, *published], cursor)

    async def _published_since_book(self, previous: dict[str, Alert],
                                     keys: Iterable[str]) -> list[tuple[Alert, dict[str, Any]]]:
        """Versions of these threats' alerts in the alerts collection that are newer than the book's: published
        (stored and queued) just before a crash that came before the book was saved. The redone batch takes them
        as the previous versions, so it finds them unchanged and queues nothing twice."""
        wanted = sorted({alert_id(key) for key in keys})
        found: list[tuple[Alert, dict[str, Any]]] = []
        for start in range(0, len(wanted), 500):
            page = await self._store.query_objects(ObjectQuery(
                collection_id=self._s.alerts_collection, limit=500, ids=tuple(wanted[start:start + 500])))
            for item in page.items:
                obj = orjson.loads(item.body)
                if obj.get("created_by_ref") != self._s.hub.id:
                    continue
                alert = parse_alert(obj, default_tlp=self._s.default_tlp)
                known = previous.get(alert.threat_key)
                if known is None or alert.modified > known.modified:
                    found.append((alert, obj))
        return found

    async def sweep(self) -> None:
        """Re-evaluate every open alert with its stored spread, so quiet ones expire."""
        now = self._now()
        rows = await self._book.alerts(active_only=True)
        states = await self._book.states(r.threat_key for r in rows)
        moved = []
        for row in rows:
            alert = parse_alert(row.body, default_tlp=self._s.default_tlp)
            state = states.get(row.threat_key, alert.spread)
            if (next_version := recompute(alert, state, self._s.rules, now=now)) is not None:
                moved.append(next_version)
        if moved:
            await self._book.save((), await self._publish(moved), None)
        if self._queue is not None:
            await self._queue.prune()  # delivered and dead entries past their retention

    async def _publish(self, alerts: list[Alert]) -> list[tuple[Alert, dict[str, Any]]]:
        out = [(a, alert_object(a, self._s.hub)) for a in alerts if a.spread.tlp is not None]
        if not out:
            return []
        await self._store.install(self._s.alerts_collection, [o for _, o in out])
        for alert, obj in out:
            self.on_alert(alert)
            log.info("alert %s %s level=%d countries=%s", alert.id, alert.status.value, alert.level,
                     ",".join(sorted(alert.spread.countries)),
                     extra={"alert": alert.id, "threat": alert.threat_key, "level": alert.level})
            if self._queue is not None and self._members:
                await publish(self._queue, self._members, await self._notice(alert, obj), self._s.default_tlp)
        self.published += len(out)
        return out

    async def _notice(self, alert: Alert, obj: dict[str, Any]) -> Notice:
        ids = tuple(sorted(alert.spread.indicators))
        indicators: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            page = await self._store.query_objects(ObjectQuery(
                collection_id=self._s.canonical_collection, limit=1000, ids=ids[start:start + 500]))
            indicators += [orjson.loads(i.body) for i in page.items]
        types = sorted({t for i in indicators for t in i.get("indicator_types") or ()})
        return Notice(alert_id=alert.id, version=format_timestamp(alert.modified), level=alert.level,
                      level_name=alert.level_name, tlp=alert.spread.tlp or self._s.default_tlp,
                      countries=tuple(sorted(alert.spread.countries)),
                      families=tuple(sorted(alert.spread.families)), indicator_types=tuple(types),
                      objects=(obj, *indicators))
