"""Values on MISP warninglists are kept but flagged on the canonical indicator (issue #3, false positives)."""

from typing import Any

import requests
from taxii2client.v21 import Collection

from exchange.dedup.merge import PROVENANCE_EXTENSION
from tests.hubs import CANONICAL, PASSWORDS, Hub


def _indicator(n: int, pattern: str) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
            "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z", "pattern": pattern,
            "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z"}


def test_warninglisted_values_are_kept_and_flagged(hub: Hub) -> None:
    inbox = Collection(hub.collection_url(), user="alice", password=PASSWORDS["alice"])
    sent = [_indicator(1, "[ipv4-addr:value = '8.8.8.8']"), _indicator(2, "[ipv4-addr:value = '10.1.2.3']"),
            _indicator(3, "[file:hashes.MD5 = 'D41D8CD98F00B204E9800998ECF8427E']"),
            _indicator(4, "[domain-name:value = 'qz7-unlisted-c2.example-bad.net']")]
    status = inbox.add_objects({"objects": sent}, wait_for_completion=True, poll_interval=0.05, timeout=60)
    assert (status.success_count, status.failure_count) == (4, 0)
    objects = requests.get(hub.collection_url(CANONICAL) + "objects/", params={"match[type]": "indicator"},
                           auth=("alice", PASSWORDS["alice"]), timeout=10).json()["objects"]
    flags = {o["pattern"]: o["extensions"][PROVENANCE_EXTENSION].get("warninglists", []) for o in objects}
    assert len(flags) == 4  # flagged values are kept, not dropped
    assert any("DNS resolvers" in name for name in flags["[ipv4-addr:value = '8.8.8.8']"])
    assert any("1918" in name for name in flags["[ipv4-addr:value = '10.1.2.3']"])
    assert flags["[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']"]
    assert flags["[domain-name:value = 'qz7-unlisted-c2.example-bad.net']"] == []
