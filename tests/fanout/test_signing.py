"""Webhook signatures and idempotency keys: round trip, tampering, expiry, header handling."""

import hashlib
import hmac

import pytest

from exchange.fanout.signing import (
    EVENT_ID_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    bundle_id,
    delivery_headers,
    idempotency_key,
    parse_signature,
    sign,
    verify,
)

BODY = b'{"type":"bundle","id":"bundle--6f1c0e1e-7d71-5b6a-9a0e-3e0f6f0c1a2b","objects":[]}'
NOW = 1_772_400_000
SECRET = "whsec-member-secret"


def headers(timestamp: int = NOW, secret: str = SECRET, body: bytes = BODY) -> dict[str, str]:
    return delivery_headers(secret, body, timestamp=timestamp, key="k", event_id=7, attempt=1)


def test_round_trip() -> None:
    assert verify(SECRET, headers(), BODY, now=NOW)
    assert verify(SECRET.encode(), headers(), BODY, now=NOW + 299.5)


def test_the_mac_is_plain_hmac_sha256_over_timestamp_dot_body() -> None:
    # What docs/members.md tells members to compute, spelled out independently.
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers()[SIGNATURE_HEADER] == f"t={NOW},v1={expected}"
    assert sign(SECRET, NOW, BODY) == expected


@pytest.mark.parametrize("body", [BODY + b" ", BODY.replace(b"bundle--6", b"bundle--7"), b""])
def test_a_changed_body_is_rejected(body: bytes) -> None:
    assert not verify(SECRET, headers(), body, now=NOW)


def test_a_wrong_secret_is_rejected() -> None:
    assert not verify("another-secret", headers(), BODY, now=NOW)


def test_a_changed_timestamp_is_rejected() -> None:
    value = headers()[SIGNATURE_HEADER].replace(f"t={NOW}", f"t={NOW + 1}")
    assert not verify(SECRET, {SIGNATURE_HEADER: value}, BODY, now=NOW)


@pytest.mark.parametrize("now", [NOW + 301, NOW - 301, NOW + 86_400])
def test_outside_the_tolerance_is_rejected(now: int) -> None:
    assert not verify(SECRET, headers(), BODY, now=now)
    assert verify(SECRET, headers(), BODY, now=now, tolerance=86_401)


@pytest.mark.parametrize("value", ["", "t=abc,v1=00", f"t={NOW}", "v1=00", f"t={NOW},v1=", f"t={NOW},v1=zz\u00e9"])
def test_malformed_headers_are_rejected(value: str) -> None:
    assert not verify(SECRET, {SIGNATURE_HEADER: value}, BODY, now=NOW)


def test_missing_header_is_rejected() -> None:
    assert not verify(SECRET, {}, BODY, now=NOW)


def test_header_names_are_case_insensitive_and_several_signatures_are_accepted() -> None:
    good = sign(SECRET, NOW, BODY)
    value = f"t={NOW},v1={'0' * 64},v1={good}"  # e.g. signed with an old and a new secret during rotation
    assert verify(SECRET, {SIGNATURE_HEADER.lower(): value}, BODY, now=NOW)
    assert parse_signature(value) == (NOW, ["0" * 64, good])


def test_delivery_headers() -> None:
    sent = headers()
    assert sent[IDEMPOTENCY_HEADER] == "k"
    assert sent[EVENT_ID_HEADER] == "7"


def test_idempotency_key_is_deterministic_per_subscription_alert_and_version() -> None:
    key = idempotency_key("sub-1", "report--1", "2026-03-02T00:00:00.000000Z")
    assert key == idempotency_key("sub-1", "report--1", "2026-03-02T00:00:00.000000Z")
    others = {idempotency_key("sub-2", "report--1", "2026-03-02T00:00:00.000000Z"),
              idempotency_key("sub-1", "report--2", "2026-03-02T00:00:00.000000Z"),
              idempotency_key("sub-1", "report--1", "2026-03-03T00:00:00.000000Z"),
              idempotency_key("sub-1|report--1", "", "2026-03-02T00:00:00.000000Z")}
    assert key not in others and len(others) == 4


def test_bundle_id_names_the_alert_version_and_the_view_not_the_subscriber() -> None:
    bid = bundle_id("report--1", "2026-03-02T00:00:00.000000Z", ["report--1", "indicator--1"])
    assert bid.startswith("bundle--") and bid == bundle_id("report--1", "2026-03-02T00:00:00.000000Z",
                                                          ["report--1", "indicator--1"])
    others = {bundle_id("report--1", "2026-03-02T00:00:00.000000Z", ["report--1"]),
              bundle_id("report--1", "2026-03-03T00:00:00.000000Z", ["report--1", "indicator--1"]),
              bundle_id("report--2", "2026-03-02T00:00:00.000000Z", ["report--1", "indicator--1"])}
    assert bid not in others and len(others) == 3
