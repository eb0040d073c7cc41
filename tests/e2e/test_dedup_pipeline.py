"""End to end (issue #3): peers' spellings of one indicator become one canonical indicator on a real hub.

Real hubs on 127.0.0.1 (tests.hubs), taxii2-client and requests with timeouts; statuses are polled, never slept on.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import stix2.v21
from requests.adapters import HTTPAdapter
from stix2patterns.exceptions import ParseException
from stix2patterns.v21.pattern import Pattern
from taxii2client.v21 import Collection, Status

from exchange.normalize.ids import indicator_id
from exchange.normalize.patterns import canonical_pattern
from exchange.policy.tlp import Tlp
from exchange.store.base import Outcome, StatusRecord
from tests.dedup.test_merge import TLP2, assert_canonical_valid, provenance
from tests.hubs import CANONICAL, INBOX, PASSWORDS, Hub, thread_hub

TIMEOUT = 10  # seconds, for every HTTP request
TAXII = "application/taxii+json;version=2.1"
DOMAIN = "[domain-name:value = 'evil.example']"
IP = "[ipv4-addr:value = '198.51.100.7']"
DOMAIN_ID = indicator_id(canonical_pattern(DOMAIN))
IP_ID = "indicator--0260db04-20f0-5e5e-bf04-4bed962023dc"  # golden, as in tests/normalize/test_ids.py
RED_IDS = {"TLP 1.0 RED": stix2.v21.TLP_RED.id, "TLP 2.0 RED": TLP2[Tlp.RED]}


class _Timeout(HTTPAdapter):
    """taxii2-client passes no timeout to requests; this gives each of its calls one."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = TIMEOUT
        return super().send(request, **kwargs)


def collection(hub: Hub, account: str = "alice", collection_id: str = INBOX) -> Collection:
    coll = Collection(hub.collection_url(collection_id), auth=(account, PASSWORDS[account]))
    coll._conn.session.mount("http://", _Timeout())
    return coll


def post(hub: Hub, account: str, *objects: dict[str, Any]) -> Status:
    status = collection(hub, account).add_objects({"objects": list(objects)}, wait_for_completion=True,
                                                  poll_interval=0.02, timeout=30)
    assert status.status == "complete", status
    return status


def outcomes(hub: Hub, status: Status) -> dict[str, Outcome]:
    """The per-object outcome the hub recorded for a status (TAXII itself only carries the message)."""
    record: StatusRecord = hub.call(lambda services: services.store.get_status(status.id))
    return {r.id: r.outcome for r in record.results}


def messages(status: Status) -> dict[str, str]:
    return {s["id"]: s["message"] for s in status.successes}


def canonical_objects(hub: Hub, **filters: str) -> list[dict[str, Any]]:
    envelope = collection(hub, "alice", CANONICAL).get_objects(**filters)
    assert not envelope.get("more")
    objects: list[dict[str, Any]] = envelope.get("objects", [])
    return objects


def canonical_indicators(hub: Hub) -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in canonical_objects(hub) if o["type"] == "indicator"}


def versions(hub: Hub, object_id: str) -> list[str]:
    found: list[str] = collection(hub, "alice", CANONICAL).object_versions(object_id).get("versions", [])
    return found


def get_raw(hub: Hub, collection_id: str, object_id: str) -> requests.Response:
    return requests.get(f"{hub.collection_url(collection_id)}objects/{object_id}/", headers={"Accept": TAXII},
                        auth=("alice", PASSWORDS["alice"]), timeout=TIMEOUT)


def stamp(seconds: int) -> str:
    minutes, second = divmod(seconds, 60)
    return f"2024-01-01T00:{minutes:02d}:{second:02d}.000Z"


