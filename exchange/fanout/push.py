"""Pushes to peer hubs (fan-out stage): new canonical objects POSTed to each peer's inbox collection.

One task per (peer, collection). The outbound cursor is our own date_added, persisted in outbound.db only
after the peer acknowledged the batch, so a restart resends at most the one batch in flight (a peer treats
an exact re-post as a success, TAXII 2.1 section 5.4) and skips nothing. Every object passes the egress
policy for that peer (TLP, agreement, no echoes) on the way out.
"""

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from exchange.audit.log import AuditEntry, AuditKind, AuditLog
from exchange.config_peers import PeerSettings
from exchange.dedup.relay import view_for
from exchange.errors import TransientError
from exchange.model.timestamps import format_timestamp, now_micros
from exchange.policy.backoff import backoff_delay
from exchange.policy.egress import Recipient
from exchange.policy.tlp import Tlp
from exchange.store.base import ObjectQuery, Store, VersionMatch
from exchange.store.sqlite.engine import SQLiteEngine, read_offline
from exchange.taxii.client import TaxiiClient, TaxiiClientError, Unauthorized

log = logging.getLogger(__name__)
BACKOFF_CAP = 300.0
# Extension definitions (STIX 2.1 section 7.3) are static: they ship in schemas/ and the collections that use them
# serve them. They are not pushed: medallion 3.0.0 reads their `version` property ("1.0.0") as a manifest
# timestamp, and one such object makes every read of its collection fail (HTTP 500) for all its clients.
NOT_PUSHED = frozenset({"extension-definition"})

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE push_cursor (
        peer            TEXT NOT NULL,
        collection      TEXT NOT NULL,  -- the peer's, pushed to; "<ours>-><theirs>" for other than canonical
        cursor          INTEGER NOT NULL DEFAULT 0,
        objects_pushed  INTEGER NOT NULL DEFAULT 0,
        objects_refused INTEGER NOT NULL DEFAULT 0,
        last_success    INTEGER,
        last_error      TEXT,
        last_error_at   INTEGER,
        error_count     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (peer, collection)
    );
    """,
)


@dataclass(frozen=True, slots=True)
class PushState:
    peer: str
    collection: str
    cursor: int = 0  # date_added in our canonical collection of the last object handed to the peer
    objects_pushed: int = 0
    objects_refused: int = 0  # the peer answered with a per-object failure: not retried, counted
    last_success: int | None = None
    last_error: str | None = None
    last_error_at: int | None = None
    error_count: int = 0


_STATE_COLUMNS = ("peer, collection, cursor, objects_pushed, objects_refused, last_success, last_error,"
                  " last_error_at, error_count")


class PushLog:
    """outbound.db: one row per pushed peer collection."""

    def __init__(self, path: Path) -> None:
        self._engine = SQLiteEngine(path, MIGRATIONS, readers=1, synchronous="FULL", cache_mib=2)

    async def start(self) -> None:
        await self._engine.start()

    async def close(self) -> None:
        await self._engine.close()

    async def state(self, peer: str, collection: str) -> PushState:
        row = await self._engine.read(lambda c: c.execute(
            f"SELECT {_STATE_COLUMNS} FROM push_cursor WHERE peer = ? AND collection = ?",
            (peer, collection)).fetchone())
        return PushState(*row) if row else PushState(peer=peer, collection=collection)

    async def advance(self, peer: str, collection: str, cursor: int, pushed: int, refused: int, at: int) -> None:
        await self._engine.write(lambda c: c.execute(
            "INSERT INTO push_cursor (peer, collection, cursor, objects_pushed, objects_refused, last_success)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (peer, collection) DO UPDATE SET cursor = max(cursor,"
            " excluded.cursor), objects_pushed = objects_pushed + excluded.objects_pushed,"
            " objects_refused = objects_refused + excluded.objects_refused, last_success = excluded.last_success",
            (peer, collection, cursor, pushed, refused, at)))

    async def fail(self, peer: str, collection: str, message: str, at: int) -> None:
        await self._engine.write(lambda c: c.execute(
            "INSERT INTO push_cursor (peer, collection, last_error, last_error_at, error_count)"
            " VALUES (?, ?, ?, ?, 1) ON CONFLICT (peer, collection) DO UPDATE SET last_error = excluded.last_error,"
            " last_error_at = excluded.last_error_at, error_count = error_count + 1",
            (peer, collection, message[:2000], at)))


def read_push_states(path: Path) -> list[PushState]:
    """Rows straight from the file, for `exchange peers` (the hub may be running or not)."""
    return read_offline(path, lambda c: [PushState(*r) for r in c.execute(
        f"SELECT {_STATE_COLUMNS} FROM push_cursor")], [])


def push_health(peers: tuple[PeerSettings, ...], path: Path) -> list[PushState]:
    """Every configured (peer, push collection), with its persisted row or as never pushed."""
    rows = {(r.peer, r.collection): r for r in read_push_states(path)}
    listed = [rows.get((p.id, c)) or PushState(peer=p.id, collection=c) for p in peers for c in p.push]
    return listed + [r for r in rows.values() if "->" in r.collection]


def format_push_health(states: list[PushState], now: int) -> str:
    def when(micros: int | None) -> str:
        return "never" if micros is None else f"{format_timestamp(micros)[:19]}Z ({(now - micros) / 1e6:.0f}s ago)"

    blocks = []
    for s in states:
        lines = [f"push {s.peer}/{s.collection}",
                 f"  last success:   {when(s.last_success)}",
                 f"  objects pushed: {s.objects_pushed} (refused by the peer: {s.objects_refused})",
                 f"  errors:         {s.error_count}"]
        if s.last_error:
            lines.append(f"  last error:     {when(s.last_error_at)}: {s.last_error}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


@dataclass(frozen=True, slots=True)
class PushTarget:
    peer: PeerSettings
    collection: str  # the peer's collection id
    recipient: Recipient  # the peer as egress sees it: its agreement
    source: str | None = None  # our collection pushed from; None: the canonical collection

    @property
    def name(self) -> str:
        return f"{self.peer.id}/{self.collection}"

    @property
    def key(self) -> str:
        """The push log's name for this target: one cursor per (peer collection, our collection)."""
        return self.collection if self.source is None else f"{self.source}->{self.collection}"


