"""Wiring: build the aiohttp application from settings; each resource is one cleanup_ctx generator."""

import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from exchange.audit.log import AuditLog
from exchange.config import SCHEMA_DIR, Settings
from exchange.config_members import build_members
from exchange.dedup.claims import Source, Warn
from exchange.dedup.merge import HubIdentity
from exchange.fanout.alerting import AlertBook, Alerter, AlertingSettings
from exchange.fanout.push import Pusher, PushLog, push_targets, run_pushers
from exchange.fanout.queue import DeliveryQueue
from exchange.fanout.records import Member
from exchange.fanout.routes import ALERTING, Alerting, add_alerting_routes
from exchange.fanout.webhooks import RetryPolicy, WebhookDispatcher
from exchange.ingest.journal import Journal
from exchange.ingest.peers import PeerHealth, peer_credentials, peer_health
from exchange.ingest.poller import Backlog, Poller, pull_targets, run_pollers
from exchange.ingest.processor import GC_THRESHOLDS, ClaimPolicy, Processor, run_processor
from exchange.model.timestamps import now_micros
from exchange.observe.endpoints import add_observe_routes
from exchange.observe.metrics import METRICS, HubMetrics
from exchange.store.base import MergePolicy, StatusRecord, Store
from exchange.taxii.auth import Authenticator
from exchange.taxii.client import Credentials, TaxiiClient
from exchange.taxii.context import SERVICES, Services
from exchange.taxii.cursor import CursorCodec, load_cursor_key
from exchange.taxii.server import add_taxii_routes
from exchange.taxii.tls import listener_context, peer_contexts

log = logging.getLogger(__name__)
# Told each committed batch's statuses, in order (metrics, the alerter's wake-up); must not raise.
COMMIT_HOOKS = web.AppKey("commit_hooks", list)
BODY_SLACK = 64 * 1024  # aiohttp's cap sits above max_content_length so our own 413 message wins


def merge_policy(settings: Settings) -> MergePolicy | None:
    hub = settings.hub
    if hub.canonical_collection is None:
        return None
    return MergePolicy(collection_id=hub.canonical_collection, audience=hub.canonical_audience,
                       hub=HubIdentity(hub.identity_name), views=hub.canonical_views)


def claim_policy(settings: Settings, warn: Warn | None) -> ClaimPolicy:
    sources = {name: Source(name=name, country=s.country, trust=s.trust) for name, s in settings.sources.items()}
    # Pulled pages are journaled under the peer's account, and a peer's own account posts as the peer: their
    # claims carry the peer's country and trust, and a peer hub's canonical indicators relay their claims.
    peers = {p.id: Source(name=p.account, country=p.country, trust=p.trust, relay=True) for p in settings.peers}
    sources |= {s.name: s for s in peers.values()}
    sources |= {a.username: peers[a.peer] for a in settings.accounts if a.peer is not None}
    authors = {p.identity: frozenset({p.account, *(a.username for a in settings.accounts if a.peer == p.id)})
               for p in settings.peers if p.identity}
    return ClaimPolicy(sources=sources, default_tlp=settings.hub.default_tlp, warn=warn,
                       enabled=settings.hub.canonical_collection is not None,
                       hub_id=HubIdentity(settings.hub.identity_name).id, authors=authors)


def open_store(settings: Settings) -> Store:
    """The one place that knows which store backend is concrete (only SQLite so far)."""
    from exchange.store.sqlite.store import SQLiteStore

    return SQLiteStore(settings.hub.data_dir / "store.db", merge=merge_policy(settings))


def fixed_objects(settings: Settings) -> list[dict[str, Any]]:
    """What the canonical collection always holds: the hub's identity and the provenance extension."""
    bundle = orjson.loads((SCHEMA_DIR / "provenance-extension-definition.json").read_bytes())
    return [HubIdentity(settings.hub.identity_name).stix(), *bundle["objects"]]


async def load_warninglists() -> Warn | None:
    """MISP warninglists for flagging likely false positives; the hub runs without them if none load."""
    try:
        from exchange.normalize.warninglists import default_warninglists

        lists = await asyncio.to_thread(default_warninglists)
    except Exception as exc:  # missing data must not stop a hub from starting
        log.warning("warninglists not loaded, values will not be flagged: %s", exc)
        return None
    return lists.match


