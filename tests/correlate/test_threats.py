"""Correlate stage: observations and the threat keys they feed."""

import pytest
from msgspec.structs import replace

from exchange.correlate.threats import (
    TaggedNames,
    ThreatKind,
    group_by_threat,
    names_from_labels,
    observation_from_claim,
    observation_from_sighting,
    split_key,
    threat_key,
    threat_keys,
)
from exchange.dedup.claims import Source, claim_from_indicator, claim_from_sighting
from exchange.dedup.merge import HubIdentity
from exchange.policy.tlp import Tlp
from tests.correlate.helpers import HASH, KILL_SWITCH, T0, obs

HUB_A = HubIdentity("CERT-A").id
HUB_B = HubIdentity("CERT-B").id


def test_an_observation_feeds_its_indicator_first() -> None:
    assert threat_keys(obs()) == (f"indicator:{KILL_SWITCH}",)


def test_family_campaign_and_intrusion_set_keys() -> None:
    keys = threat_keys(obs(families=("WannaCry", "WCry", "wanna decryptor"), campaigns=("May 2017 Outbreak",),
                           intrusion_sets=("Lazarus Group", "lazarus-group")))
    assert keys == (f"indicator:{KILL_SWITCH}", "family:wannacryptor", "campaign:may-2017-outbreak",
                    "intrusion-set:lazarus-group")


def test_unknown_family_is_its_slug_and_blank_names_are_dropped() -> None:
    keys = threat_keys(obs(families=("Brand New Locker", "--"), campaigns=("  ",)))
    assert keys == (f"indicator:{KILL_SWITCH}", "family:brand-new-locker")


def test_split_key() -> None:
    assert split_key("intrusion-set:apt-28") == (ThreatKind.INTRUSION_SET, "apt-28")
    assert threat_key(ThreatKind.FAMILY, "x") == "family:x"
    for bad in ("family:", "nothing", "actor:x"):
        with pytest.raises(ValueError):
            split_key(bad)


def test_group_by_threat() -> None:
    a = obs("FR", families=("WannaCry",))
    b = obs("DE", indicator=HASH, families=("WCry",))
    grouped = group_by_threat([a, b])
    assert grouped["family:wannacryptor"] == [a, b]
    assert grouped[f"indicator:{KILL_SWITCH}"] == [a]
    assert grouped[f"indicator:{HASH}"] == [b]


def test_names_from_misp_galaxy_labels() -> None:
    names = names_from_labels(['misp-galaxy:ransomware="WannaCry"', 'misp-galaxy:mitre-malware="WannaCry - S0366"',
                               'misp-galaxy:threat-actor="Lazarus Group"', 'misp-galaxy:sector="Health"',
                               'tlp:white', "malicious-activity"])
    assert names == TaggedNames(families=("WannaCry",), intrusion_sets=("Lazarus Group",))


def test_observation_from_claim_and_sighting() -> None:
    source = Source(name="alice", country="FR")
    indicator = {"type": "indicator", "spec_version": "2.1", "id": "indicator--00000000-0000-4000-8000-000000000001",
                 "created": "2017-05-12T08:00:00Z", "modified": "2017-05-12T08:00:00Z", "confidence": 80,
                 "pattern": "[domain-name:value = 'iuqerfsodp9ifjaposdfjhgosurijfaewrwergwea.com']",
                 "pattern_type": "stix", "valid_from": "2017-05-12T08:00:00Z"}
    claim = claim_from_indicator(indicator, source, default_tlp=Tlp.GREEN)
    assert claim is not None
    seen = observation_from_claim(claim, hub_id=HUB_A, time=T0, names=TaggedNames(families=("WannaCry",)))
    assert seen is not None
    assert (seen.indicator_id, seen.source, seen.country, seen.confidence, seen.tlp, seen.families, seen.path) == (
        claim.indicator_id, f"alice@{HUB_A}", "FR", 80, Tlp.GREEN, ("WannaCry",), ())
    assert observation_from_claim(replace(claim, revoked=True), hub_id=HUB_A, time=T0) is None
    # The same claim relayed to hub B (dedup/relay.py): the same reporter, so merged alerts count it once.
    relayed = observation_from_claim(replace(claim, origin=HUB_A, path=(HUB_A,)), hub_id=HUB_B, time=T0)
    assert relayed is not None and relayed.source == seen.source and relayed.path == (HUB_A,)

    sighting = claim_from_sighting({"type": "sighting", "spec_version": "2.1", "id": "sighting--1",
                                    "created": "2017-05-12T09:00:00Z", "modified": "2017-05-12T09:00:00Z",
                                    "sighting_of_ref": indicator["id"], "last_seen": "2017-05-13T00:00:00Z"},
                                   Source(name="cert-de", country="DE"), default_tlp=Tlp.AMBER)
    assert sighting is not None
    later = T0 + 10**12
    sighted = observation_from_sighting(sighting, claim.indicator_id, hub_id=HUB_A, time=later)
    assert sighted is not None and sighted.country == "DE" and sighted.tlp == Tlp.AMBER
    assert sighted.source == f"cert-de@{HUB_A}"
    assert sighted.time < later  # dated when last seen
    early = observation_from_sighting(sighting, claim.indicator_id, hub_id=HUB_A, time=T0)
    assert early is not None and early.time == T0  # never later than reported
