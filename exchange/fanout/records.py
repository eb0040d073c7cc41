"""Fan-out records: what to deliver (Notice), to whom (Member, Subscription) and the queue's entries (Delivery).

The lead's wiring builds Notices from correlate's alerts and Members from the config; nothing here does I/O.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import msgspec

from exchange.policy.tlp import Tlp

DEFAULT_MAX_RETRY = 86_400.0  # seconds a webhook delivery is retried before it is dead-lettered: one day
DEFAULT_WEBHOOK_TIMEOUT = 10.0  # seconds per POST, body and answer included


@dataclass(frozen=True, slots=True)
class Notice:
    """One alert version to deliver: the alert's facets for filtering and its STIX bundle objects."""

    alert_id: str
    version: str  # the alert's `modified` (STIX timestamp): an escalation is a new version, delivered again
    level: int
    level_name: str
    tlp: Tlp  # of the alert object itself; each indicator in `objects` carries its own markings
    countries: tuple[str, ...] = ()  # ISO 3166-1 alpha-2
    families: tuple[str, ...] = ()  # malware family names, already normalized through aliases by correlate
    indicator_types: tuple[str, ...] = ()  # STIX indicator-type-ov values of the referenced indicators
    objects: tuple[dict[str, Any], ...] = ()  # the alert object and the canonical indicators it references


@dataclass(frozen=True, slots=True)
class Filters:
    """What a subscription wants. Dimensions combine with AND; values within one with OR; empty = any."""

    min_level: int = 0
    indicator_types: frozenset[str] = frozenset()
    families: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    SSE = "sse"
    TAXII = "taxii"


@dataclass(frozen=True, slots=True)
class WebhookChannel:
    url: str
    secret: str  # HMAC-SHA256 key shared with the member (the config names an environment variable)
    max_retry: float = DEFAULT_MAX_RETRY
    timeout: float = DEFAULT_WEBHOOK_TIMEOUT
    kind: ChannelKind = field(default=ChannelKind.WEBHOOK, init=False)


@dataclass(frozen=True, slots=True)
class SseChannel:
    kind: ChannelKind = field(default=ChannelKind.SSE, init=False)


@dataclass(frozen=True, slots=True)
class TaxiiChannel:
    """Served by the lead's `alerts` collection; fan-out only decides what the member sees there."""

    kind: ChannelKind = field(default=ChannelKind.TAXII, init=False)


Channel = WebhookChannel | SseChannel | TaxiiChannel


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str  # unique across the hub: the delivery queue is keyed by it
    channel: Channel
    filters: Filters = Filters()


@dataclass(frozen=True, slots=True)
class Member:
    """A member organization (a constituent of the hub's CERT)."""

    name: str
    account: str  # the username it authenticates with
    country: str
    max_tlp: Tlp  # entitlement: the most restrictive TLP it may ever receive
    sectors: tuple[str, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()


# Outgoing and Delivery are made a thousand at a time on an alert's path (one per subscriber) and hold only
# strings, numbers and bytes: msgspec structs, ~5x cheaper to build than frozen dataclasses, and untracked by
# the cyclic GC (gc=False), whose collections they would otherwise set off while the fan-out runs.
class Outgoing(msgspec.Struct, frozen=True, gc=False):
    """One member's view of one alert version, ready for one subscription's queue."""

    subscription_id: str
    channel: ChannelKind
    alert_id: str
    version: str  # normalized STIX timestamp
    idempotency_key: str
    body: bytes  # the JSON bundle, byte-for-byte what every attempt sends


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"  # webhook: a 2xx; SSE: the client resumed past it (Last-Event-ID)
    DEAD = "dead"  # retries exhausted or evicted by the backlog cap; replayable


class Delivery(msgspec.Struct, frozen=True, gc=False):
    """An entry of a subscription's queue."""

    id: int  # stable across replays: the operator's handle and the X-Exchange-Event-Id header
    subscription_id: str
    seq: int  # per-subscription order and the SSE event id; a replay gives the entry a new one
    channel: ChannelKind
    alert_id: str
    version: str
    idempotency_key: str
    body: bytes
    state: DeliveryState
    attempts: int
    created_at: int  # micros: first enqueued
    queued_at: int  # micros: enqueued or last replayed; the retry budget counts from here
    next_attempt_at: int  # micros
    last_error: str | None
    settled_at: int | None  # micros: delivered or dead


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One subscription's queue, for the operator's view."""

    subscription_id: str
    pending: int
    delivered: int
    dead: int
    last_seq: int
    oldest_pending_at: int | None  # micros