@dataclass(frozen=True, slots=True)
class Peering:
    """The running pollers, for tests and operators: health and poll-now."""

    settings: Settings
    journal: Journal
    pollers: tuple[Poller, ...]
    pushers: tuple[Pusher, ...] = ()

    async def health(self) -> list[PeerHealth]:
        return peer_health(self.settings.peers, await self.journal.peer_sync(), now_micros())

    def poll_now(self) -> None:
        for poller in self.pollers:
            poller.poll_now()

    def push_now(self) -> None:
        for pusher in self.pushers:
            pusher.push_now()


PEERING = web.AppKey("peering", Peering)
PEER_CONNECTIONS_PER_HOST = 4  # one per pulled collection is typical; a hanging peer holds only its own


def build_app(settings: Settings, *, env: Mapping[str, str] | None = None,
              rng: random.Random | None = None) -> web.Application:
    """The hub. `env` holds the peers' secrets (default: the process environment); a missing one is a
    ConfigError here, before anything starts."""
    source = os.environ if env is None else env
    credentials = {p.id: peer_credentials(p, source) for p in settings.peers}
    members = build_members(settings.members, settings.recipients, source)  # a missing webhook secret fails here
    peer_tls = peer_contexts(settings.peers)  # a CA file that cannot be read is a ConfigError here too
    app = web.Application(client_max_size=settings.hub.max_content_length + BODY_SLACK)
    observer = add_observe_routes(app, settings)  # /metrics, /healthz, /readyz; before the TAXII middlewares

    async def hub_services(app: web.Application) -> AsyncIterator[None]:
        data_dir = settings.hub.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        store, journal, audit = open_store(settings), Journal(data_dir / "journal.db"), AuditLog(data_dir / "audit.db")
        async with contextlib.AsyncExitStack() as stack:
            for resource in (store, journal, audit):
                await resource.start()
                stack.push_async_callback(resource.close)
            if settings.hub.canonical_collections:
                fixed = fixed_objects(settings)  # read once for every canonical collection
                for collection in settings.hub.canonical_collections:
                    await store.install(collection, fixed)
            warn = await load_warninglists() if settings.hub.canonical_collection is not None else None
            hooks = app[COMMIT_HOOKS]

            def committed(statuses: list[StatusRecord]) -> None:
                for hook in hooks:
                    hook(statuses)

            processor = Processor(journal, store, audit, claim_policy(settings, warn), on_commit=committed)
            app[SERVICES] = Services(settings=settings, store=store, journal=journal, audit=audit,
                                     processor=processor, cursors=CursorCodec(load_cursor_key(data_dir)),
                                     authenticator=Authenticator(settings.accounts))
            task = asyncio.create_task(run_processor(processor), name="journal-processor")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app[COMMIT_HOOKS] = [observer.committed]
    app.cleanup_ctx.append(hub_services)
    if settings.hub.alerts_collection is not None:
        app.cleanup_ctx.append(lambda app: alerting_ctx(app, members))
        app.on_shutdown.append(end_streams)  # before the server waits on open SSE responses, not after
        add_alerting_routes(app)
    pushing = settings.hub.canonical_collection is not None and any(p.push for p in settings.peers)
    if any(p.pull for p in settings.peers) or pushing:
        # After hub_services: cleanup runs in reverse, so pollers and pushers stop before the databases close.
        app.cleanup_ctx.append(lambda app: peer_pollers(app, credentials, rng or random.Random(), peer_tls))
    add_taxii_routes(app)
    return app


async def peer_pollers(app: web.Application, credentials: Mapping[str, Credentials],
                       rng: random.Random, peer_tls: Mapping[str, ssl.SSLContext | None]) -> AsyncIterator[None]:
    """One poller task per pulled and one pusher per pushed (peer, collection), each group in a TaskGroup;
    cancelled and awaited on shutdown."""
    svc = app[SERVICES]
    settings = svc.settings
    root_of = {c.id: r.path for r in settings.api_roots for c in r.collections}
    backlog = Backlog(svc.journal, svc.processor.wait_idle)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=PEER_CONNECTIONS_PER_HOST)
    async with aiohttp.ClientSession(connector=connector) as session:
        pollers = tuple(
            Poller(target, TaxiiClient(session, credentials[target.peer.id], timeout=target.peer.timeout,
                                       ssl_context=peer_tls.get(target.peer.id)),
                   svc.journal, svc.audit, wake=svc.processor.wake, backlog=backlog, rng=rng)
            for target in pull_targets(settings.peers, root_of))
        push_log = PushLog(settings.hub.data_dir / "outbound.db")
        await push_log.start()
        canonical = settings.hub.canonical_collection
        pushers = tuple(
            Pusher(target, TaxiiClient(session, credentials[target.peer.id], timeout=target.peer.timeout,
                                       ssl_context=peer_tls.get(target.peer.id)),
                   svc.store, push_log, svc.audit, canonical_collection=canonical,
                   default_tlp=settings.hub.default_tlp, rng=rng)
            for target in push_targets(settings.peers, settings.peer_recipient,
                                       tuple(filter(None, [settings.hub.alerts_collection])))
        ) if canonical is not None else ()
        app[PEERING] = Peering(settings=settings, journal=svc.journal, pollers=pollers, pushers=pushers)
        tasks = [asyncio.create_task(run_pollers(list(pollers)), name="peer-pollers"),
                 asyncio.create_task(run_pushers(list(pushers)), name="peer-pushers")]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await push_log.close()


