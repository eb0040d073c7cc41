"""Dedup stage: the claim one peer's indicator or sighting makes (canonical pattern and id, role, TLP, checks)."""

import uuid
from typing import Any

import pytest
from stix2patterns.exceptions import ParseException
from stix2patterns.v21.pattern import Pattern

from exchange.dedup.claims import Claim, Source, claim_from_indicator, claim_from_sighting
from exchange.errors import InvalidObject
from exchange.model.timestamps import parse_timestamp
from exchange.normalize.ids import NAMESPACE
from exchange.policy.tlp import Tlp

ALICE = Source(name="alice", country="FR", trust=1.0)
WRITER = Source(name="writer", country="PL", trust=0.5)
SHA256 = "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"
# TLP markings as peers send them: OASIS TLP 2.0, STIX 2.1's TLP 1.0, OpenCTI's AMBER+STRICT.
TLP2_RED = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
TLP2_CLEAR = "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"
TLP1_WHITE = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"
TLP1_AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
TLP1_RED = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
OPENCTI_AMBER_STRICT = "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37"


def indicator(pattern: str, n: int = 1, **props: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
        "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-02T00:00:00.000Z",
        "pattern": pattern, "pattern_type": "stix", "valid_from": "2024-01-01T00:00:00Z",
    }
    obj.update(props)
    return obj


def claim(obj: dict[str, Any], source: Source = ALICE, default_tlp: Tlp = Tlp.GREEN) -> Claim:
    made = claim_from_indicator(obj, source, default_tlp=default_tlp)
    assert made is not None
    return made


def expected_id(canonical: str) -> str:
    # Computed here from the namespace, not through exchange.normalize.ids, so a broken indicator_id shows.
    return f"indicator--{uuid.uuid5(NAMESPACE, canonical)}"


@pytest.mark.parametrize(
    ("canonical", "spellings"),
    [
        ("[domain-name:value = 'evil.example']", [
            "[domain-name:value = 'evil.example']",
            "[domain-name:value = 'EVIL.Example.']",  # case and the DNS root's trailing dot
            "[domain-name:value='evil.example']",
            "[domain-name:value == 'evil.example']",  # the grammar's other equality operator
            "  [ domain-name:'value'   =   'Evil.EXAMPLE' ]  ",  # blanks, and a quoted first path component
        ]),
        ("[ipv4-addr:value = '198.51.100.7']", [
            "[ipv4-addr:value = '198.51.100.7']",
            "[ipv4-addr:value = '198.51.100.7/32']",
            "[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '198.51.100.7']",
            "[network-traffic:dst_ref.value = '198.51.100.7' AND network-traffic:dst_ref.type = 'ipv4-addr']",
            "[network-traffic:src_ref.type = 'ipv4-addr' AND network-traffic:src_ref.value = '198.51.100.7']",
        ]),
        (f"[file:hashes.'SHA-256' = '{SHA256}']", [
            f"[file:hashes.'SHA-256' = '{SHA256.upper()}']",
            f"[file:hashes.SHA256 = '{SHA256}']",
            f"[file:hashes.sha256 = '{SHA256}']",
            f"[ file:hashes.'sha-256'='{SHA256}' ]",
        ]),
    ],
)
def test_every_spelling_claims_the_same_canonical_pattern_and_id(canonical: str, spellings: list[str]) -> None:
    claims = [claim(indicator(p, n), WRITER) for n, p in enumerate(spellings)]
    assert {c.pattern for c in claims} == {canonical}
    assert {c.indicator_id for c in claims} == {expected_id(canonical)}


def test_different_indicators_get_different_ids() -> None:
    patterns = ["[domain-name:value = 'evil.example']", "[domain-name:value = 'evil.example.com']",
                "[domain-name:value = 'www.evil.example']", "[url:value = 'http://evil.example/']",
                "[ipv4-addr:value = '198.51.100.7']", "[ipv4-addr:value = '198.51.100.0/24']",
                "[ipv6-addr:value = '2001:db8::7']", f"[file:hashes.'SHA-256' = '{SHA256}']",
                f"[file:hashes.MD5 = '{SHA256[:32]}']"]
    ids = {claim(indicator(p)).indicator_id for p in patterns}
    assert len(ids) == len(patterns)


