"""Prometheus metrics (observability): definitions, the per-status counting, the request-latency middleware.

Every hub has its own CollectorRegistry (under the app key METRICS), never prometheus_client's global one:
tests and `exchange demo` run several hubs in one process. Label values come from the config (accounts,
peers, routes, outcomes), so the number of series is bounded by the operator, not by what peers send.
"""

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from exchange import __version__
from exchange.ingest.peers import PeerHealth
from exchange.store.base import Outcome, StatusRecord
from exchange.taxii.context import ACCOUNT_KEY, OBJECTS_SERVED_KEY

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Seconds; TAXII reads are milliseconds, big POSTs and first pages of large collections take seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True)
class HubMetrics:
    """The hub's metrics. Those the later stages own (alerts, deliveries) are defined here so the stages
    only increment them: `metrics.alerts.labels(level="high").inc()`."""

    registry: CollectorRegistry
    objects_in: Counter  # labels: source (account; pulled objects are "peer:<id>"), outcome
    rejects: Counter  # labels: source, reason (see reject_reason)
    objects_served: Counter  # labels: account
    requests: Histogram  # labels: route (the route pattern, never the raw path), method, status
    journal_backlog: Gauge  # read from the journal at scrape time
    journal_oldest_age: Gauge
    peer_lag: Gauge  # labels: peer, collection; read from the persisted peer rows at scrape time
    peer_state: Gauge  # labels: peer, collection, state; 1 for the current state
    alerts: Counter  # labels: level; incremented by the correlate stage
    delivery_attempts: Counter  # labels: subscriber; incremented by the fan-out stage
    delivery_failures: Counter  # labels: subscriber
    dead_letters: Counter  # labels: subscriber: deliveries given up after the last retry

    def record_statuses(self, statuses: Iterable[StatusRecord]) -> None:
        """Count the per-object outcomes of processed envelopes (called by the processor after each commit)."""
        for status in statuses:
            for result in status.results:
                self.objects_in.labels(status.account, result.outcome.value).inc()
                if not result.outcome.succeeded:
                    self.rejects.labels(status.account, reject_reason(result.outcome, result.message)).inc()

    def record_peers(self, health: Iterable[PeerHealth]) -> None:
        # Cleared first: a removed peer, or a state left behind, must not linger as a stale series.
        self.peer_lag.clear()
        self.peer_state.clear()
        for h in health:
            if h.lag is not None:
                self.peer_lag.labels(h.peer, h.collection).set(h.lag)
            self.peer_state.labels(h.peer, h.collection, h.state.value).set(1)


def new_metrics(*, sources: Iterable[str] = (), accounts: Iterable[str] = ()) -> HubMetrics:
    """Fresh metrics; the known sources and accounts start at 0 so rate() sees their first increment."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # memory, CPU, open files of this process
    Gauge("exchange_build_info", "The running version (always 1).", ["version"], registry=registry) \
        .labels(__version__).set(1)
    metrics = HubMetrics(
        registry=registry,
        objects_in=Counter("exchange_objects_in", "Objects processed from the journal, by source account "
                           "(pulled objects: peer:<id>) and outcome.", ["source", "outcome"], registry=registry),
        rejects=Counter("exchange_objects_rejected", "Objects rejected or in conflict, by source and reason class.",
                        ["source", "reason"], registry=registry),
        objects_served=Counter("exchange_objects_served", "Objects returned by TAXII object reads, by account.",
                               ["account"], registry=registry),
        requests=Histogram("exchange_http_request_duration_seconds", "HTTP request latency by route, method and "
                           "status.", ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=registry),
        journal_backlog=Gauge("exchange_journal_backlog", "Accepted envelopes not processed yet.", registry=registry),
        journal_oldest_age=Gauge("exchange_journal_oldest_unprocessed_seconds", "Age of the oldest unprocessed "
                                 "envelope (0 when the backlog is empty).", registry=registry),
        peer_lag=Gauge("exchange_peer_lag_seconds", "How stale our copy of a peer collection may be (see "
                       "`exchange peers`); absent until the first page.", ["peer", "collection"], registry=registry),
        peer_state=Gauge("exchange_peer_state", "Pull state of a peer collection (1 for the current state).",
                         ["peer", "collection", "state"], registry=registry),
        alerts=Counter("exchange_alerts", "Alerts raised or escalated, by level.", ["level"], registry=registry),
        delivery_attempts=Counter("exchange_delivery_attempts", "Delivery attempts to member subscribers.",
                                  ["subscriber"], registry=registry),
        delivery_failures=Counter("exchange_delivery_failures", "Failed delivery attempts (retried later).",
                                  ["subscriber"], registry=registry),
        dead_letters=Counter("exchange_delivery_dead_letters", "Deliveries given up after the last retry.",
                             ["subscriber"], registry=registry),
    )
    for source in sources:
        for outcome in Outcome:
            metrics.objects_in.labels(source, outcome.value)
    for account in accounts:
        metrics.objects_served.labels(account)
    return metrics


METRICS = web.AppKey("metrics", HubMetrics)

# Rejection messages are free text written for people; these coarse classes keep the label set small and
# stable. Checked in order, on the message without its "objects[i]: " prefix.
_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("envelope", re.compile(r"^bad envelope")),
    ("internal", re.compile(r"could not be checked")),
    ("spec_version", re.compile(r"spec_version")),
    ("structure", re.compile(r"not a JSON object|missing required property|'(id|type)'|invalid '(id|type)'")),
    ("pattern", re.compile(r"pattern", re.IGNORECASE)),
    ("value", re.compile(r"^\[|domain|URL|IPv|hash|e-mail|SCO|observable", re.IGNORECASE)),
    ("property", re.compile(r"^invalid '|must be|'[a-z_]+'")),
)
_INDEX_PREFIX = re.compile(r"^objects\[\d+\]: ")


def reject_reason(outcome: Outcome, message: str) -> str:
    """The reason class of a failed object: conflict, envelope, internal, spec_version, structure, pattern,
    value, property or other."""
    if outcome is Outcome.CONFLICT:
        return "conflict"
    text = _INDEX_PREFIX.sub("", message)
    return next((name for name, pattern in _REASONS if pattern.search(text)), "other")


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: times every answer, TAXII error bodies included, and counts objects served."""
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects and anything the error middleware let through
        status = exc.status
        raise
    except asyncio.CancelledError:  # the client went away (nginx's 499)
        status = 499
        raise
    finally:
        metrics = request.app[METRICS]
        metrics.requests.labels(route_label(request), request.method, str(status)) \
            .observe(time.perf_counter() - start)
        served = request.get(OBJECTS_SERVED_KEY)
        account = request.get(ACCOUNT_KEY)
        if served and account is not None:
            metrics.objects_served.labels(account.username).inc(served)
