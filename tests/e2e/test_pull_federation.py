"""Pull federation (#4): a hub pulls from a real medallion and from another hub, incrementally and
exactly once across a restart; pulled objects become claims of the peer's country."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from taxii2client.v21 import Collection

from exchange.dedup.merge import PROVENANCE_EXTENSION
from scripts.medallion_peer import run_medallion
from tests.hubs import INBOX, Hub, free_port, kill_hard, start_process_hub
from tests.peering import (
    PEER_PASSWORD,
    canonical_objects,
    config_hub,
    health,
    hub_config,
    indicators,
    journal_object_ids,
    peer_account,
    peer_block,
    post_all,
    puller_config,
    stored_count,
    wait_for,
)

ENV = {"HUB_A_PASSWORD": PEER_PASSWORD, "MEDALLION_PASSWORD": "bench-password"}


@pytest.fixture
def hub_a(tmp_path: Path) -> Iterator[Hub]:
    """The peer hub: B logs in to it as `hub-b`, which may read its inbox."""
    with config_hub(hub_config(tmp_path / "a", peer_account("hub-b", can_read=("inbox",)))) as hub:
        yield hub


def test_a_hub_pulls_from_another_hub_incrementally_and_exactly_once_across_a_restart(
        hub_a: Hub, tmp_path: Path) -> None:
    post_all(hub_a, indicators(0, 300))
    config = puller_config(tmp_path / "b", hub_a, page_size=25)
    with config_hub(config, env=ENV) as b:
        wait_for(lambda: stored_count(b.data_dir, INBOX) == 300, what="the first 300 objects in B's inbox")
        post_all(hub_a, indicators(300, 40))  # incremental: arrives on a later poll
        wait_for(lambda: stored_count(b.data_dir, INBOX) == 340, what="the 40 later objects in B's inbox")
        state = health(b)[f"hub-a/{INBOX}"]
        assert (state.state.value, state.objects_pulled, state.error_count) == ("ok", 340, 0)
        assert state.cursor is not None and state.lag is not None and state.lag < 30

        post_all(hub_a, indicators(340, 2000))
        # Stop B in the middle of the catch-up: 2,000 objects are 80 pages of 25.
        wait_for(lambda: health(b)[f"hub-a/{INBOX}"].objects_pulled >= 440, what="B part-way through")
    pulled_before_restart = len(journal_object_ids(b.data_dir, "peer:hub-a"))
    assert 440 <= pulled_before_restart < 2340, "the restart did not happen mid-way"

    with config_hub(config, env=ENV) as b:
        wait_for(lambda: stored_count(b.data_dir, INBOX) == 2340, within=30, what="all 2,340 objects in B")
        b.call(lambda s: s.processor.wait_idle())
        ids = journal_object_ids(b.data_dir, "peer:hub-a")
        assert len(ids) == len(set(ids)) == 2340  # nothing lost, nothing journaled twice
        assert health(b)[f"hub-a/{INBOX}"].objects_pulled == 2340
        merged = canonical_objects(b)
    assert len(merged) >= 340  # canonical indicators of B (first page)
    prov = merged[0]["extensions"][PROVENANCE_EXTENSION]
    assert prov["countries"] == ["DE"]
    assert {c["source"] for c in prov["claims"]} == {"peer:hub-a"}


@pytest.mark.slow
def test_killing_a_pulling_hub_mid_sync_loses_and_duplicates_nothing(hub_a: Hub, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL, not a clean stop: the cursor is only ever as far as the last committed page."""
    total = 4000
    post_all(hub_a, indicators(0, total))
    config = puller_config(tmp_path / "b", hub_a, page_size=25)
    data_dir = tmp_path / "b" / "data"
    monkeypatch.setenv("HUB_A_PASSWORD", PEER_PASSWORD)  # the subprocess hub reads its secret from its environment
    proc = start_process_hub(config, data_dir, free_port())
    try:
        wait_for(lambda: data_dir.joinpath("journal.db").exists() and
                 len(journal_object_ids(data_dir, "peer:hub-a")) >= 500, what="B part-way through")
    finally:
        kill_hard(proc)
    assert len(journal_object_ids(data_dir, "peer:hub-a")) < total, "the kill did not happen mid-way"
    proc = start_process_hub(config, data_dir, free_port())
    try:
        wait_for(lambda: stored_count(data_dir, INBOX) == total, within=30, what="everything in B after the kill")
    finally:
        proc.terminate()
        proc.wait(30)
    ids = journal_object_ids(data_dir, "peer:hub-a")
    assert len(ids) == len(set(ids)) == total


def test_new_versions_of_pulled_objects_arrive(hub_a: Hub, tmp_path: Path) -> None:
    first = indicators(0, 3)
    post_all(hub_a, first)
    with config_hub(puller_config(tmp_path / "b", hub_a), env=ENV) as b:
        wait_for(lambda: stored_count(b.data_dir, INBOX) == 3, what="three objects in B")
        newer = [{**o, "modified": "2026-02-01T00:00:00.000Z", "confidence": 90} for o in first[:1]]
        post_all(hub_a, newer)
        wait_for(lambda: stored_count(b.data_dir, INBOX) == 4, what="the new version in B")


def test_pull_from_medallion(tmp_path: Path) -> None:
    objects = indicators(0, 250, tag="m")
    with run_medallion(tmp_path) as medallion:
        collection = Collection(medallion.collection_url, user=medallion.user, password=medallion.password)
        for i in range(0, len(objects), 100):  # three POSTs: each gives its objects one date_added
            status = collection.add_objects({"objects": objects[i:i + 100]})
            assert status.success_count == len(objects[i:i + 100])
        config = hub_config(tmp_path / "hub", peer_block(
            id="medallion", name="Reference CERT", country="NL", api_root=medallion.api_root_url,
            pull=[medallion.collection_id], auth={"username": medallion.user, "password_env": "MEDALLION_PASSWORD"},
            poll_interval=0.2, page_size=40, timeout=10))
        with config_hub(config, env=ENV) as hub:
            wait_for(lambda: stored_count(hub.data_dir, INBOX) == 250, what="medallion's 250 objects in the inbox")
            hub.call(lambda s: s.processor.wait_idle())
            merged = wait_for(lambda: len(canonical_objects(hub)) == 250 and canonical_objects(hub),
                              what="250 canonical indicators")
            later = indicators(250, 5, tag="m")
            collection.add_objects({"objects": later})
            wait_for(lambda: stored_count(hub.data_dir, INBOX) == 255, what="medallion's later objects")
            state = health(hub)[f"medallion/{medallion.collection_id}"]
            assert (state.state.value, state.objects_pulled, state.country) == ("ok", 255, "NL")
    ids = journal_object_ids(hub.data_dir, "peer:medallion")
    assert len(ids) == len(set(ids)) == 255
    for obj in merged:
        prov = obj["extensions"][PROVENANCE_EXTENSION]
        assert prov["countries"] == ["NL"] and prov["claims"][0]["source"] == "peer:medallion"