@pytest.mark.parametrize(
    ("pattern", "role"),
    [
        ("[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '198.51.100.7']", "dst"),
        ("[network-traffic:src_ref.type = 'ipv4-addr' AND network-traffic:src_ref.value = '198.51.100.7']", "src"),
        ("[network-traffic:dst_ref.type = 'domain-name' AND network-traffic:dst_ref.value = 'EVIL.example']", "dst"),
        ("[ipv4-addr:value = '198.51.100.7']", None),
        ("[domain-name:value = 'evil.example']", None),
    ],
)
def test_role_is_kept_from_the_misp_stix_network_traffic_form(pattern: str, role: str | None) -> None:
    assert claim(indicator(pattern)).role == role


@pytest.mark.parametrize(
    "pattern",
    [
        "[domain-name:value = ",
        "[domain-name:value = 'evil\\.example']",  # \. is no escape STIX string literals have
        "domain-name:value = 'evil.example'",
        "[domain-name:value = 'evil.example'] AND",
    ],
)
def test_unparseable_pattern_is_invalid_with_the_parsers_message(pattern: str) -> None:
    with pytest.raises(ParseException) as parser:
        Pattern(pattern)
    with pytest.raises(InvalidObject) as rejected:
        claim(indicator(pattern))
    assert str(parser.value) in str(rejected.value)


@pytest.mark.parametrize("pattern", [None, "", "   ", 42, ["[ipv4-addr:value = '198.51.100.7']"]])
def test_missing_pattern_is_invalid(pattern: Any) -> None:
    with pytest.raises(InvalidObject, match="pattern"):
        claim(indicator(pattern))


@pytest.mark.parametrize(
    ("pattern_type", "pattern"),
    [
        ("snort", "alert tcp any any -> 198.51.100.7 any (msg:\"evil\"; sid:1;)"),
        ("yara", "rule evil { strings: $a = \"evil\" condition: $a }"),
        ("sigma", "title: evil\ndetection: {}"),
        ("suricata", "[not a stix pattern"),
    ],
)
def test_other_pattern_languages_make_no_claim(pattern_type: str, pattern: str) -> None:
    obj = indicator(pattern, pattern_type=pattern_type)
    assert claim_from_indicator(obj, ALICE, default_tlp=Tlp.GREEN) is None


@pytest.mark.parametrize("confidence", [101, -1, "80", 80.5, True, [80]])
def test_bad_confidence_is_invalid(confidence: Any) -> None:
    with pytest.raises(InvalidObject, match="confidence"):
        claim(indicator("[domain-name:value = 'evil.example']", confidence=confidence))


@pytest.mark.parametrize("confidence", [0, 55, 100, None])
def test_confidence_is_kept(confidence: int | None) -> None:
    obj = indicator("[domain-name:value = 'evil.example']")
    if confidence is not None:
        obj["confidence"] = confidence
    assert claim(obj).confidence == confidence


@pytest.mark.parametrize(
    ("refs", "level"),
    [
        ([TLP2_RED], Tlp.RED),
        ([TLP1_RED], Tlp.RED),
        pytest.param([TLP1_WHITE], Tlp.CLEAR),
        pytest.param([TLP2_CLEAR], Tlp.CLEAR),
        ([TLP1_AMBER], Tlp.AMBER),
        ([OPENCTI_AMBER_STRICT], Tlp.AMBER_STRICT),
        ([TLP2_CLEAR, TLP1_RED], Tlp.RED),
    ],
)
def test_markings_give_the_claims_tlp(refs: list[str], level: Tlp) -> None:
    obj = indicator("[domain-name:value = 'evil.example']", object_marking_refs=refs)
    for default in Tlp:  # a marking always beats the default, whichever it is
        assert claim(obj, default_tlp=default).tlp is level


@pytest.mark.parametrize("default", list(Tlp))
def test_default_tlp_applies_to_unmarked_objects(default: Tlp) -> None:
    unmarked = indicator("[domain-name:value = 'evil.example']")
    not_tlp = indicator("[domain-name:value = 'evil.example']",
                        object_marking_refs=["marking-definition--2f4f2f0e-7a0b-4b5e-9c6e-3d1c2b0a9f8e"])
    assert claim(unmarked, default_tlp=default).tlp is default
    assert claim(not_tlp, default_tlp=default).tlp is default