async def alerting_ctx(app: web.Application, members: tuple[Member, ...]) -> AsyncIterator[None]:
    """Correlation and fan-out: the alerter reads the canonical collection after every commit, the webhook
    dispatcher delivers what it queues. Stopped before the store closes (cleanup runs in reverse)."""
    svc = app[SERVICES]
    settings = svc.settings
    hub = settings.hub
    assert hub.alerts_collection is not None and hub.canonical_collection is not None
    book, queue = AlertBook(hub.data_dir / "alerts.db"), DeliveryQueue(hub.data_dir / "deliveries.db")
    async with contextlib.AsyncExitStack() as stack:
        for resource in (book, queue):
            await resource.start()
            stack.push_async_callback(resource.close)
        await svc.store.install(hub.alerts_collection, alert_fixed_objects(settings))
        alerter = Alerter(AlertingSettings(
            hub=HubIdentity(hub.identity_name), canonical_collection=hub.canonical_collection,
            alerts_collection=hub.alerts_collection, rules=settings.alert_rules, audience=hub.canonical_audience,
            default_tlp=hub.default_tlp, sweep_interval=hub.alert_sweep_interval,
            intake_collections=tuple(c.id for r in settings.api_roots for c in r.collections
                                     if c.id not in (*hub.canonical_collections, hub.alerts_collection)),
            peer_hubs=frozenset(p.identity for p in settings.peers if p.identity)),
            svc.store, book, queue, members)
        dispatcher = WebhookDispatcher(queue, [s for m in members for s in m.subscriptions],
                                       policy=RetryPolicy(base=hub.webhook_retry_base, cap=hub.webhook_retry_cap))
        metrics = app[METRICS]
        alerter.on_alert = lambda alert: metrics.alerts.labels(level=alert.level_name).inc()
        dispatcher.outcome = lambda sub, outcome: count_delivery(metrics, sub, outcome)
        await dispatcher.start()
        stack.push_async_callback(dispatcher.stop)
        app[ALERTING] = Alerting(alerter=alerter, book=book, queue=queue, members=members)
        app[COMMIT_HOOKS].append(alerter.wake)
        task = asyncio.create_task(alerter.run(), name="alerter")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def count_delivery(metrics: HubMetrics, subscription: str, outcome: str) -> None:
    metrics.delivery_attempts.labels(subscriber=subscription).inc()
    if outcome == "failed":
        metrics.delivery_failures.labels(subscriber=subscription).inc()
    elif outcome == "dead":
        metrics.delivery_failures.labels(subscriber=subscription).inc()
        metrics.dead_letters.labels(subscriber=subscription).inc()


async def end_streams(app: web.Application) -> None:
    if (found := app.get(ALERTING)) is not None:
        found.queue.end_streams()


def alert_fixed_objects(settings: Settings) -> list[dict[str, Any]]:
    """The alerts collection holds the hub's identity and the alert extension's definition."""
    bundle = orjson.loads((SCHEMA_DIR / "alert-extension-definition.json").read_bytes())
    return [HubIdentity(settings.hub.identity_name).stix(), *bundle["objects"]]


async def start_site(app: web.Application, host: str, port: int, *,
                     ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    server = site._server  # the bound port, for port 0
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, bound


async def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then drain: cancel the background tasks and close the databases."""
    tls = listener_context(settings)  # before anything starts: an unreadable certificate is a config error
    runner, port = await start_site(build_app(settings), settings.hub.host, settings.hub.port, ssl_context=tls)
    # What startup built (config, members, schemas, warninglists: most of the heap) lives as long as the process.
    # Frozen, the cyclic collector no longer walks it in every full collection: those took ~125 ms of the event
    # loop each, every few alerts, and an alert's fan-out that one landed in was late by as much (issue #5).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    print(f"exchange hub listening on {'https' if tls else 'http'}://{settings.hub.host}:{port}/taxii2/ "
          f"(data in {settings.hub.data_dir})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()