# medallion 3.0.0's memory backend answers an existing id and version with exactly this (its only per-object
# failure); its MongoDB backend says "... an identical entry already exists ...".
_MEDALLION_DUPLICATE = "unable to process object"


def refused(status: dict[str, Any]) -> list[str]:
    """Per-object failures in a TAXII status (section 4.3.1) that are not "already there": medallion counts
    a duplicate as a failure, and a duplicate is what a resend after a crash produces."""
    out = []
    for entry in status.get("failures") or []:
        message = str(entry.get("message", "")) if isinstance(entry, dict) else str(entry)
        lowered = message.lower()
        if "already" in lowered or "duplicate" in lowered or lowered.strip() == _MEDALLION_DUPLICATE:
            continue
        out.append(f"{entry.get('id', '?') if isinstance(entry, dict) else '?'}: {message}"[:300])
    return out


class Pusher:
    """Pushes one peer collection forever; never raises (a failing peer must not stop the others)."""

    def __init__(self, target: PushTarget, client: TaxiiClient, store: Store, push_log: PushLog, audit: AuditLog,
                 *, canonical_collection: str, default_tlp: Tlp, rng: random.Random,
                 now: Callable[[], int] = now_micros) -> None:
        self.target = target
        self._client = client
        self._store = store
        self._log = push_log
        self._audit = audit
        self._collection = canonical_collection
        self._default_tlp = default_tlp
        self._rng = rng
        self._now = now
        self._url: str | None = None
        self._poke = asyncio.Event()
        self._attempt = 0

    def push_now(self) -> None:
        self._poke.set()

    async def run(self) -> None:
        while True:
            delay = await self.push_once()
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), delay)

    async def push_once(self) -> float:
        peer = self.target.peer
        try:
            await self.push_round()
            self._attempt = 0
            return peer.push_interval
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._attempt += 1
            cap = max(BACKOFF_CAP, peer.push_interval)
            delay = backoff_delay(self._attempt, peer.push_interval, cap, self._rng)
            if not isinstance(exc, TransientError | TaxiiClientError):
                log.exception("push %s: unexpected error", self.target.name)
            kind = "unauthorized: " if isinstance(exc, Unauthorized) else ""
            log.warning("push %s: %s%s (next try in %.1fs)", self.target.name, kind, exc, delay)
            with contextlib.suppress(Exception):  # health is best effort; the backoff still applies
                await self._log.fail(peer.id, self.target.key, f"{kind}{exc}", self._now())
            return delay

    async def _collection_url(self) -> str:
        if self._url is None:
            peer = self.target.peer
            root = peer.api_root or await self._client.discover_api_root(peer.discovery or "")
            self._url = f"{root}collections/{quote(self.target.collection, safe='')}/"
        return self._url

    async def push_round(self) -> int:
        """Push everything added since the cursor, batch by batch; returns the objects sent."""
        peer, collection = self.target.peer, self.target.key
        source = self.target.source or self._collection
        state = await self._log.state(peer.id, collection)
        cursor, sent = state.cursor, 0
        while True:
            page = await self._store.query_objects(ObjectQuery(
                collection_id=source, limit=peer.push_batch, after_key=cursor or None,
                version_matches=(VersionMatch.ALL,)))
            if not page.items:
                return sent
            views = [v for v in (view_for(self.target.recipient, orjson.loads(i.body), self._default_tlp)
                                 for i in page.items) if v is not None and v.get("type") not in NOT_PUSHED]
            failures: list[str] = []
            if views:
                status = await self._client.add_objects(await self._collection_url(), views)
                failures = refused(status)
                if failures:
                    log.warning("push %s: the peer refused %d object(s): %s", self.target.name, len(failures),
                                "; ".join(failures[:3]))
                await self._audit.append(AuditEntry(AuditKind.OBJECTS_SERVED, peer.account, source, {
                    "pushed_to": await self._collection_url(), "status_id": status.get("id"),
                    "objects": [[v["id"], v.get("modified", "")] for v in views], "refused": failures[:20]}))
            cursor = page.items[-1].date_added
            await self._log.advance(peer.id, collection, cursor, len(views) - len(failures), len(failures),
                                    self._now())
            sent += len(views)
            if not page.more:
                return sent


def push_targets(peers: tuple[PeerSettings, ...], recipient: Callable[[PeerSettings], Recipient],
                 also: tuple[str, ...] = ()) -> list[PushTarget]:
    """Every (peer, push collection), for the canonical collection and each of our collections in `also`
    (the alerts collection: peer hubs merge our alerts with theirs)."""
    return [PushTarget(peer=p, collection=c, recipient=recipient(p), source=s)
            for p in peers for c in p.push for s in (None, *also)]


async def run_pushers(pushers: list[Pusher]) -> None:
    async with asyncio.TaskGroup() as group:
        for pusher in pushers:
            group.create_task(pusher.run(), name=f"peer-pusher:{pusher.target.name}")
