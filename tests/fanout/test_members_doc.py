"""docs/members.md stays true: its copyable verification recipe accepts the hub's signatures."""

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from exchange.fanout.signing import SIGNATURE_HEADER, delivery_headers

DOC = Path(__file__).resolve().parents[2] / "docs" / "members.md"
BODY = b'{"type":"bundle","id":"bundle--1","objects":[]}'


@pytest.fixture(scope="module")
def recipe() -> Callable[..., bool]:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    [code] = [b for b in blocks if "def verify_exchange_signature" in b]
    namespace: dict[str, object] = {}
    exec(code, namespace)
    return namespace["verify_exchange_signature"]  # type: ignore[return-value]


def signed(timestamp: int, body: bytes = BODY, secret: str = "member-secret") -> str:
    return delivery_headers(secret, body, timestamp=timestamp, key="k", event_id=1, attempt=1)[SIGNATURE_HEADER]


def test_the_documented_recipe_verifies_hub_signatures(recipe: Callable[..., bool]) -> None:
    now = int(time.time())
    assert recipe("member-secret", signed(now), BODY)
    assert recipe("member-secret", f"{signed(now)},v1={'0' * 64}", BODY)


def test_the_documented_recipe_rejects_tampering_and_old_requests(recipe: Callable[..., bool]) -> None:
    now = int(time.time())
    assert not recipe("member-secret", signed(now), BODY + b" ")
    assert not recipe("other-secret", signed(now), BODY)
    assert not recipe("member-secret", signed(now - 600), BODY)
    assert not recipe("member-secret", "", BODY)
    assert not recipe("member-secret", f"t={now},v1=caf\u00e9", BODY)