def indicator(producer: int, pattern: str, *, modified: int = 10, spec_version: str = "2.1",
              **props: Any) -> dict[str, Any]:
    """Producer object number `producer`; a larger `modified` (seconds) makes a later version of it."""
    obj: dict[str, Any] = {"type": "indicator", "spec_version": spec_version,
                           "id": f"indicator--{producer:08x}-0000-4000-8000-000000000000",
                           "created": stamp(0), "modified": stamp(modified), "pattern": pattern,
                           "valid_from": stamp(0)}
    if spec_version == "2.0":
        obj["labels"] = ["malicious-activity"]  # required in 2.0, where it meant what indicator_types means in 2.1
    else:
        obj["pattern_type"] = "stix"
    obj.update(props)
    return obj


def sighting(producer: int, of: str, count: int) -> dict[str, Any]:
    return {"type": "sighting", "spec_version": "2.1", "id": f"sighting--{producer:08x}-0000-4000-8000-000000000000",
            "created": stamp(20), "modified": stamp(20), "sighting_of_ref": of, "count": count}


# One indicator value each, spelled differently by two peers (alice FR, trust 1.0; writer PL, trust 0.5).
A_DOMAIN = indicator(0xA1, "[domain-name:value = 'evil.example']", confidence=80)
A_IP = indicator(0xA2, "[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = "
                       "'198.51.100.7']")  # what misp-stix makes of a MISP ip-dst
W_DOMAIN = indicator(0xB1, "[domain-name:value='EVIL.Example.']", confidence=60)
W_DOMAIN_20 = indicator(0xB2, "  [ domain-name:'value'   =   'Evil.EXAMPLE' ]  ", spec_version="2.0")
W_IP = indicator(0xB3, "[ipv4-addr:value = '198.51.100.7']")


def feed_spellings(hub: Hub) -> tuple[Status, Status]:
    return post(hub, "alice", A_DOMAIN, A_IP), post(hub, "writer", W_DOMAIN, W_DOMAIN_20, W_IP)


@pytest.fixture
def other_hub(tmp_path: Path) -> Iterator[Hub]:
    directory = tmp_path / "other-hub"
    directory.mkdir()
    with thread_hub(directory) as running:
        yield running


def test_spellings_from_two_countries_become_one_canonical_indicator(hub: Hub) -> None:
    feed_spellings(hub)
    found = canonical_indicators(hub)
    assert indicator_id(IP) == IP_ID
    assert set(found) == {DOMAIN_ID, IP_ID}
    domain, ip = found[DOMAIN_ID], found[IP_ID]
    assert (domain["pattern"], ip["pattern"]) == (DOMAIN, IP)
    assert {c["original_id"] for c in provenance(domain)["claims"]} == {A_DOMAIN["id"], W_DOMAIN["id"],
                                                                        W_DOMAIN_20["id"]}
    assert {c["original_id"] for c in provenance(ip)["claims"]} == {A_IP["id"], W_IP["id"]}
    for merged in (domain, ip):
        assert provenance(merged)["countries"] == ["FR", "PL"]
        assert provenance(merged)["source_count"] == 2
        assert len(provenance(merged)["claims"]) == len({c["original_id"] for c in provenance(merged)["claims"]})
    assert domain["confidence"] == 86  # 1 - (1 - 0.8) * (1 - 0.5 * 0.6)
    assert domain["indicator_types"] == ["malicious-activity"]  # the 2.0 copy's labels, upgraded
    roles = {c["original_id"]: c.get("role") for c in provenance(ip)["claims"]}
    assert roles == {A_IP["id"]: "dst", W_IP["id"]: None}