def test_claim_carries_what_the_source_said() -> None:
    obj = indicator(
        "[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '198.51.100.7']", n=9,
        name="C2 of family X", confidence=70, valid_until="2025-01-01T00:00:00Z", revoked=False,
        valid_from="2024-01-01T06:00:00Z", object_marking_refs=[TLP1_AMBER],
        labels=["c2", "botnet", "c2"], indicator_types=["malicious-activity", "c2-server"],
        kill_chain_phases=[{"kill_chain_name": "mitre-attack", "phase_name": "command-and-control"},
                           {"kill_chain_name": "lockheed-martin-cyber-kill-chain", "phase_name": "c2"}],
    )
    made = claim(obj, WRITER)
    # Every field, as Claim is built positionally: a field out of place shows here.
    assert made.pattern == "[ipv4-addr:value = '198.51.100.7']"
    assert made.indicator_id == expected_id(made.pattern)
    assert (made.source, made.country, made.trust) == ("writer", "PL", 0.5)
    assert (made.tlp, made.warnings, made.origin, made.path) == (Tlp.AMBER, (), None, ())
    assert made.producer_id == obj["id"]
    assert made.created == parse_timestamp(obj["created"])
    assert made.modified == parse_timestamp(obj["modified"])
    assert made.valid_from == parse_timestamp(obj["valid_from"])
    assert made.valid_until == parse_timestamp("2025-01-01T00:00:00Z")
    assert (made.name, made.confidence, made.revoked, made.role) == ("C2 of family X", 70, False, "dst")
    assert made.labels == ("botnet", "c2", "c2-server")  # an indicator type outside the vocabulary is a label
    assert made.indicator_types == ("malicious-activity",)
    assert made.kill_chain == (("lockheed-martin-cyber-kill-chain", "c2"), ("mitre-attack", "command-and-control"))


def test_a_revoked_indicator_is_a_revoked_claim() -> None:
    made = claim(indicator("[domain-name:value = 'evil.example']", revoked=True))
    assert made.revoked is True
    assert made.modified > made.created


@pytest.mark.parametrize(
    ("missing", "words"),
    [("created", "missing required property 'created'"), ("modified", "missing required property 'modified'"),
     ("valid_from", "missing required property 'valid_from'"),
     ("pattern_type", "missing required property 'pattern_type'")],
)
def test_an_indicator_without_a_required_property_makes_no_claim(missing: str, words: str) -> None:
    # STIX 2.1 section 4.7: without them the canonical indicator would be dated 1970 or start nowhere.
    obj = indicator("[domain-name:value = 'evil.example']")
    del obj[missing]
    with pytest.raises(InvalidObject, match=words):
        claim_from_indicator(obj, ALICE, default_tlp=Tlp.GREEN)


@pytest.mark.parametrize(
    ("props", "words"),
    [({"modified": "2023-12-31T00:00:00Z"}, "'modified' is before 'created'"),
     ({"valid_until": "2024-01-01T00:00:00Z"}, "'valid_until' must be later than 'valid_from'"),
     ({"valid_until": "2023-06-01T00:00:00Z"}, "'valid_until' must be later than 'valid_from'"),
     ({"pattern_type": 7}, "invalid 'pattern_type' 7")],
)
def test_an_indicator_whose_times_contradict_each_other_makes_no_claim(props: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidObject, match=words):
        claim(indicator("[domain-name:value = 'evil.example']", **props))


def test_a_claim_dated_more_than_a_day_ahead_of_the_clock_is_refused() -> None:
    # One such claim would date every later canonical version of its indicator after it.
    obj = indicator("[domain-name:value = 'evil.example']", modified="2024-01-03T00:00:00.000Z")
    limit = parse_timestamp("2024-01-03T00:00:00Z")
    assert claim_from_indicator(obj, ALICE, default_tlp=Tlp.GREEN, not_after=limit) is not None
    with pytest.raises(InvalidObject, match="more than a day ahead of this hub's clock"):
        claim_from_indicator(obj, ALICE, default_tlp=Tlp.GREEN, not_after=limit - 1)
    seen = sighting("indicator--00000000-0000-4000-8000-000000000001")
    with pytest.raises(InvalidObject, match="more than a day ahead"):
        claim_from_sighting(seen, ALICE, default_tlp=Tlp.GREEN, not_after=limit - 1)
    with pytest.raises(InvalidObject, match="'last_seen' is before 'first_seen'"):
        claim_from_sighting({**seen, "first_seen": "2024-01-02T00:00:00Z", "last_seen": "2024-01-01T00:00:00Z"},
                            ALICE, default_tlp=Tlp.GREEN)


