"""The peer poller (ingest stage): pulls each configured peer collection over TAXII 2.1 into the journal.

One task per (peer, collection). A sync round pages with `added_after` = the persisted cursor and the peer's
`next`; every page is journaled as one envelope together with its cursor, so a restart resumes exactly
after the last durable page. Errors back off with full jitter; garbage quarantines the peer collection.
"""

import asyncio
import contextlib
import hashlib
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import orjson

from exchange.audit.log import AuditEntry, AuditKind, AuditLog
from exchange.config_peers import PeerSettings
from exchange.errors import TransientError
from exchange.ingest.journal import Envelope, Journal
from exchange.ingest.peers import Garbage, PeerFailure, PeerProgress, PeerState, PeerSync
from exchange.model.stix import object_ref
from exchange.model.timestamps import format_timestamp, now_micros, parse_timestamp
from exchange.policy.backoff import backoff_delay
from exchange.taxii.client import MalformedResponse, TaxiiClient, TaxiiClientError, Unauthorized

log = logging.getLogger(__name__)
BACKOFF_CAP = 300.0  # seconds: a peer that is down for a day is still tried every few minutes
BACKLOG_HIGH = 64  # unprocessed journal envelopes at which pollers wait for the processor to catch up
BACKLOG_RECHECK = 0.5  # seconds
DISCOVERY_MAX_BYTES = 1 << 20
DATE_ADDED_LAST = "X-TAXII-Date-Added-Last"


@dataclass(frozen=True, slots=True)
class PullTarget:
    """One peer collection to pull, and where its objects land in this hub."""

    peer: PeerSettings
    collection: str  # the peer's collection id
    into_api_root: str  # path of the API root of peer.pull_into (the journal records it)

    @property
    def name(self) -> str:
        return f"{self.peer.id}/{self.collection}"


@dataclass(frozen=True, slots=True)
class PulledPage:
    """A page checked for shape: TAXII 2.1 section 3.7 envelope (objects, more, next)."""

    objects: list[dict[str, Any]]
    more: bool
    next: str | None


def read_page(payload: dict[str, Any], url: str) -> PulledPage:
    """The envelope's parts, or MalformedResponse naming what is wrong with it (pure)."""
    def garbage(why: str) -> MalformedResponse:
        return MalformedResponse(f"GET {url}: not a TAXII envelope: {why}", url=url,
                                 content_type="application/taxii+json", body=orjson.dumps(payload))

    objects = payload.get("objects", [])
    if not isinstance(objects, list):
        raise garbage(f"'objects' is a {type(objects).__name__}, not a list")
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str) or not isinstance(obj.get("id"), str):
            raise garbage(f"objects[{index}] is not a STIX object (a JSON object with type and id)")
    more, token = payload.get("more", False), payload.get("next")
    if not isinstance(more, bool):
        raise garbage(f"'more' is {more!r}, not true or false")
    if token is not None and not isinstance(token, str | int):
        raise garbage(f"'next' is {token!r}, not a string")
    return PulledPage(objects=objects, more=more, next=str(token) if token is not None else None)


def repair(obj: dict[str, Any]) -> dict[str, Any]:
    """Undo known server quirks. OpenTAXII 0.9.x serves the object type as spec_version (its issues 237, 268);
    its TAXII 2 collections hold STIX 2.1, so that is what the object is."""
    if obj.get("spec_version") == obj.get("type"):
        return {**obj, "spec_version": "2.1"}
    return obj


def collection_url(api_root: str, collection: str) -> str:
    return f"{api_root}collections/{quote(collection, safe='')}/"


class Backlog:
    """Back-pressure from the processor: the journal is the pollers' queue, and queues are bounded."""

    def __init__(self, journal: Journal, wait_idle: Callable[[], Any], high: int = BACKLOG_HIGH) -> None:
        self._journal = journal
        self._wait_idle = wait_idle
        self._high = high

    async def wait_room(self) -> None:
        while await self._journal.backlog() >= self._high:
            # Wake on a full drain, but look again now and then: under a steady stream of POSTs the
            # processor may never be idle, and pullers must not starve behind it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_idle(), BACKLOG_RECHECK)


