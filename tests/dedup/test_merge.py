"""Dedup stage: the canonical indicator merged from the claims an audience may see (pure, no hub).

Every merged body is checked with stix2-validator and its provenance extension against the shipped JSON Schema.
"""

import hashlib
import json
from collections.abc import Sequence
from functools import cache
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace
from stix2validator import ValidationOptions, validate_instance

from exchange.config import SCHEMA_DIR
from exchange.dedup.claims import Claim, SightingClaim, Source, claim_from_indicator, claim_from_sighting
from exchange.dedup.merge import (
    PROVENANCE_EXTENSION,
    HubIdentity,
    Merged,
    _finish,
    _many_claims,
    combined_confidence,
    merge,
)
from exchange.model.stix import read_record
from exchange.model.timestamps import format_timestamp, parse_timestamp
from exchange.normalize.ids import indicator_id
from exchange.normalize.patterns import canonical_pattern
from exchange.policy.tlp import Tlp, marking_id

HUB = HubIdentity("Test CERT")
ALICE = Source(name="alice", country="FR", trust=1.0)
WRITER = Source(name="writer", country="PL", trust=0.5)
CARL = Source(name="carl", country="DE", trust=1.0)
DOMAIN = "[domain-name:value = 'evil.example']"
CREATED = parse_timestamp("2024-01-01T00:00:00Z")
TLP2 = {
    Tlp.CLEAR: "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    Tlp.GREEN: "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    Tlp.AMBER: "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    Tlp.AMBER_STRICT: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    Tlp.RED: "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
TLP1_RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
TLP1_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"

# stix2-validator 3.2.0, strict (SHOULDs count as errors), with one check disabled: 103 uuid-check, which wants
# UUIDv4 ids on SDOs. A canonical indicator's id is UUIDv5 of its canonical pattern by design (issue #3 "Identity";
# DESIGN.md "Deterministic ids make hubs converge"), so that is the one check the hub cannot meet. The custom
# extension needs nothing disabled: its key is an extension-definition id, which 3.2.0 accepts in strict mode
# (401 fires only for x_ custom properties, which the hub does not write), and its body passes the schema checks.
VALIDATION = ValidationOptions(version="2.1", strict=True, disabled="103")


@cache
def provenance_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / "provenance.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def stix_errors(obj: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate_instance(obj, VALIDATION).errors]


def assert_canonical_valid(body: dict[str, Any]) -> None:
    """stix2-validator (strict, but for UUIDv5 ids) and, for indicators, the provenance JSON Schema."""
    assert stix_errors(body) == []
    if body["type"] == "indicator":
        provenance_validator().validate(body["extensions"][PROVENANCE_EXTENSION])


def indicator(n: int, pattern: str = DOMAIN, *, tlp: str | None = None, **props: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
        "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-02T00:00:00.000Z",
        "pattern": pattern, "pattern_type": "stix", "valid_from": "2024-01-01T00:00:00Z",
    }
    if tlp is not None:
        obj["object_marking_refs"] = [tlp]
    obj.update(props)
    return obj


def claim(source: Source, n: int, pattern: str = DOMAIN, *, tlp: Tlp | None = None, **props: Any) -> Claim:
    made = claim_from_indicator(indicator(n, pattern, tlp=TLP2[tlp] if tlp is not None else None, **props),
                                source, default_tlp=Tlp.GREEN)
    assert made is not None
    # The level is set outright as well: claim_from_indicator turns an explicit TLP:CLEAR marking into the default
    # (test_claims.py, CLEAR_IS_FALSY), and these tests are about merge, not about reading markings.
    return made if tlp is None else replace(made, tlp=tlp)


def merged(claims: Sequence[Claim], *, audience: Tlp = Tlp.GREEN, previous: int = 0,
           sightings: Sequence[SightingClaim] = ()) -> Merged:
    result = merge(claims, audience=audience, hub=HUB, created=CREATED, previous_modified=previous,
                   sightings=sightings)
    assert result is not None
    assert_canonical_valid(result.body)
    return result


def provenance(body: dict[str, Any]) -> dict[str, Any]:
    ext: dict[str, Any] = body["extensions"][PROVENANCE_EXTENSION]
    return ext


def ts(text: str) -> str:
    return format_timestamp(parse_timestamp(text))


def test_canonical_indicator_is_authored_by_the_hub_under_the_patterns_id() -> None:
    body = merged([claim(WRITER, 1, "[domain-name:value = 'EVIL.Example.']")]).body
    assert body["type"] == "indicator"
    assert body["spec_version"] == "2.1"
    assert body["id"] == indicator_id(canonical_pattern(DOMAIN))
    assert body["pattern"] == DOMAIN
    assert (body["pattern_type"], body["pattern_version"]) == ("stix", "2.1")
    assert body["created_by_ref"] == HUB.id == HubIdentity("Test CERT").id != HubIdentity("Other CERT").id
    assert body["created"] == format_timestamp(CREATED)


def test_earliest_valid_from() -> None:
    claims = [claim(ALICE, 1, valid_from="2024-03-01T00:00:00Z"), claim(WRITER, 2, valid_from="2023-06-01T12:00:00Z"),
              claim(CARL, 3, valid_from="2024-02-01T00:00:00Z")]
    assert merged(claims).body["valid_from"] == ts("2023-06-01T12:00:00Z")


def test_latest_valid_until_when_every_live_claim_has_one() -> None:
    bounded = [claim(ALICE, 1, valid_until="2025-01-01T00:00:00Z"),
               claim(WRITER, 2, valid_until="2026-01-01T00:00:00Z")]
    assert merged(bounded).body["valid_until"] == ts("2026-01-01T00:00:00Z")
    open_ended = [*bounded, claim(CARL, 3)]
    assert "valid_until" not in merged(open_ended).body  # one source says "no end": the merge has none
    # A revoked claim without an end does not keep the live ones from having one.
    revoked_open = [*bounded, claim(CARL, 3, revoked=True)]
    assert merged(revoked_open).body["valid_until"] == ts("2026-01-01T00:00:00Z")


def test_labels_types_and_kill_chain_are_united() -> None:
    claims = [
        claim(ALICE, 1, labels=["c2", "apt-x"], indicator_types=["malicious-activity"],
              kill_chain_phases=[{"kill_chain_name": "mitre-attack", "phase_name": "command-and-control"}]),
        claim(WRITER, 2, labels=["c2", "botnet"], indicator_types=["attribution", "malicious-activity"],
              kill_chain_phases=[{"kill_chain_name": "mitre-attack", "phase_name": "exfiltration"},
                                 {"kill_chain_name": "mitre-attack", "phase_name": "command-and-control"}]),
    ]
    body = merged(claims).body
    assert body["labels"] == ["apt-x", "botnet", "c2"]
    assert body["indicator_types"] == ["attribution", "malicious-activity"]
    assert body["kill_chain_phases"] == [{"kill_chain_name": "mitre-attack", "phase_name": "command-and-control"},
                                         {"kill_chain_name": "mitre-attack", "phase_name": "exfiltration"}]


def test_confidence_is_combined_with_trust_weights() -> None:
    claims = [claim(ALICE, 1, confidence=80), claim(WRITER, 2, confidence=60)]
    # 1 - (1 - 1.0 * 0.80) * (1 - 0.5 * 0.60) = 1 - 0.2 * 0.7 = 0.86
    assert combined_confidence(claims) == 86
    assert merged(claims).body["confidence"] == 86
    assert merged([claims[0]]).body["confidence"] == 80
    assert merged([claims[1]]).body["confidence"] == 30  # a half-trusted 60 weighs 30
    unsure = claim(CARL, 3)  # says nothing about confidence: neither raises nor lowers it
    assert merged([*claims, unsure]).body["confidence"] == 86
    assert "confidence" not in merged([unsure]).body
    retracted = claim(CARL, 4, confidence=100, revoked=True)  # a revoked claim no longer vouches
    assert merged([*claims, retracted]).body["confidence"] == 86


def test_a_source_counts_once_in_the_confidence_however_often_it_claims() -> None:
    # Re-posting a value under new ids is no new evidence: each source weighs with its strongest claim.
    alice = [claim(ALICE, n, confidence=30) for n in range(1, 7)]
    assert merged(alice).body["confidence"] == 30
    assert merged([*alice, claim(ALICE, 7, confidence=50)]).body["confidence"] == 50
    both = [*alice, claim(WRITER, 8, confidence=60), claim(WRITER, 9, confidence=20)]
    assert merged(both).body["confidence"] == 51  # 1 - (1 - 0.3) * (1 - 0.5 * 0.6)
    assert provenance(merged(both).body)["source_count"] == 2


@pytest.mark.parametrize(
    ("levels", "audience", "expected"),
    [
        ([Tlp.GREEN], Tlp.GREEN, Tlp.GREEN),
        ([Tlp.GREEN, Tlp.GREEN], Tlp.GREEN, Tlp.GREEN),
        ([Tlp.CLEAR, Tlp.GREEN], Tlp.GREEN, Tlp.GREEN),
        ([Tlp.CLEAR], Tlp.GREEN, Tlp.CLEAR),
        ([Tlp.CLEAR, Tlp.RED], Tlp.GREEN, Tlp.CLEAR),
        ([Tlp.GREEN, Tlp.AMBER], Tlp.AMBER, Tlp.AMBER),
        ([Tlp.GREEN, Tlp.AMBER, Tlp.RED], Tlp.AMBER_STRICT, Tlp.AMBER),
        ([Tlp.GREEN, Tlp.AMBER_STRICT], Tlp.RED, Tlp.AMBER_STRICT),
        ([Tlp.CLEAR, Tlp.RED], Tlp.RED, Tlp.RED),
    ],
)
def test_marking_is_the_strictest_visible_tlp(levels: list[Tlp], audience: Tlp, expected: Tlp) -> None:
    claims = [claim(Source(f"peer{i}", "DE"), i, tlp=level) for i, level in enumerate(levels)]
    assert merged(claims, audience=audience).body["object_marking_refs"] == [TLP2[expected]]


def test_tlp_1_0_input_is_marked_with_tlp_2_0_ids() -> None:
    green = claim_from_indicator(indicator(1, tlp=TLP1_GREEN), ALICE, default_tlp=Tlp.CLEAR)
    red = claim_from_indicator(indicator(2, tlp=TLP1_RED), WRITER, default_tlp=Tlp.CLEAR)
    assert green is not None and red is not None
    assert merged([green]).body["object_marking_refs"] == [TLP2[Tlp.GREEN]]
    assert merged([green, red], audience=Tlp.RED).body["object_marking_refs"] == [TLP2[Tlp.RED]]


def test_provenance_has_one_entry_per_visible_claim() -> None:
    claims = [
        claim(ALICE, 1, confidence=80, labels=["c2"], modified="2024-02-01T00:00:00.000Z"),
        claim(WRITER, 2, "[network-traffic:dst_ref.type = 'domain-name' AND network-traffic:dst_ref.value = "
                         "'evil.example']", tlp=Tlp.CLEAR, valid_until="2025-01-01T00:00:00Z"),
        claim(WRITER, 3, revoked=True),
        claim(CARL, 4, tlp=Tlp.AMBER),  # not for a GREEN audience
    ]
    entries = provenance(merged(claims).body)["claims"]
    # Claims made at this hub: it is their origin and the whole path so far.
    assert all(e.pop("origin") == HUB.id and e.pop("path") == [HUB.id] for e in entries)
    assert sorted(entries, key=lambda e: e["original_id"]) == [
        {"source": "alice", "country": "FR", "original_id": claims[0].producer_id,
         "original_modified": ts("2024-02-01T00:00:00Z"), "tlp": "TLP:GREEN", "confidence": 80,
         "valid_from": ts("2024-01-01T00:00:00Z"), "labels": ["c2"]},
        {"source": "writer", "country": "PL", "original_id": claims[1].producer_id,
         "original_modified": ts("2024-01-02T00:00:00Z"), "tlp": "TLP:CLEAR", "role": "dst",
         "valid_from": ts("2024-01-01T00:00:00Z"), "valid_until": ts("2025-01-01T00:00:00Z")},
        {"source": "writer", "country": "PL", "original_id": claims[2].producer_id,
         "original_modified": ts("2024-01-02T00:00:00Z"), "tlp": "TLP:GREEN",
         "valid_from": ts("2024-01-01T00:00:00Z"), "revoked": True},
    ]


def test_source_count_and_countries_are_of_live_claims() -> None:
    both = [claim(ALICE, 1), claim(ALICE, 2, "[domain-name:value = 'Evil.Example']"), claim(WRITER, 3)]
    ext = provenance(merged(both).body)
    assert (ext["source_count"], ext["countries"]) == (2, ["FR", "PL"])  # two claims of alice: one source
    writer_retracted = [*both[:2], claim(WRITER, 3, revoked=True, modified="2024-02-01T00:00:00.000Z")]
    ext = provenance(merged(writer_retracted).body)
    assert (ext["source_count"], ext["countries"]) == (1, ["FR"])
    assert len(ext["claims"]) == 3  # the retracted claim is still on record, marked revoked
    hidden = [*both, claim(CARL, 4, tlp=Tlp.RED)]
    ext = provenance(merged(hidden).body)
    assert (ext["source_count"], ext["countries"]) == (2, ["FR", "PL"])


def secret_claims() -> list[Claim]:
    """Claims that would change everything if they showed: earlier, longer, surer, other labels and country."""
    return [
        claim(CARL, 7, tlp=Tlp.RED, confidence=100, valid_from="2020-01-01T00:00:00Z", name="secret op",
              labels=["red-only"], indicator_types=["compromised"], modified="2030-01-01T00:00:00.000Z",
              kill_chain_phases=[{"kill_chain_name": "mitre-attack", "phase_name": "impact"}]),
        claim(Source("dan", "IT", 1.0), 8, "[domain-name:value = 'EVIL.EXAMPLE']", tlp=Tlp.AMBER, revoked=True),
        claim(Source("eve", "ES", 1.0), 9, tlp=Tlp.AMBER_STRICT, valid_until="2099-01-01T00:00:00Z"),
    ]


@pytest.mark.parametrize("previous", [0, parse_timestamp("2024-06-01T00:00:00Z")])
def test_claims_above_the_audience_neither_change_nor_show(previous: int) -> None:
    shareable = [claim(ALICE, 1, confidence=40, labels=["c2"], valid_until="2025-01-01T00:00:00Z"),
                 claim(WRITER, 2, confidence=60)]
    without = merged(shareable, previous=previous)
    with_secrets = merged([*secret_claims(), *shareable], previous=previous)
    assert with_secrets.body == without.body
    assert with_secrets.content_hash == without.content_hash
    text = orjson.dumps(with_secrets.body).decode()
    for secret in secret_claims():
        assert secret.producer_id not in text
    for word in ("red-only", "secret op", "compromised", "impact", "TLP:RED", "TLP:AMBER", "carl", "DE", "2020-"):
        assert word not in text


def test_a_green_claim_is_above_a_clear_audience() -> None:
    clear = claim(WRITER, 1, tlp=Tlp.CLEAR, confidence=50)
    only_clear = merged([clear], audience=Tlp.CLEAR)
    assert merged([clear, claim(ALICE, 2, confidence=90)], audience=Tlp.CLEAR) == only_clear


def test_clear_claim_stays_visible_when_a_red_one_exists() -> None:
    clear = claim(WRITER, 1, tlp=Tlp.CLEAR, confidence=60)
    red = claim(ALICE, 2, tlp=Tlp.RED, confidence=90)
    body = merged([red, clear]).body
    assert body["object_marking_refs"] == [TLP2[Tlp.CLEAR]]
    assert body["confidence"] == 30
    assert [e["original_id"] for e in provenance(body)["claims"]] == [clear.producer_id]
    assert provenance(body)["claims"][0]["tlp"] == "TLP:CLEAR"


def test_merge_is_none_when_the_audience_may_see_no_claim() -> None:
    assert merge([], audience=Tlp.RED, hub=HUB, created=CREATED, previous_modified=0) is None
    hidden = [claim(ALICE, 1, tlp=Tlp.RED), claim(WRITER, 2, tlp=Tlp.AMBER)]
    assert merge(hidden, audience=Tlp.GREEN, hub=HUB, created=CREATED, previous_modified=0) is None
    assert merge(hidden, audience=Tlp.AMBER, hub=HUB, created=CREATED, previous_modified=0) is not None
    assert merge([claim(ALICE, 3)], audience=Tlp.CLEAR, hub=HUB, created=CREATED, previous_modified=0) is None


def test_revoked_only_when_no_live_claim_is_left() -> None:
    alice = claim(ALICE, 1, confidence=80, labels=["c2"])
    writer_revoked = claim(WRITER, 2, revoked=True, labels=["old"])
    body = merged([alice, writer_revoked]).body
    assert "revoked" not in body
    assert body["labels"] == ["c2"]  # what a retracted claim said no longer shapes the merge
    alice_revoked = claim(ALICE, 1, confidence=80, revoked=True, modified="2024-03-01T00:00:00.000Z")
    result = merged([alice_revoked, writer_revoked])
    assert result.body["revoked"] is True
    assert "confidence" not in result.body
    assert provenance(result.body)["source_count"] == 0
    # A live claim above the audience does not keep what the audience sees from being revoked.
    with_red = merged([alice_revoked, writer_revoked, claim(CARL, 3, tlp=Tlp.RED)])
    assert with_red == result


@pytest.mark.parametrize("case", ["all claims revoked", "sources without a country"])
def test_no_live_country_leaves_countries_out(case: str) -> None:
    # STIX 2.1 forbids empty lists (stix2-validator: "empty arrays are not allowed"), so no `countries: []`.
    if case == "all claims revoked":
        claims = [claim(ALICE, 1, revoked=True), claim(WRITER, 2, revoked=True)]
    else:
        claims = [claim(Source("feed-a"), 1), claim(Source("feed-b", trust=0.3), 2)]
    result = merged(claims)
    assert "countries" not in provenance(result.body)
    assert provenance(result.body)["source_count"] == (0 if case == "all claims revoked" else 2)


def test_merged_indicator_has_name_and_description() -> None:
    # stix2-validator's strict check 303 (indicator-properties) wants both; the validation above keeps it on.
    body = merged([claim(ALICE, 1, confidence=80), claim(WRITER, 2, labels=["c2"])]).body
    assert body["name"] and body["description"]


def test_content_hash_ignores_modified() -> None:
    claims = [claim(ALICE, 1, confidence=80), claim(WRITER, 2, confidence=60)]
    first = merged(claims, previous=0)
    later = merged(claims, previous=parse_timestamp("2025-01-01T00:00:00Z"))
    assert first.body["modified"] != later.body["modified"]
    assert {k: v for k, v in first.body.items() if k != "modified"} == {
        k: v for k, v in later.body.items() if k != "modified"}
    assert first.content_hash == later.content_hash
    changed = merged([claims[0], claim(WRITER, 2, confidence=90, modified="2024-01-03T00:00:00.000Z")])
    assert changed.content_hash != first.content_hash


@pytest.mark.parametrize(
    "previous", ["1970-01-01T00:00:00Z", "2023-12-31T00:00:00Z", "2024-01-02T00:00:00Z", "2031-05-05T05:05:05.5Z"])
def test_modified_strictly_increases_over_the_previous_version(previous: str) -> None:
    claims = [claim(ALICE, 1), claim(WRITER, 2, modified="2024-01-05T00:00:00.000Z")]
    before = parse_timestamp(previous)
    modified = parse_timestamp(merged(claims, previous=before).body["modified"])
    assert modified > before
    assert modified >= parse_timestamp("2024-01-05T00:00:00Z")  # never older than a claim it merges
    assert modified >= CREATED


def test_versions_keep_increasing_when_merged_again() -> None:
    claims = [claim(ALICE, 1)]
    previous = parse_timestamp("2024-01-02T00:00:00Z")  # what the claim alone would give
    seen = []
    for _ in range(5):
        previous = parse_timestamp(merged(claims, previous=previous).body["modified"])
        seen.append(previous)
    assert seen == sorted(set(seen))


def test_sightings_attach_and_follow_the_audience() -> None:
    def sighting(source: Source, n: int, count: int, marking: str | None = None) -> SightingClaim:
        obj: dict[str, Any] = {"type": "sighting", "spec_version": "2.1",
                               "id": f"sighting--00000000-0000-4000-8000-{n:012d}", "created": "2024-01-03T00:00:00Z",
                               "modified": "2024-01-03T00:00:00Z", "count": count,
                               "sighting_of_ref": "indicator--00000000-0000-4000-8000-000000000001",
                               "first_seen": f"2024-01-0{n}T00:00:00Z", "last_seen": f"2024-01-0{n}T12:00:00Z"}
        if marking:
            obj["object_marking_refs"] = [marking]
        made = claim_from_sighting(obj, source, default_tlp=Tlp.GREEN)
        assert made is not None
        return made

    sightings = [sighting(ALICE, 2, 3), sighting(WRITER, 3, 4), sighting(CARL, 4, 50, TLP1_RED)]
    ext = provenance(merged([claim(ALICE, 1)], sightings=sightings).body)
    assert ext["sightings"] == {"count": 7, "sources": ["alice", "writer"], "countries": ["FR", "PL"],
                                "first_seen": ts("2024-01-02T00:00:00Z"), "last_seen": ts("2024-01-03T12:00:00Z")}
    assert "sightings" not in provenance(merged([claim(ALICE, 1)], sightings=sightings[2:]).body)


# --- the one-claim path ------------------------------------------------------------------------------------------

_TIMES = st.integers(min_value=0, max_value=4_102_444_800_000_000) | st.none()
# A claim's string lists are sorted and distinct, as every reader of claims makes them (see Claim).
_WORDS = st.lists(st.sampled_from(["c2", "botnet", "apt", "Phishing", "c2 "]), max_size=4).map(
    lambda w: tuple(sorted(set(w))))
_CLAIMS = st.builds(
    Claim, indicator_id=st.just(indicator_id(DOMAIN)), pattern=st.just(DOMAIN),
    source=st.sampled_from(["alice", "bob"]), country=st.sampled_from([None, "", "FR", "DE"]),
    trust=st.floats(min_value=0, max_value=1), producer_id=st.just("indicator--00000000-0000-4000-8000-000000000001"),
    created=st.integers(min_value=0, max_value=4_102_444_800_000_000),
    modified=st.integers(min_value=0, max_value=4_102_444_800_000_000), revoked=st.booleans(),
    tlp=st.sampled_from(list(Tlp)), confidence=st.integers(min_value=0, max_value=100) | st.none(),
    valid_from=_TIMES, valid_until=_TIMES, name=st.sampled_from([None, "", "evil"]), labels=_WORDS,
    indicator_types=st.lists(st.sampled_from(["malicious-activity", "benign"]), max_size=3).map(
        lambda t: tuple(sorted(set(t)))),
    kill_chain=st.lists(st.tuples(st.sampled_from(["mitre-attack", "lm"]), st.sampled_from(["c2", "recon"])),
                        max_size=3).map(lambda k: tuple(sorted(set(k)))),
    role=st.sampled_from([None, "dst"]), warnings=_WORDS, origin=st.sampled_from([None, "identity--x"]),
    path=st.lists(st.sampled_from(["identity--x", "identity--y"]), max_size=2).map(tuple),
)


@given(_CLAIMS, st.sampled_from([None, CREATED]), st.lists(st.builds(
    SightingClaim, sighting_id=st.just("sighting--1"), sighting_of=st.just("indicator--1"), source=st.just("carl"),
    country=st.sampled_from([None, "AT"]), modified=st.just(CREATED), revoked=st.booleans(),
    tlp=st.sampled_from(list(Tlp)), count=st.integers(0, 5), first_seen=_TIMES, last_seen=_TIMES), max_size=2))
def test_one_claim_merges_as_the_general_rule_says(one: Claim, created: int | None,
                                                   sightings: list[SightingClaim]) -> None:
    # merge() takes a shortcut for a single visible claim; the general rule (_many_claims) is the reference.
    fast = merge([one], audience=Tlp.RED, hub=HUB, created=created, previous_modified=0, sightings=sightings)
    assert fast is not None
    body, first_created = _many_claims([one], HUB, created, sightings)
    reference = _finish(body, [one], first_created, 0)
    assert orjson.dumps(fast.body) == orjson.dumps(reference.body)
    assert (fast.content_hash, fast.created) == (reference.content_hash, reference.created)


@given(st.lists(_CLAIMS, min_size=1, max_size=3), st.sampled_from([None, CREATED]),
       st.integers(min_value=0, max_value=4_102_444_800_000_000))
def test_the_stored_record_is_the_merged_body_serialized_once(claims: list[Claim], created: int | None,
                                                              previous: int) -> None:
    # merge serializes the body once, for the hash and the store: the record must be what read_record makes of it.
    result = merge(claims, audience=Tlp.RED, hub=HUB, created=created, previous_modified=previous)
    assert result is not None
    assert orjson.loads(result.record.body) == result.body
    assert result.record.body == orjson.dumps(result.body)
    expected = read_record(result.body)
    assert result.record == replace(expected, content_hash=result.content_hash, body=result.record.body)
    without_modified = {k: v for k, v in result.body.items() if k != "modified"}
    assert result.content_hash == hashlib.sha256(orjson.dumps(without_modified)).digest()[:16]


def _by_the_rule(claims: list[Claim], created: int | None) -> dict[str, Any]:
    """What the merge rule (docs/dedup.md) says of sorted claims, property by property, written plainly."""
    live = [c for c in claims if not c.revoked]
    basis = live or claims
    created = min(c.created for c in claims) if created is None else created
    first = min(basis, key=lambda c: (c.created, c.key))
    starts = [c.valid_from for c in basis if c.valid_from is not None]
    start = min(starts) if starts else created
    ends = [c.valid_until for c in basis if c.valid_until is not None]
    phases = sorted({p for c in basis for p in c.kill_chain})
    expected: dict[str, Any] = {
        "created": format_timestamp(created), "valid_from": format_timestamp(start),
        "name": first.name or first.pattern,
        "description": f"Merged by {HUB.name} from {len(basis)} claim(s) of {len({c.key for c in basis})} "
                       "source(s); provenance in the extension.",
        "valid_until": format_timestamp(max(ends)) if len(ends) == len(basis) and max(ends) > start else None,
        "indicator_types": sorted({t for c in basis for t in c.indicator_types}) or None,
        "labels": sorted({t for c in basis for t in c.labels}) or None,
        "kill_chain_phases": [{"kill_chain_name": k, "phase_name": p} for k, p in phases] or None,
        "confidence": combined_confidence(live), "revoked": True if not live else None,
        "object_marking_refs": [marking_id(max(c.tlp for c in claims))],
        "source_count": len({c.key for c in live}),
        "countries": sorted({c.country for c in live if c.country}) or None,
        "warninglists": sorted({w for c in claims for w in c.warnings}) or None,
        "claims": [c.producer_id for c in claims],
    }
    return expected


@given(st.lists(st.builds(replace, _CLAIMS, producer_id=st.sampled_from(["indicator--1", "indicator--2"]),
                          created=st.sampled_from([CREATED, CREATED + 1]), name=st.sampled_from(["a", "b"])),
                max_size=5, min_size=2, unique_by=lambda c: (c.key, c.producer_id)),  # one claim per producer
       st.sampled_from([None, CREATED]))
def test_several_claims_merge_as_the_rule_says(claims: list[Claim], created: int | None) -> None:
    # _many_claims gathers everything in one pass over the claims; the rule, written plainly, is the reference.
    claims.sort(key=lambda c: (c.key, c.producer_id))
    body, first_created = _many_claims(claims, HUB, created, ())
    provenance = body["extensions"][PROVENANCE_EXTENSION]
    found = {**{k: body.get(k) for k in ("created", "valid_from", "name", "description", "valid_until",
                                         "indicator_types", "labels", "kill_chain_phases", "confidence", "revoked",
                                         "object_marking_refs")},
             **{k: provenance.get(k) for k in ("source_count", "countries", "warninglists")},
             "claims": [entry["original_id"] for entry in provenance["claims"]]}
    assert found == _by_the_rule(claims, created)
    assert first_created == (min(c.created for c in claims) if created is None else created)