def test_status_says_stored_first_then_merged(hub: Hub) -> None:
    first, later = feed_spellings(hub)
    assert outcomes(hub, first) == {A_DOMAIN["id"]: Outcome.STORED, A_IP["id"]: Outcome.STORED}
    assert outcomes(hub, later) == {W_DOMAIN["id"]: Outcome.MERGED, W_DOMAIN_20["id"]: Outcome.MERGED,
                                    W_IP["id"]: Outcome.MERGED}
    said = messages(first)
    assert DOMAIN_ID in said[A_DOMAIN["id"]] and IP_ID in said[A_IP["id"]]
    assert not any(m.startswith("merged") for m in said.values())
    said = messages(later)
    for producer_id, canonical_id in ((W_DOMAIN["id"], DOMAIN_ID), (W_DOMAIN_20["id"], DOMAIN_ID),
                                      (W_IP["id"], IP_ID)):
        assert said[producer_id].startswith("merged"), said
        assert canonical_id in said[producer_id]
    # Others are counted as live sources, and the sender's own other claims apart: writer's 2.0 copy of the
    # domain follows its 2.1 copy in the same envelope.
    assert said[W_DOMAIN["id"]].endswith("also claimed by 1 other source(s)")
    assert said[W_DOMAIN_20["id"]].endswith("also claimed by 1 other source(s); 1 other claim(s) of writer")
    assert (first.failure_count, later.failure_count) == (0, 0)


def test_verbatim_copies_stay_in_the_inbox_unchanged(hub: Hub) -> None:
    feed_spellings(hub)
    for sent in (A_DOMAIN, A_IP, W_DOMAIN, W_DOMAIN_20, W_IP):
        response = get_raw(hub, INBOX, sent["id"])
        assert response.status_code == 200
        assert response.json()["objects"] == [sent]
    assert not {A_DOMAIN["id"], W_DOMAIN["id"], W_DOMAIN_20["id"]} & {o["id"] for o in canonical_objects(hub)}


def test_a_newer_version_replaces_the_producers_claim(hub: Hub) -> None:
    post(hub, "alice", A_DOMAIN)
    post(hub, "writer", W_DOMAIN)
    before = versions(hub, DOMAIN_ID)
    assert canonical_indicators(hub)[DOMAIN_ID]["confidence"] == 86
    post(hub, "writer", {**W_DOMAIN, "modified": stamp(30), "confidence": 100})
    merged = canonical_indicators(hub)[DOMAIN_ID]
    assert merged["confidence"] == 90  # 1 - (1 - 0.8) * (1 - 0.5 * 1.0)
    writer_claims = [c for c in provenance(merged)["claims"] if c["source"] == "writer"]
    assert len(writer_claims) == 1  # replaced, not added
    assert writer_claims[0]["confidence"] == 100
    assert writer_claims[0]["original_modified"].startswith("2024-01-01T00:00:30")
    assert len(versions(hub, DOMAIN_ID)) == len(before) + 1


def test_an_exact_re_send_or_an_older_version_changes_nothing(hub: Hub) -> None:
    post(hub, "alice", A_DOMAIN)
    post(hub, "writer", W_DOMAIN)
    before, merged = versions(hub, DOMAIN_ID), canonical_indicators(hub)[DOMAIN_ID]
    again = post(hub, "writer", W_DOMAIN)
    assert outcomes(hub, again) == {W_DOMAIN["id"]: Outcome.DUPLICATE}
    assert again.success_count == 1
    older = post(hub, "writer", {**W_DOMAIN, "modified": stamp(5), "confidence": 5})
    assert older.success_count == 1
    assert versions(hub, DOMAIN_ID) == before
    assert canonical_indicators(hub)[DOMAIN_ID] == merged


def test_a_claim_that_moves_to_another_pattern_leaves_the_old_indicator(hub: Hub) -> None:
    post(hub, "alice", A_DOMAIN)
    post(hub, "alice", {**A_DOMAIN, "modified": stamp(30), "pattern": "[domain-name:value = 'other.example']"})
    old = canonical_indicators(hub)[DOMAIN_ID]
    assert provenance(old)["source_count"] == 0  # the only claim it had was replaced by the newer version
    assert old.get("revoked") is True  # no live claim left