class Poller:
    """Pulls one peer collection forever; never raises (a failing peer must not take its siblings down)."""

    def __init__(self, target: PullTarget, client: TaxiiClient, journal: Journal, audit: AuditLog, *,
                 wake: Callable[[], None], backlog: Backlog, rng: random.Random,
                 now: Callable[[], int] = now_micros) -> None:
        self.target = target
        self._client = client
        self._journal = journal
        self._audit = audit
        self._wake = wake
        self._backlog = backlog
        self._rng = rng
        self._now = now
        self._sync = PeerSync(peer=target.peer.id, collection=target.collection)
        self._url: str | None = None
        self._poke = asyncio.Event()
        self._attempt = 0  # consecutive failures, for the backoff exponent
        self._loaded = False

    def poll_now(self) -> None:
        """Cut the current wait (poll interval or backoff) short."""
        self._poke.set()

    async def run(self) -> None:
        while True:
            delay = await self.poll_once()
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), delay)

    async def poll_once(self) -> float:
        """One sync round with its error handling (health, backoff, quarantine); returns the wait before the next."""
        peer = self.target.peer
        try:
            if not self._loaded:
                await self.load()
            await self.sync_round()
            self._attempt = 0
            return peer.poll_interval
        except asyncio.CancelledError:
            raise
        except MalformedResponse as exc:
            self._attempt = 0
            garbage = Garbage(url=exc.url, content_type=exc.content_type, body=exc.body)
            await self._fail(PeerState.QUARANTINED, f"quarantined: sent garbage: {exc}", peer.quarantine, garbage)
            return peer.quarantine
        except Exception as exc:
            self._attempt += 1
            delay = backoff_delay(self._attempt, peer.poll_interval, max(BACKOFF_CAP, peer.poll_interval), self._rng)
            if isinstance(exc, Unauthorized):
                state, message = PeerState.UNAUTHORIZED, f"unauthorized: {exc}"
            elif isinstance(exc, TransientError | TaxiiClientError):
                state, message = PeerState.BACKING_OFF, str(exc)
            else:  # a bug here must show in health, not kill the task
                log.exception("peer %s: unexpected error", self.target.name)
                state, message = PeerState.BACKING_OFF, f"internal error: {type(exc).__name__}: {exc}"
            await self._fail(state, message, delay)
            return delay

    async def load(self) -> None:
        """The persisted cursor and counters: a restart resumes where the last durable page left off."""
        key = (self._sync.peer, self._sync.collection)
        found = next((r for r in await self._journal.peer_sync() if (r.peer, r.collection) == key), None)
        self._sync = found or self._sync
        self._loaded = True

    async def _fail(self, state: PeerState, message: str, delay: float, garbage: Garbage | None = None) -> None:
        now = self._now()
        log.warning("peer %s: %s (next try in %.1fs)", self.target.name, message, delay)
        failure = PeerFailure(peer=self._sync.peer, collection=self._sync.collection, state=state,
                              message=message[:2000], at=now, retry_at=now + int(delay * 1e6))
        try:
            await self._journal.record_peer_failure(failure, garbage)
        except Exception:  # health is best effort; the backoff still applies
            log.exception("peer %s: could not record the failure", self.target.name)
        self._sync = replace(self._sync, state=state, last_error=failure.message, last_error_at=now,
                             error_count=self._sync.error_count + 1, retry_at=failure.retry_at)

    async def _collection_url(self) -> str:
        if self._url is None:
            peer = self.target.peer
            root = peer.api_root or await self._client.discover_api_root(
                peer.discovery or "", max_bytes=DISCOVERY_MAX_BYTES)  # the config schema requires one of them
            self._url = collection_url(root, self.target.collection)
        return self._url

    async def sync_round(self) -> None:
        """Pull pages until the peer says there is no more; each page durable with its cursor."""
        url = await self._collection_url()
        peer = self.target.peer
        base = {"limit": str(peer.page_size), "match[version]": "all"}  # every version: updates must arrive
        resumed = self._sync.in_round and self._sync.cursor_micros is not None
        added_after, skip = self._start_point(resumed)
        token: str | None = None
        restarted = False
        while True:
            params = dict(base)
            if added_after is not None:
                params["added_after"] = added_after
            if token is not None:
                params["next"] = token  # with the round's original filters: servers bind `next` to them
            try:
                payload, headers = await self._client.get_objects(url, params, max_bytes=peer.max_page_bytes)
            except TaxiiClientError as exc:
                if token is None or restarted or isinstance(exc, Unauthorized):
                    raise
                # The peer forgot our `next` (medallion keeps them in memory and expires them): resume
                # from the durable cursor, once per round, with the same overlap as after a restart.
                log.info("peer %s: `next` refused (%s); resuming from the cursor", self.target.name, exc)
                added_after, skip = self._start_point(self._sync.cursor_micros is not None)
                token, restarted = None, True
                continue
            page = read_page(payload, url)
            more = await self._store_page(url, page, headers, skip)
            skip = frozenset()
            if not more:
                return
            if page.next is not None:
                token = page.next
            else:  # a server that pages by added_after only
                added_after, token = self._sync.cursor, None
            await self._backlog.wait_room()

    def _start_point(self, resumed: bool) -> tuple[str | None, frozenset[tuple[str, str]]]:
        """added_after for a fresh round, and the objects to drop from its first page.

        After an interrupted round, objects sharing the cursor's date_added may be split across the page
        boundary (medallion gives every object of one POST the same date_added), so the resumed round
        starts 1 us earlier and drops what the last journaled page already held: no gap, no duplicate.
        """
        if not resumed or self._sync.cursor_micros is None:
            return self._sync.cursor, frozenset()
        return format_timestamp(self._sync.cursor_micros - 1), frozenset(self._sync.tail)

    async def _store_page(self, url: str, page: PulledPage, headers: Mapping[str, str],
                          skip: frozenset[tuple[str, str]]) -> bool:
        """Journal one page with its cursor; returns whether the peer has more."""
        more = page.more and bool(page.objects)  # `more` with nothing in the page would never end
        cursor, micros = await self._cursor_after(url, page, headers)
        refs = [object_ref(o) for o in page.objects]
        fresh = [(repair(o), ref) for o, ref in zip(page.objects, refs, strict=True) if ref not in skip]
        now = self._now()
        progress = PeerProgress(peer=self._sync.peer, collection=self._sync.collection, cursor=cursor,
                                cursor_micros=micros, in_round=more, tail=tuple(refs) if refs else None,
                                objects=len(fresh), at=now)
        env = self._envelope(fresh, now) if fresh else None
        await self._journal.append_with_cursor(env, progress)
        if env is not None:
            self._wake()
            await self._audit.append(AuditEntry(AuditKind.ENVELOPE_ACCEPTED, env.account, env.collection_id, {
                "status_id": env.status_id, "api_root": env.api_root, "objects": env.total,
                "sha256": hashlib.sha256(env.body).hexdigest(), "pulled_from": url}))
        self._sync = replace(self._sync, cursor=cursor, cursor_micros=micros, in_round=more,
                             tail=progress.tail if progress.tail is not None else self._sync.tail,
                             objects_pulled=self._sync.objects_pulled + len(fresh), state=PeerState.OK,
                             last_success=now, caught_up_at=self._sync.caught_up_at if more else now,
                             retry_at=None)
        return more

    def _envelope(self, fresh: list[tuple[dict[str, Any], tuple[str, str]]], now: int) -> Envelope:
        peer = self.target.peer
        return Envelope(status_id=str(uuid.uuid4()), api_root=self.target.into_api_root,
                        collection_id=peer.pull_into, account=peer.account, received_at=now, total=len(fresh),
                        pending=[ref for _, ref in fresh], body=orjson.dumps({"objects": [o for o, _ in fresh]}))

    async def _cursor_after(self, url: str, page: PulledPage,
                            headers: Mapping[str, str]) -> tuple[str | None, int | None]:
        """The cursor after this page: X-TAXII-Date-Added-Last (TAXII 2.1 section 3.3.1), else the last
        object's date_added from the manifest; never moves backwards."""
        current = (self._sync.cursor, self._sync.cursor_micros)
        if not page.objects:
            return current
        text = headers.get(DATE_ADDED_LAST)
        micros = _micros(text)
        if micros is None:
            text, micros = await self._date_added_from_manifest(url, page.objects[-1])
        if micros is None or text is None:
            if page.more and page.next is None:
                raise MalformedResponse(f"GET {url}: pages without `next` and without {DATE_ADDED_LAST}: "
                                        "there is no way to ask for the next page", url=url,
                                        content_type="application/taxii+json", body=b"")
            log.warning("peer %s: no date_added for the page; the cursor stays put", self.target.name)
            return current
        if current[1] is not None and micros < current[1]:
            return current
        return text, micros

    async def _date_added_from_manifest(self, url: str, obj: dict[str, Any]) -> tuple[str | None, int | None]:
        """For servers that do not send the header: one small manifest read for the page's last object."""
        ident, version = object_ref(obj)
        try:
            payload, _ = await self._client.get_manifest(url, {"match[id]": ident, "match[version]": "all"},
                                                         max_bytes=DISCOVERY_MAX_BYTES)
        except (TaxiiClientError, MalformedResponse) as exc:
            log.warning("peer %s: no manifest to find date_added (%s)", self.target.name, exc)
            return None, None
        entries = [e for e in payload.get("objects") or [] if isinstance(e, dict) and _micros(e.get("date_added"))]
        matching = [e for e in entries if e.get("version") == version] or entries
        if not matching:
            return None, None
        best = max(matching, key=lambda e: _micros(e["date_added"]) or 0)
        return best["date_added"], _micros(best["date_added"])


def _micros(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_timestamp(text.strip())
    except ValueError:  # e.g. a JavaScript Date string (MITRE ATT&CK's server): treated as absent
        return None


def pull_targets(peers: tuple[PeerSettings, ...], root_of: Mapping[str, str]) -> list[PullTarget]:
    """Every (peer, pull collection); root_of maps our collection ids to their API root paths."""
    return [PullTarget(peer=p, collection=c, into_api_root=root_of[p.pull_into]) for p in peers for c in p.pull]


async def run_pollers(pollers: list[Poller]) -> None:
    """All pollers in one TaskGroup; cancelling this task cancels and awaits every one of them."""
    async with asyncio.TaskGroup() as group:
        for poller in pollers:
            group.create_task(poller.run(), name=f"peer-poller:{poller.target.name}")
