"""Fan-out: subscriptions, per-member TLP views, the durable delivery queue, signed webhooks and SSE."""

from exchange.fanout.publish import publish
from exchange.fanout.queue import DeliveryQueue, QueueLimits, StreamPosition
from exchange.fanout.queue_sql import BACKLOG_CAP_REASON
from exchange.fanout.records import (
    Channel,
    ChannelKind,
    Delivery,
    DeliveryState,
    Filters,
    Member,
    Notice,
    Outgoing,
    QueueStats,
    SseChannel,
    Subscription,
    TaxiiChannel,
    WebhookChannel,
)
from exchange.fanout.signing import (
    EVENT_ID_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    idempotency_key,
    sign,
    verify,
)
from exchange.fanout.sse import SseOptions, stream_alerts
from exchange.fanout.subscriptions import matches, plan, taxii_view, view_for
from exchange.fanout.webhooks import RetryPolicy, WebhookDispatcher

__all__ = [
    "BACKLOG_CAP_REASON",
    "EVENT_ID_HEADER",
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "Channel",
    "ChannelKind",
    "Delivery",
    "DeliveryQueue",
    "DeliveryState",
    "Filters",
    "Member",
    "Notice",
    "Outgoing",
    "QueueLimits",
    "QueueStats",
    "RetryPolicy",
    "SseChannel",
    "SseOptions",
    "StreamPosition",
    "Subscription",
    "TaxiiChannel",
    "WebhookChannel",
    "WebhookDispatcher",
    "idempotency_key",
    "matches",
    "plan",
    "publish",
    "sign",
    "stream_alerts",
    "taxii_view",
    "verify",
    "view_for",
]