@pytest.mark.parametrize(
    ("prop", "value", "words"),
    [
        ("modified", "yesterday", "modified"),
        ("valid_from", "2024-13-01T00:00:00Z", "valid_from"),
        ("labels", "c2", "labels"),
        ("labels", ["c2", 3], "labels"),
        ("kill_chain_phases", [{"phase_name": "c2"}], "kill_chain_phases"),
        ("kill_chain_phases", [{"kill_chain_name": 5, "phase_name": "c2"}], "kill_chain_phases"),
        ("kill_chain_phases", [{"kill_chain_name": "mitre-attack", "phase_name": ["c2"]}], "kill_chain_phases"),
        ("kill_chain_phases", ["mitre-attack"], "kill_chain_phases"),
        ("kill_chain_phases", {"kill_chain_name": "mitre-attack", "phase_name": "c2"}, "kill_chain_phases"),
        ("kill_chain_phases", 7, "kill_chain_phases"),
    ],
)
def test_malformed_properties_are_invalid(prop: str, value: Any, words: str) -> None:
    with pytest.raises(InvalidObject, match=words):
        claim(indicator("[domain-name:value = 'evil.example']", **{prop: value}))


def test_one_kill_chain_phase_reads_as_in_a_list_of_several() -> None:
    # A single phase takes a shortcut (no set, no sort); it must give what the general rule gives.
    phase = {"kill_chain_name": "Lockheed Martin_Cyber Kill Chain", "phase_name": " Command and  Control"}
    other = {"kill_chain_name": "mitre-attack", "phase_name": "initial-access"}
    one = claim(indicator("[domain-name:value = 'evil.example']", kill_chain_phases=[phase]))
    two = claim(indicator("[domain-name:value = 'evil.example']", kill_chain_phases=[other, phase, dict(phase)]))
    assert one.kill_chain == (("lockheed-martin-cyber-kill-chain", "command-and-control"),)
    assert two.kill_chain == (one.kill_chain[0], ("mitre-attack", "initial-access"))


def sighting(of: str, **props: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "sighting", "spec_version": "2.1",
                           "id": "sighting--00000000-0000-4000-8000-0000000000a1", "sighting_of_ref": of,
                           "created": "2024-01-03T00:00:00.000Z", "modified": "2024-01-03T00:00:00.000Z"}
    obj.update(props)
    return obj


def test_sighting_of_an_indicator_is_a_claim() -> None:
    obj = sighting("indicator--00000000-0000-4000-8000-000000000001", count=4, object_marking_refs=[TLP1_AMBER],
                   first_seen="2024-01-02T00:00:00Z", last_seen="2024-01-03T00:00:00Z")
    made = claim_from_sighting(obj, WRITER, default_tlp=Tlp.GREEN)
    assert made is not None
    assert (made.sighting_of, made.source, made.country, made.count, made.tlp) == (
        "indicator--00000000-0000-4000-8000-000000000001", "writer", "PL", 4, Tlp.AMBER)
    assert (made.first_seen, made.last_seen) == (parse_timestamp("2024-01-02T00:00:00Z"),
                                                 parse_timestamp("2024-01-03T00:00:00Z"))


def test_clear_sighting_stays_clear() -> None:
    obj = sighting("indicator--00000000-0000-4000-8000-000000000001", object_marking_refs=[TLP2_CLEAR])
    made = claim_from_sighting(obj, WRITER, default_tlp=Tlp.AMBER)
    assert made is not None
    assert made.tlp is Tlp.CLEAR


def test_sighting_of_something_else_makes_no_claim_and_bad_counts_are_invalid() -> None:
    assert claim_from_sighting(sighting("malware--00000000-0000-4000-8000-000000000001"), ALICE,
                               default_tlp=Tlp.GREEN) is None
    with pytest.raises(InvalidObject, match="count"):
        claim_from_sighting(sighting("indicator--00000000-0000-4000-8000-000000000001", count=-2), ALICE,
                            default_tlp=Tlp.GREEN)
