"""/metrics, /healthz and /readyz, wired into the hub app (observability).

They sit outside TAXII: no TAXII account, no Accept negotiation. /healthz and /readyz say nothing an
outsider could use; /metrics names accounts and peers, so it can require a bearer token whose hash is
`hub.metrics_token_hash` (made with `exchange account new-token`, like an account token).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from exchange.config import Settings
from exchange.ingest.peers import peer_health
from exchange.model.timestamps import now_micros
from exchange.observe.health import ReadinessCheck
from exchange.observe.metrics import METRICS, HubMetrics, metrics_middleware, new_metrics
from exchange.policy.credentials import verify_token
from exchange.store.base import StatusRecord
from exchange.taxii.context import SERVICES
from exchange.taxii.server import add_public_routes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Observer:
    """What the app and the processor feed: the metrics and the readiness check's progress mark."""

    metrics: HubMetrics
    readiness: ReadinessCheck
    token_hash: str | None

    def committed(self, statuses: Sequence[StatusRecord]) -> None:
        """The processor's on_commit hook: count outcomes, note progress, log per-object events.

        Never raises: a metrics bug must not make the processor retry a committed batch."""
        try:
            self.readiness.progress()
            self.metrics.record_statuses(statuses)
            _log_objects(statuses)
        except Exception:
            log.exception("recording processed statuses failed")


OBSERVER = web.AppKey("observer", Observer)


def _log_objects(statuses: Sequence[StatusRecord]) -> None:
    """Rejections at info, every object at debug: with the status id and source they follow an object
    from the POST (or the peer page) to its outcome."""
    debug = log.isEnabledFor(logging.DEBUG)
    for status in statuses:
        for result in status.results:
            failed = not result.outcome.succeeded
            if failed or debug:
                log.log(logging.INFO if failed else logging.DEBUG, "object %s", result.outcome.value,
                        extra={"status_id": status.id, "source": status.account, "object_id": result.id,
                               "version": result.version, "outcome": result.outcome.value,
                               **({"detail": result.message} if result.message else {})})


def _authorized(header: str | None, token_hash: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and verify_token(token.strip(), token_hash)


async def get_metrics(request: web.Request) -> web.Response:
    observer = request.app[OBSERVER]
    if observer.token_hash is not None and not _authorized(request.headers.get("Authorization"),
                                                           observer.token_hash):
        return web.json_response({"error": "send 'Authorization: Bearer <metrics token>'"}, status=401,
                                 headers={"WWW-Authenticate": 'Bearer realm="exchange metrics"'})
    await _read_gauges(request.app, observer.metrics)
    return web.Response(body=generate_latest(observer.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _read_gauges(app: web.Application, metrics: HubMetrics) -> None:
    """Journal backlog and peer lag are read at scrape time: the journal is their one source of truth."""
    svc = app.get(SERVICES)
    if svc is None:
        return
    try:
        now = now_micros()
        backlog = await svc.journal.backlog()
        oldest = await svc.journal.oldest_unprocessed()
        rows = await svc.journal.peer_sync()
    except Exception as exc:  # a scrape still shows the counters when the journal cannot be read
        log.warning("metrics: reading the journal failed: %s", exc)
        return
    metrics.journal_backlog.set(backlog)
    metrics.journal_oldest_age.set(max(0.0, (now - oldest) / 1e6) if oldest is not None else 0.0)
    metrics.record_peers(peer_health(svc.settings.peers, rows, now))


async def get_healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def get_readyz(request: web.Request) -> web.Response:
    svc = request.app.get(SERVICES)
    if svc is None:
        return web.json_response({"ready": False, "checks": {"startup": "not started"}}, status=503)
    verdict = await request.app[OBSERVER].readiness.check(svc.store, svc.journal, svc.journal)
    return web.json_response(verdict.payload(), status=200 if verdict.ready else 503)


def add_observe_routes(app: web.Application, settings: Settings) -> Observer:
    """Metrics, health and readiness for the hub app; returns the observer the processor reports to."""
    sources = [a.username for a in settings.accounts] + [p.account for p in settings.peers]
    metrics = new_metrics(sources=sources, accounts=[a.username for a in settings.accounts])
    observer = Observer(metrics=metrics, readiness=ReadinessCheck(stall=settings.hub.journal_stall),
                        token_hash=settings.hub.metrics_token_hash)
    app[METRICS] = metrics
    app[OBSERVER] = observer
    app.middlewares.insert(0, metrics_middleware)  # outermost: times every answer, TAXII errors included
    add_public_routes(app, [web.get("/metrics", get_metrics), web.get("/healthz", get_healthz),
                            web.get("/readyz", get_readyz)])
    return observer

