"""Webhook signatures and idempotency keys (fan-out stage, pure).

The scheme follows Stripe's (`t=<unix seconds>,v1=<hex>`): the MAC covers the timestamp and the raw body,
so a captured request cannot be replayed outside the tolerance window, and a receiver verifies the bytes it
got before parsing them. Several `v1=` values may appear (a future secret rotation signs with both keys);
one match is enough. docs/members.md carries a standalone copy of `verify` for members.
"""

import hashlib
import hmac
import uuid
from collections.abc import Mapping, Sequence
from functools import lru_cache

import orjson

from exchange.normalize.ids import uuid5_text

SIGNATURE_HEADER = "X-Exchange-Signature"
IDEMPOTENCY_HEADER = "X-Exchange-Idempotency-Key"
EVENT_ID_HEADER = "X-Exchange-Event-Id"  # the queue entry's id: for support tickets, not for deduplication
ATTEMPT_HEADER = "X-Exchange-Attempt"
SCHEME = "v1"
TOLERANCE = 300  # seconds either side of the receiver's clock: Stripe's default, generous for NTP-less hosts

# Fixed namespaces: keys and bundle ids must come out the same after a restart, on every hub of a federation.
_KEY_NAMESPACE = uuid.UUID("0b247786-6e6c-4d77-bb6a-d7e648f43c6e")
_BUNDLE_NAMESPACE = uuid.UUID("4e14e2ab-f72a-4faf-a318-b3ef2c34f25c")


def idempotency_key(subscription_id: str, alert_id: str, version: str) -> str:
    """Deterministic per (subscription, alert, version): every retry and replay of that delivery carries it.

    A JSON array as the name, not a joined string: no separator can make two triples collide.
    """
    name = orjson.dumps([subscription_id, alert_id, version]).decode()
    return uuid5_text(_KEY_NAMESPACE.bytes, name)  # = str(uuid.uuid5(...)), cheaper: one per subscription


def bundle_id(alert_id: str, version: str, object_ids: Sequence[str]) -> str:
    """The bundle's id follows from the alert version and the view (the ids of the objects a member may see),
    not from the subscription: every subscriber with the same view gets the same bytes, which the delivery
    queue stores once. It is covered by the signature, so a receiver may deduplicate on it (one alert version
    reaches one subscription with one view); the idempotency key stays per subscription.

    A JSON array as the name, as for the key: no separator can make two views collide.
    """
    name = orjson.dumps([alert_id, version, list(object_ids)]).decode()
    return f"bundle--{uuid5_text(_BUNDLE_NAMESPACE.bytes, name)}"


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    mac = _keyed(secret.encode() if isinstance(secret, str) else secret).copy()
    mac.update(b"%d." % timestamp)
    mac.update(body)
    return mac.hexdigest()


@lru_cache(maxsize=4096)
def _keyed(key: bytes) -> hmac.HMAC:
    """The HMAC state after the key: copied for each message, it halves the cost of a signature (the hub signs
    every request of every subscriber; the key schedule is the same each time)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def signature_header(secret: str | bytes, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},{SCHEME}={sign(secret, timestamp, body)}"


def delivery_headers(secret: str | bytes, body: bytes, *, timestamp: int, key: str, event_id: int,
                     attempt: int) -> dict[str, str]:
    return {
        SIGNATURE_HEADER: signature_header(secret, timestamp, body),
        IDEMPOTENCY_HEADER: key,
        EVENT_ID_HEADER: str(event_id),
        ATTEMPT_HEADER: str(attempt),
    }


def parse_signature(value: str) -> tuple[int, list[str]] | None:
    """(timestamp, v1 signatures) of a signature header; None when it has no timestamp or no v1."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        name, _, item = part.strip().partition("=")
        if name == "t" and item.isdigit():
            timestamp = int(item)
        elif name == SCHEME and item:
            signatures.append(item)
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify(secret: str | bytes, headers: Mapping[str, str], body: bytes, now: float,
           tolerance: int = TOLERANCE) -> bool:
    """True when `body` was signed with `secret` within `tolerance` seconds of `now` (unix seconds).

    `headers` may be any mapping; the header name is matched without regard to case (HTTP names are
    case-insensitive, plain dicts are not). The comparison is constant-time.
    """
    value = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)
    parsed = parse_signature(value) if isinstance(value, str) else None
    if parsed is None:
        return False
    timestamp, signatures = parsed
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).encode()
    # Bytes, not str: compare_digest refuses non-ASCII text, and a header may carry any. Every candidate is
    # compared, no early exit: the time taken says nothing about which one was close.
    found = False
    for candidate in signatures:
        found |= hmac.compare_digest(expected, candidate.encode())
    return found