def test_revocation_retracts_one_claim_and_revokes_when_none_is_left(hub: Hub) -> None:
    post(hub, "alice", A_DOMAIN)
    post(hub, "writer", W_DOMAIN)
    count = len(versions(hub, DOMAIN_ID))
    post(hub, "writer", {**W_DOMAIN, "modified": stamp(30), "revoked": True})
    merged = canonical_indicators(hub)[DOMAIN_ID]
    assert not merged.get("revoked", False)
    assert merged["confidence"] == 80  # alice's alone
    assert (provenance(merged)["source_count"], provenance(merged)["countries"]) == (1, ["FR"])
    assert [c.get("revoked") for c in provenance(merged)["claims"] if c["source"] == "writer"] == [True]
    assert len(versions(hub, DOMAIN_ID)) == count + 1
    post(hub, "alice", {**A_DOMAIN, "modified": stamp(40), "revoked": True})
    merged = canonical_indicators(hub)[DOMAIN_ID]
    assert merged["revoked"] is True
    assert provenance(merged)["source_count"] == 0
    assert len(versions(hub, DOMAIN_ID)) == count + 2
    assert_canonical_valid(merged)


@pytest.mark.parametrize("red", list(RED_IDS.values()), ids=list(RED_IDS))
def test_a_red_claim_changes_nothing_and_never_shows(hub: Hub, red: str) -> None:
    post(hub, "alice", A_DOMAIN)
    before, merged = versions(hub, DOMAIN_ID), canonical_indicators(hub)[DOMAIN_ID]
    secret = indicator(0xC1, "[domain-name:value = 'EVIL.example']", object_marking_refs=[red], confidence=100,
                       labels=["red-only-label"], valid_from="2023-01-01T00:00:00Z", name="secret operation")
    status = post(hub, "writer", secret)
    assert status.success_count == 1
    assert versions(hub, DOMAIN_ID) == before
    assert canonical_indicators(hub)[DOMAIN_ID] == merged
    everything = orjson.dumps(canonical_objects(hub, version="all")).decode()
    for trace in (secret["id"], "red-only-label", "secret operation", "TLP:RED", "2023-01-01", '"PL"'):
        assert trace not in everything


@pytest.mark.parametrize("red", list(RED_IDS.values()), ids=list(RED_IDS))
def test_a_red_only_indicator_never_reaches_the_canonical_collection(hub: Hub, red: str) -> None:
    pattern = "[domain-name:value = 'only-red.example']"
    secret = indicator(0xC2, pattern, object_marking_refs=[red], labels=["red-only-label"])
    post(hub, "writer", secret)
    post(hub, "alice", A_DOMAIN)  # something else goes through meanwhile, so the pipeline is known to have run
    assert set(canonical_indicators(hub)) == {DOMAIN_ID}
    assert get_raw(hub, CANONICAL, indicator_id(canonical_pattern(pattern))).status_code == 404
    everything = orjson.dumps(canonical_objects(hub, version="all")).decode()
    assert "only-red.example" not in everything and "red-only-label" not in everything
    assert get_raw(hub, INBOX, secret["id"]).json()["objects"] == [secret]  # kept verbatim where it was posted


def clear_then_red(hub: Hub) -> tuple[dict[str, Any], dict[str, Any]]:
    clear = indicator(0xD1, DOMAIN, object_marking_refs=[TLP2[Tlp.CLEAR]], confidence=60)
    red = indicator(0xD2, DOMAIN, object_marking_refs=[RED_IDS["TLP 2.0 RED"]], confidence=100)
    post(hub, "writer", clear)
    post(hub, "alice", red)
    return clear, red


def test_a_clear_claim_stays_shareable_next_to_a_red_one(hub: Hub) -> None:
    clear, red = clear_then_red(hub)
    merged = canonical_indicators(hub)[DOMAIN_ID]
    assert [c["original_id"] for c in provenance(merged)["claims"]] == [clear["id"]]
    assert merged["confidence"] == 30  # writer's 60 at trust 0.5; the RED 100 does not count
    assert provenance(merged)["countries"] == ["PL"]
    assert red["id"] not in orjson.dumps(canonical_objects(hub, version="all")).decode()


