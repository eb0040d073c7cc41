"""End to end (issue #3): each audience reads the merge of the claims it is entitled to, under the same ids.

A real hub with `hub.canonical_views = {amber = "canonical-amber"}`: the GREEN canonical collection is merged
from CLEAR and GREEN claims only, the AMBER view from everything up to AMBER; TAXII egress still filters every
object by its marking, so a GREEN member reading the AMBER view sees none of its AMBER-marked indicators.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from exchange.normalize.ids import indicator_id
from exchange.normalize.patterns import canonical_pattern
from exchange.policy.tlp import TLP2_IDS, Tlp
from tests.dedup.test_merge import assert_canonical_valid, provenance
from tests.e2e.test_dedup_pipeline import TAXII, TIMEOUT, indicator, post
from tests.hubs import CANONICAL, PASSWORDS, Hub, serve_in_thread, write_config

VIEW = "0b9ad6f4-7c0e-4d5e-9a55-3f1f4a0c0a11"
SHARED = "[domain-name:value = 'shared.example']"  # claimed GREEN by alice (FR) and AMBER by writer (PL)
AMBER_ONLY = "[ipv4-addr:value = '203.0.113.9']"  # claimed AMBER by writer only
SHARED_ID, AMBER_ONLY_ID = (indicator_id(canonical_pattern(p)) for p in (SHARED, AMBER_ONLY))
GREEN, AMBER = [TLP2_IDS[Tlp.GREEN]], [TLP2_IDS[Tlp.AMBER]]


def with_amber_view(directory: Path) -> Path:
    path = write_config(directory)
    text = path.read_text()
    text = text.replace('canonical_collection = "canonical"\n',
                        'canonical_collection = "canonical"\ncanonical_views = { amber = "canonical-amber" }\n')
    text = text.replace("[[accounts]]", f'[[api_roots.collections]]\nid = "{VIEW}"\nalias = "canonical-amber"\n'
                        'title = "Canonical indicators, AMBER audience"\n\n[[accounts]]', 1)
    text = text.replace('can_read = ["inbox", "alerts", "secret", "canonical"]',
                        'can_read = ["inbox", "alerts", "secret", "canonical", "canonical-amber"]')
    text = text.replace('can_read = ["inbox", "canonical", "alerts"]',
                        'can_read = ["inbox", "canonical", "canonical-amber", "alerts"]')
    path.write_text(text)
    return path


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with serve_in_thread(with_amber_view(tmp_path)) as running:
        yield running


def indicators(hub: Hub, collection_id: str, account: str) -> dict[str, dict[str, Any]]:
    response = requests.get(f"{hub.collection_url(collection_id)}objects/", headers={"Accept": TAXII},
                            auth=(account, PASSWORDS[account]), params={"match[type]": "indicator"}, timeout=TIMEOUT)
    response.raise_for_status()
    return {o["id"]: o for o in response.json().get("objects", [])}


def all_versions(hub: Hub, collection_id: str, object_id: str) -> list[str]:
    response = requests.get(f"{hub.collection_url(collection_id)}objects/{object_id}/versions/",
                            headers={"Accept": TAXII}, auth=("alice", PASSWORDS["alice"]), timeout=TIMEOUT)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    found: list[str] = response.json().get("versions", [])
    return found


def sources(obj: dict[str, Any]) -> set[str]:
    return {c["source"] for c in provenance(obj)["claims"]}


def feed(hub: Hub) -> None:
    post(hub, "alice", indicator(1, SHARED, object_marking_refs=GREEN, confidence=60))
    post(hub, "writer", indicator(2, SHARED, object_marking_refs=AMBER, confidence=80),
         indicator(3, AMBER_ONLY, object_marking_refs=AMBER))


def test_the_green_collection_never_shows_an_amber_claim(hub: Hub) -> None:
    feed(hub)
    green = indicators(hub, CANONICAL, "alice")
    assert set(green) == {SHARED_ID}
    shared = green[SHARED_ID]
    assert sources(shared) == {"alice"}
    assert shared["object_marking_refs"] == GREEN
    assert provenance(shared)["countries"] == ["FR"]


def test_the_amber_view_merges_every_claim_up_to_amber(hub: Hub) -> None:
    feed(hub)
    amber = indicators(hub, VIEW, "amberorg")
    assert set(amber) == {SHARED_ID, AMBER_ONLY_ID}
    shared = amber[SHARED_ID]
    assert sources(shared) == {"alice", "writer"}
    assert shared["object_marking_refs"] == AMBER
    assert provenance(shared)["countries"] == ["FR", "PL"]
    assert shared["confidence"] > indicators(hub, CANONICAL, "alice")[SHARED_ID]["confidence"]
    for obj in amber.values():
        assert_canonical_valid(obj)


def test_a_green_member_reading_the_amber_view_sees_no_amber_object(hub: Hub) -> None:
    feed(hub)
    assert indicators(hub, VIEW, "greenorg") == {}
    assert set(indicators(hub, CANONICAL, "greenorg")) == {SHARED_ID}


def test_an_id_and_modified_never_name_two_contents_across_views(hub: Hub) -> None:
    feed(hub)
    green, amber = all_versions(hub, CANONICAL, SHARED_ID), all_versions(hub, VIEW, SHARED_ID)
    assert green and amber
    assert not set(green) & set(amber)


def test_the_green_versions_do_not_tell_when_an_amber_claim_came(hub: Hub) -> None:
    # The AMBER claim comes first, modified later than anything GREEN: with one `modified` sequence for both
    # views, the GREEN versions would start after it, and show its time.
    post(hub, "writer", indicator(2, SHARED, modified=50, object_marking_refs=AMBER, confidence=80))
    post(hub, "alice", indicator(1, SHARED, modified=20, object_marking_refs=GREEN, confidence=60))
    assert all_versions(hub, CANONICAL, SHARED_ID) == ["2024-01-01T00:00:20.000000Z"]  # alice's modified alone
    amber = all_versions(hub, VIEW, SHARED_ID)
    assert amber[0].startswith("2024-01-01T00:00:50.00") and len(amber) == 2
    post(hub, "alice", indicator(1, SHARED, modified=30, object_marking_refs=GREEN, confidence=70))
    green = all_versions(hub, CANONICAL, SHARED_ID)
    assert green == ["2024-01-01T00:00:20.000000Z", "2024-01-01T00:00:30.000000Z"]
    # Each view keeps to its own microseconds within the millisecond: no id and modified is in both.
    amber = all_versions(hub, VIEW, SHARED_ID)
    assert {v[23:26] for v in green} == {"000"} and {v[23:26] for v in amber} == {f"{1 + Tlp.AMBER:03d}"}
    assert not set(green) & set(amber)


def test_an_amber_revocation_changes_only_the_amber_view(hub: Hub) -> None:
    feed(hub)
    green_before, amber_before = all_versions(hub, CANONICAL, SHARED_ID), all_versions(hub, VIEW, SHARED_ID)
    post(hub, "writer", indicator(2, SHARED, modified=30, object_marking_refs=AMBER, revoked=True))
    assert all_versions(hub, CANONICAL, SHARED_ID) == green_before
    amber_after = all_versions(hub, VIEW, SHARED_ID)
    assert len(amber_after) == len(amber_before) + 1
    latest = indicators(hub, VIEW, "amberorg")[SHARED_ID]
    assert "revoked" not in latest  # alice's GREEN claim is still live
    assert provenance(latest)["source_count"] == 1
    assert latest["object_marking_refs"] == AMBER  # the revoked claim still shows, to this audience only


def test_the_view_is_written_by_the_hub_only(hub: Hub) -> None:
    response = requests.post(f"{hub.collection_url(VIEW)}objects/", data=b'{"objects": []}',
                             headers={"Accept": TAXII, "Content-Type": TAXII},
                             auth=("alice", PASSWORDS["alice"]), timeout=TIMEOUT)
    assert response.status_code == 403
