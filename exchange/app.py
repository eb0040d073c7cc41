"""Wiring: build the aiohttp application from settings; each resource is one cleanup_ctx generator."""

import asyncio
import contextlib
import logging
import os
import random
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from exchange.audit.log import AuditLog
from exchange.config import SCHEMA_DIR, Settings
from exchange.dedup.claims import Source, Warn
from exchange.dedup.merge import HubIdentity
from exchange.ingest.journal import Journal
from exchange.ingest.peers import PeerHealth, peer_credentials, peer_health
from exchange.ingest.poller import Backlog, Poller, pull_targets, run_pollers
from exchange.ingest.processor import ClaimPolicy, Processor, run_processor
from exchange.model.timestamps import now_micros
from exchange.store.base import MergePolicy, Store
from exchange.taxii.auth import Authenticator
from exchange.taxii.client import Credentials, TaxiiClient
from exchange.taxii.context import SERVICES, Services
from exchange.taxii.cursor import CursorCodec, load_cursor_key
from exchange.taxii.server import add_taxii_routes

log = logging.getLogger(__name__)
BODY_SLACK = 64 * 1024  # aiohttp's cap sits above max_content_length so our own 413 message wins


def merge_policy(settings: Settings) -> MergePolicy | None:
    hub = settings.hub
    if hub.canonical_collection is None:
        return None
    return MergePolicy(collection_id=hub.canonical_collection, audience=hub.canonical_audience,
                       hub=HubIdentity(hub.identity_name))


def claim_policy(settings: Settings, warn: Warn | None) -> ClaimPolicy:
    sources = {name: Source(name=name, country=s.country, trust=s.trust) for name, s in settings.sources.items()}
    # Pulled pages are journaled under the peer's account: their claims carry the peer's country and trust.
    sources |= {p.account: Source(name=p.account, country=p.country, trust=p.trust) for p in settings.peers}
    return ClaimPolicy(sources=sources, default_tlp=settings.hub.default_tlp, warn=warn,
                       enabled=settings.hub.canonical_collection is not None)


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

    async def health(self) -> list[PeerHealth]:
        return peer_health(self.settings.peers, await self.journal.peer_sync(), now_micros())

    def poll_now(self) -> None:
        for poller in self.pollers:
            poller.poll_now()


PEERING = web.AppKey("peering", Peering)
PEER_CONNECTIONS_PER_HOST = 4  # one per pulled collection is typical; a hanging peer holds only its own


def build_app(settings: Settings, *, env: Mapping[str, str] | None = None,
              rng: random.Random | None = None) -> web.Application:
    """The hub. `env` holds the peers' secrets (default: the process environment); a missing one is a
    ConfigError here, before anything starts."""
    source = os.environ if env is None else env
    credentials = {p.id: peer_credentials(p, source) for p in settings.peers}
    app = web.Application(client_max_size=settings.hub.max_content_length + BODY_SLACK)

    async def hub_services(app: web.Application) -> AsyncIterator[None]:
        data_dir = settings.hub.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        store, journal, audit = open_store(settings), Journal(data_dir / "journal.db"), AuditLog(data_dir / "audit.db")
        async with contextlib.AsyncExitStack() as stack:
            for resource in (store, journal, audit):
                await resource.start()
                stack.push_async_callback(resource.close)
            if settings.hub.canonical_collection is not None:
                await store.install(settings.hub.canonical_collection, fixed_objects(settings))
            warn = await load_warninglists() if settings.hub.canonical_collection is not None else None
            processor = Processor(journal, store, audit, claim_policy(settings, warn))
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

    app.cleanup_ctx.append(hub_services)
    if any(p.pull for p in settings.peers):
        # After hub_services: cleanup runs in reverse, so pollers stop before the journal closes.
        app.cleanup_ctx.append(lambda app: peer_pollers(app, credentials, rng or random.Random()))
    add_taxii_routes(app)
    return app


async def peer_pollers(app: web.Application, credentials: Mapping[str, Credentials],
                       rng: random.Random) -> AsyncIterator[None]:
    """One poller task per (peer, collection) in a TaskGroup; cancelled and awaited on shutdown."""
    svc = app[SERVICES]
    settings = svc.settings
    root_of = {c.id: r.path for r in settings.api_roots for c in r.collections}
    backlog = Backlog(svc.journal, svc.processor.wait_idle)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=PEER_CONNECTIONS_PER_HOST)
    async with aiohttp.ClientSession(connector=connector) as session:
        pollers = tuple(
            Poller(target, TaxiiClient(session, credentials[target.peer.id], timeout=target.peer.timeout),
                   svc.journal, svc.audit, wake=svc.processor.wake, backlog=backlog, rng=rng)
            for target in pull_targets(settings.peers, root_of))
        app[PEERING] = Peering(settings=settings, journal=svc.journal, pollers=pollers)
        task = asyncio.create_task(run_pollers(list(pollers)), name="peer-pollers")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server  # the bound port, for port 0
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, bound


async def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then drain: cancel the background tasks and close the databases."""
    runner, port = await start_site(build_app(settings), settings.hub.host, settings.hub.port)
    print(f"exchange hub listening on http://{settings.hub.host}:{port}/taxii2/ "
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