def test_a_clear_claim_keeps_its_clear_marking(hub: Hub) -> None:
    clear_then_red(hub)
    merged = canonical_indicators(hub)[DOMAIN_ID]
    assert [c["tlp"] for c in provenance(merged)["claims"]] == ["TLP:CLEAR"]
    assert merged["object_marking_refs"] == [TLP2[Tlp.CLEAR]]


def test_a_red_claim_that_comes_first_changes_nothing(hub: Hub, other_hub: Hub) -> None:
    earlier = {"created": "2023-06-01T00:00:00.000Z", "modified": "2023-06-01T00:00:00.000Z",
               "valid_from": "2023-06-01T00:00:00Z"}
    secret = {**indicator(0xC3, DOMAIN, object_marking_refs=[RED_IDS["TLP 2.0 RED"]]), **earlier}
    post(hub, "writer", secret)
    post(hub, "alice", A_DOMAIN)
    post(other_hub, "alice", A_DOMAIN)  # the same, without the RED claim
    assert canonical_indicators(hub)[DOMAIN_ID] == canonical_indicators(other_hub)[DOMAIN_ID]


def test_sightings_of_producers_own_ids_attach_to_the_canonical_indicator(hub: Hub) -> None:
    post(hub, "alice", A_DOMAIN)
    post(hub, "writer", W_DOMAIN)
    seen_by_writer = post(hub, "writer", sighting(0xE1, W_DOMAIN["id"], 3))
    seen_by_alice = post(hub, "alice", sighting(0xE2, A_DOMAIN["id"], 2))
    for status in (seen_by_writer, seen_by_alice):
        (message,) = messages(status).values()
        assert DOMAIN_ID in message
    sightings = provenance(canonical_indicators(hub)[DOMAIN_ID])["sightings"]
    assert (sightings["count"], sightings["sources"], sightings["countries"]) == (5, ["alice", "writer"],
                                                                                  ["FR", "PL"])


def test_a_sighting_that_comes_before_its_indicator_attaches_when_the_indicator_arrives(hub: Hub) -> None:
    early = post(hub, "writer", sighting(0xE3, W_DOMAIN["id"], 4))
    (message,) = messages(early).values()
    assert "no claim for yet" in message
    assert DOMAIN_ID not in canonical_indicators(hub)
    post(hub, "alice", A_DOMAIN)
    assert "sightings" not in provenance(canonical_indicators(hub)[DOMAIN_ID])  # alice's id was not sighted
    post(hub, "writer", W_DOMAIN)
    sightings = provenance(canonical_indicators(hub)[DOMAIN_ID])["sightings"]
    assert (sightings["count"], sightings["sources"]) == (4, ["writer"])


def test_two_hubs_fed_the_same_indicators_agree_on_ids(hub: Hub, other_hub: Hub) -> None:
    feed_spellings(hub)
    post(other_hub, "writer", W_IP, W_DOMAIN_20, W_DOMAIN)  # other order, other first claimant
    post(other_hub, "alice", A_IP, A_DOMAIN)
    mine, theirs = canonical_indicators(hub), canonical_indicators(other_hub)
    assert set(mine) == set(theirs) == {DOMAIN_ID, IP_ID}
    for canonical_id in mine:
        assert mine[canonical_id]["pattern"] == theirs[canonical_id]["pattern"]
        assert mine[canonical_id]["created_by_ref"] == theirs[canonical_id]["created_by_ref"]


def test_everything_in_the_canonical_collection_passes_the_validator(hub: Hub) -> None:
    feed_spellings(hub)
    post(hub, "writer", sighting(0xE1, W_IP["id"], 4), {**W_DOMAIN, "modified": stamp(30), "revoked": True},
         indicator(0xB4, "[url:value = 'HTTP://Evil.Example:80/a']", valid_until=stamp(600),
                   object_marking_refs=[stix2.v21.TLP_GREEN.id],
                   kill_chain_phases=[{"kill_chain_name": "mitre-attack", "phase_name": "command-and-control"}]))
    objects = canonical_objects(hub, version="all")
    assert {o["type"] for o in objects} == {"identity", "extension-definition", "indicator"}
    assert len([o for o in objects if o["type"] == "indicator"]) >= 4
    for obj in objects:
        assert_canonical_valid(obj)


