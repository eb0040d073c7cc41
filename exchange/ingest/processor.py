"""The journal processor: journaled envelopes → checked STIX records → store, with per-object status.

Runs as one background task; replays everything unprocessed at startup, so an envelope acknowledged
before a crash is processed after it. Processing is idempotent (the store upserts by id and version).
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from exchange.audit.log import AuditEntry, AuditKind, AuditLog
from exchange.dedup.claims import (
    FUTURE_SKEW,
    Claim,
    SightingClaim,
    Source,
    Warn,
    claim_from_indicator,
    claim_from_sighting,
)
from exchange.dedup.relay import provenance_of, relayed_claims
from exchange.errors import InvalidObject
from exchange.ingest.journal import Envelope, Journal
from exchange.model.stix import StixRecord, object_ref, read_record
from exchange.model.timestamps import now_micros
from exchange.normalize.formats.stix2x import upgrade_object
from exchange.policy.tlp import Tlp
from exchange.store.base import EnvelopeWrite, ObjectResult, Outcome, StatusRecord, Store

log = logging.getLogger(__name__)
BATCH = 32  # envelopes per store transaction
RETRY_DELAY = 1.0
# The cyclic collector's thresholds for a hub (app.serve). Decoding one envelope makes thousands of dicts and lists
# that die with it; at CPython's default first threshold of 700 the collector walked them several times per
# envelope, ~8% of prepare() in scripts/bench_pipeline.py. A pause for 10,000 young objects is still ~1 ms.
GC_THRESHOLDS = (10_000, 10, 10)


@dataclass(frozen=True, slots=True)
class ClaimPolicy:
    """How objects become claims: who each account is, the TLP of unmarked objects, false-positive lists."""

    sources: Mapping[str, Source] = field(default_factory=dict)
    default_tlp: Tlp = Tlp.GREEN
    warn: Warn | None = None
    enabled: bool = True  # off for a hub without a canonical collection: a plain TAXII store
    hub_id: str = ""  # this hub's identity id: relayed claims that crossed it are echoes
    # Identity id of each configured peer hub -> the accounts that speak for it. Anything authored by a peer hub
    # (its canonical indicators, its alerts) is taken only from those: any other writer could forge it.
    authors: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def source(self, account: str) -> Source:
        return self.sources.get(account) or Source(name=account)


def derive(obj: dict[str, Any], record: StixRecord, source: Source, policy: ClaimPolicy,
           not_after: int | None = None) -> tuple[Claim | SightingClaim, ...]:
    """The claims an indicator or sighting makes (upgraded first when it is STIX 2.0); InvalidObject if bad.

    A peer hub's canonical indicator makes the claims it carries, not one claim of its own. `not_after`: the
    latest `modified` a claim may have (claims.FUTURE_SKEW)."""
    if not policy.enabled or record.type not in ("indicator", "sighting"):
        return ()
    if record.spec_version == "2.0":
        obj = upgrade_object(obj)[0]
    if record.type == "indicator":
        if source.relay and (provenance := provenance_of(obj)) is not None:
            return tuple(relayed_claims(obj, provenance, source, hub_id=policy.hub_id, warn=policy.warn,
                                        not_after=not_after))
        claim: Claim | SightingClaim | None = claim_from_indicator(obj, source, default_tlp=policy.default_tlp,
                                                                   warn=policy.warn, not_after=not_after)
    else:
        claim = claim_from_sighting(obj, source, default_tlp=policy.default_tlp, not_after=not_after)
    return () if claim is None else (claim,)


def _check_author(obj: dict[str, Any], account: str, policy: ClaimPolicy) -> None:
    author = obj.get("created_by_ref")
    allowed = policy.authors.get(author) if isinstance(author, str) else None
    if allowed is not None and account not in allowed:
        raise InvalidObject(f"created_by_ref {author} is a peer hub's identity: only that peer's accounts may "
                            f"send what it authored, not {account!r}")


def prepare(env: Envelope, policy: ClaimPolicy | None = None) -> EnvelopeWrite:
    """Split an envelope into storable records, their claims, and per-object rejections (pure; in a thread)."""
    policy = policy or ClaimPolicy()
    source = policy.source(env.account)
    not_after = now_micros() + FUTURE_SKEW
    records: list[StixRecord] = []
    derived: list[tuple[Claim | SightingClaim, ...]] = []
    rejected: list[ObjectResult] = []
    try:
        objects = orjson.loads(env.body)["objects"]
        if not isinstance(objects, list):
            raise TypeError("'objects' is not a list")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:  # checked at POST; kept for old journals
        objects = []
        rejected.append(ObjectResult(id="", version="", outcome=Outcome.REJECTED, message=f"bad envelope: {exc}"))
    for index, obj in enumerate(objects):
        try:
            record = read_record(obj)
            _check_author(obj, env.account, policy)
            claims = derive(obj, record, source, policy, not_after)
            records.append(record)
            derived.append(claims)
        except InvalidObject as exc:
            ident, version = object_ref(obj)
            rejected.append(ObjectResult(id=ident, version=version, outcome=Outcome.REJECTED,
                                         message=f"objects[{index}]: {exc}"))
        except Exception as exc:  # a checker bug must reject one object, never wedge the journal
            log.exception("unexpected error checking objects[%d] of status %s", index, env.status_id)
            ident, version = object_ref(obj)
            rejected.append(ObjectResult(id=ident, version=version, outcome=Outcome.REJECTED,
                                         message=f"objects[{index}]: could not be checked ({type(exc).__name__})"))
    status = StatusRecord(id=env.status_id, api_root=env.api_root, account=env.account,
                          request_timestamp=env.received_at, total=env.total, results=tuple(rejected))
    return EnvelopeWrite(collection_id=env.collection_id, records=records, status=status, derived=derived)


def stored_entry(collection_id: str, status: StatusRecord, *, replayed: bool = False) -> AuditEntry:
    payload: dict[str, Any] = {"status_id": status.id,
                               "objects": [[r.id, r.version, r.outcome.value] for r in status.results]}
    if replayed:  # the crash may have come before or after the first entry: at-least-once, never missing
        payload["replayed"] = True
    return AuditEntry(AuditKind.OBJECTS_STORED, status.account, collection_id, payload)


class Processor:
    def __init__(self, journal: Journal, store: Store, audit: AuditLog, policy: ClaimPolicy | None = None, *,
                 on_commit: Callable[[list[StatusRecord]], None] | None = None) -> None:
        self._journal = journal
        self._on_commit = on_commit  # told each committed batch's statuses (metrics, readiness); must not raise
        self._store = store
        self._audit = audit
        self._policy = policy or ClaimPolicy()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._running = asyncio.Event()  # cleared by pause(): an operator (or a test) holds processing
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def wait_idle(self) -> None:
        """Drain-until-idle for tests and shutdown: returns once the journal backlog is empty."""
        await self._idle.wait()

    async def run(self) -> None:
        """Two stages joined by a small queue, so checking batch k+1 overlaps storing batch k."""
        queue: asyncio.Queue[_Prepared] = asyncio.Queue(maxsize=2)
        consumer = asyncio.create_task(self._commit_forever(queue), name="journal-commit")
        try:
            await self._prepare_forever(queue)
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

    async def _prepare_forever(self, queue: asyncio.Queue["_Prepared"]) -> None:
        cursor = 0  # journal seq handed to the commit stage; starts at 0 so a restart replays the rest
        self._wake.set()
        while True:
            await self._wake.wait()
            await self._running.wait()
            self._wake.clear()
            while True:
                try:
                    envelopes = await self._journal.unprocessed(BATCH, after=cursor)
                    if not envelopes:
                        break
                    await queue.put(await self._prepare(envelopes))
                    cursor = envelopes[-1].seq
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("reading the journal failed; retrying in %.1fs", RETRY_DELAY)
                    await asyncio.sleep(RETRY_DELAY)
            await queue.join()
            if not self._wake.is_set():
                self._idle.set()

    async def _prepare(self, envelopes: list[Envelope]) -> "_Prepared":
        done = await self._store.get_statuses([e.status_id for e in envelopes])
        fresh = [e for e in envelopes if e.status_id not in done]
        writes = await asyncio.to_thread(lambda: [prepare(e, self._policy) for e in fresh])
        return _Prepared(envelopes, writes, done)

    async def _commit_forever(self, queue: asyncio.Queue["_Prepared"]) -> None:
        while True:
            batch = await queue.get()
            try:
                while True:  # store trouble is transient: retry the same batch, in order, until it lands
                    try:
                        await self._commit(batch)
                        break
                    except Exception:
                        log.exception("storing a journal batch failed; retrying in %.1fs", RETRY_DELAY)
                        await asyncio.sleep(RETRY_DELAY)
            finally:
                queue.task_done()

    async def _commit(self, batch: "_Prepared") -> None:
        statuses = await self._store.write_envelopes(batch.writes) if batch.writes else []
        # Stored before a crash but not marked processed: the audit entry may be missing, so write it again.
        entries = [stored_entry(e.collection_id, batch.done[e.status_id], replayed=True)
                   for e in batch.envelopes if e.status_id in batch.done]
        entries += [stored_entry(w.collection_id, s) for w, s in zip(batch.writes, statuses, strict=True)]
        await asyncio.gather(self._audit.append(*entries),
                             self._journal.mark_processed([e.seq for e in batch.envelopes]))
        for w, s in zip(batch.writes, statuses, strict=True):
            log.info("envelope processed status=%s account=%s collection=%s succeeded=%d failed=%d",
                     s.id, s.account, w.collection_id, s.success_count, s.failure_count,
                     extra={"status_id": s.id, "source": s.account, "collection": w.collection_id})
        if self._on_commit is not None:
            self._on_commit(statuses)


@dataclass(frozen=True, slots=True)
class _Prepared:
    envelopes: list[Envelope]
    writes: list[EnvelopeWrite]
    done: dict[str, StatusRecord]  # envelopes already stored before a crash, by status id


async def run_processor(processor: Processor) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        await processor.run()