def test_an_unparseable_pattern_is_rejected_with_the_parsers_message(hub: Hub) -> None:
    broken = "[domain-name:value = 'evil.example'"
    with pytest.raises(ParseException) as parser:
        Pattern(broken)
    bad = indicator(0xF1, broken)
    status = post(hub, "writer", bad, W_IP)
    assert (status.success_count, status.failure_count) == (1, 1)
    (failure,) = status.failures
    assert failure["id"] == bad["id"]
    assert str(parser.value) in failure["message"]
    assert get_raw(hub, INBOX, bad["id"]).status_code == 404
    assert get_raw(hub, INBOX, W_IP["id"]).status_code == 200
    assert set(canonical_indicators(hub)) == {IP_ID}


def test_indicators_that_are_not_valid_stix_or_dated_in_the_future_are_refused_alone(hub: Hub) -> None:
    no_created = indicator(70, "[domain-name:value = 'a.example']")
    del no_created["created"]
    ahead = {**indicator(71, "[domain-name:value = 'b.example']"), "modified": "2099-12-31T23:59:59.000Z"}
    backwards = indicator(72, "[domain-name:value = 'c.example']", valid_until=stamp(0))
    good = indicator(73, "[domain-name:value = 'd.example']")
    status = post(hub, "alice", no_created, ahead, backwards, good)
    failures = {f["id"]: f["message"] for f in status.failures}
    assert set(failures) == {no_created["id"], ahead["id"], backwards["id"]}
    assert failures[no_created["id"]].endswith("missing required property 'created'")
    assert "more than a day ahead of this hub's clock" in failures[ahead["id"]]
    assert failures[backwards["id"]].endswith("'valid_until' must be later than 'valid_from'")
    assert [o["pattern"] for o in canonical_indicators(hub).values()] == ["[domain-name:value = 'd.example']"]


def test_a_revoked_canonical_indicator_stays_revoked(hub: Hub) -> None:
    # STIX 2.1 section 3.6: no version may follow a revoked one, neither of the hub's object nor of a producer's.
    post(hub, "alice", A_DOMAIN)
    post(hub, "alice", {**A_DOMAIN, "modified": stamp(30), "revoked": True})
    revoked, count = canonical_indicators(hub)[DOMAIN_ID], len(versions(hub, DOMAIN_ID))
    assert revoked["revoked"] is True
    later = post(hub, "writer", W_DOMAIN)  # a live claim after the revocation: recorded, not published
    assert later.success_count == 1
    assert "was revoked and stays so (STIX 2.1 section 3.6)" in messages(later)[W_DOMAIN["id"]]
    assert len(versions(hub, DOMAIN_ID)) == count
    assert canonical_indicators(hub)[DOMAIN_ID] == revoked
    unrevoked = post(hub, "alice", {**A_DOMAIN, "modified": stamp(40)})
    assert [(f["id"], f["message"]) for f in unrevoked.failures] == [
        (A_DOMAIN["id"], "a version of this object is revoked: STIX 2.1 section 3.6 allows no later version")]
    assert len(versions(hub, DOMAIN_ID)) == count


def test_an_indicator_revoked_before_anyone_saw_it_is_not_published(hub: Hub) -> None:
    post(hub, "alice", {**A_DOMAIN, "revoked": True})
    assert DOMAIN_ID not in canonical_indicators(hub)  # a revoked-at-birth version would only block what follows
    post(hub, "writer", W_DOMAIN)
    live = canonical_indicators(hub)[DOMAIN_ID]
    assert not live.get("revoked") and len(versions(hub, DOMAIN_ID)) == 1
    assert provenance(live)["source_count"] == 1 and len(provenance(live)["claims"]) == 2
