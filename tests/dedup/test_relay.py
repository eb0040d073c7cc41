"""Relayed claims: a peer hub's canonical indicator becomes the claims it carries; echoes are dropped."""

from typing import Any

import pytest

from exchange.dedup.claims import Source, claim_from_indicator
from exchange.dedup.merge import PROVENANCE_EXTENSION, HubIdentity, merge
from exchange.dedup.relay import provenance_of, relayed_claims
from exchange.errors import InvalidObject
from exchange.policy.tlp import TLP2_IDS, Tlp

A, B, C = HubIdentity("CERT-A"), HubIdentity("CERT-B"), HubIdentity("CERT-C")
PEER_A = Source("peer:a", "AA", trust=0.8, relay=True)
PEER_B = Source("peer:b", "BB", trust=0.6, relay=True)


def indicator(n: int, pattern: str = "[ipv4-addr:value = '198.51.100.7']", **extra: Any) -> dict[str, Any]:
    return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
            "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-02T00:00:00.000Z", "pattern": pattern,
            "pattern_type": "stix", "valid_from": "2024-01-01T00:00:00Z", "confidence": 70,
            "object_marking_refs": [TLP2_IDS[Tlp.GREEN]], **extra}


def canonical_at(hub: HubIdentity, claims: list[Any]) -> dict[str, Any]:
    merged = merge(claims, audience=Tlp.GREEN, hub=hub, created=None, previous_modified=0)
    assert merged is not None
    return merged.body


def relay(obj: dict[str, Any], sender: Source, at: HubIdentity) -> list[Any]:
    provenance = provenance_of(obj)
    assert provenance is not None
    return relayed_claims(obj, provenance, sender, hub_id=at.id)


def test_a_canonical_indicator_relays_the_claims_of_its_original_sources() -> None:
    local = claim_from_indicator(indicator(1), Source("alice", "FR"), default_tlp=Tlp.GREEN)
    assert local is not None
    at_a = canonical_at(A, [local])
    [relayed] = relay(at_a, PEER_A, B)
    assert (relayed.source, relayed.origin, relayed.path) == ("alice", A.id, (A.id,))
    assert (relayed.country, relayed.trust, relayed.confidence) == ("FR", 0.8, 70)  # trust is the sender's
    assert (relayed.indicator_id, relayed.producer_id, relayed.modified) == (
        local.indicator_id, local.producer_id, local.modified)
    assert relayed.key == f"alice@{A.id}" != local.key  # same name at another hub: another source


def test_a_ring_of_hubs_converges() -> None:
    """A -> B -> C -> A: C's version carries only A's claim, which A drops as an echo."""
    local = claim_from_indicator(indicator(1), Source("alice", "FR"), default_tlp=Tlp.GREEN)
    at_b = canonical_at(B, relay(canonical_at(A, [local]), PEER_A, B))
    at_c = canonical_at(C, relay(at_b, PEER_B, C))
    assert at_c["id"] == at_b["id"] == local.indicator_id
    assert [e["path"] for e in at_c["extensions"][PROVENANCE_EXTENSION]["claims"]] == [[A.id, B.id, C.id]]
    assert relay(at_c, Source("peer:c", relay=True), A) == []  # back at the origin: nothing new
    assert relay(at_c, Source("peer:c", relay=True), B) == []  # B is on the path too


def test_revocation_and_newer_versions_travel() -> None:
    old = claim_from_indicator(indicator(1), Source("alice", "FR"), default_tlp=Tlp.GREEN)
    new = claim_from_indicator(indicator(1, modified="2024-03-01T00:00:00.000Z", revoked=True),
                               Source("alice", "FR"), default_tlp=Tlp.GREEN)
    assert old is not None and new is not None
    [before] = relay(canonical_at(A, [old]), PEER_A, B)
    [after] = relay(canonical_at(A, [new]), PEER_A, B)
    assert (before.revoked, after.revoked) == (False, True) and after.modified > before.modified


@pytest.mark.parametrize("bad, message", [
    ({"claims": "nope"}, "'claims' must be a list"),
    ({"claims": [{"source": "x"}]}, "needs source, original_id and origin"),
    ({"claims": [{"source": "x", "original_id": "i", "origin": "identity--x", "tlp": "purple"}]}, "not a TLP label"),
    ({"claims": [{"source": "x", "original_id": "i", "origin": "identity--x", "tlp": "TLP:GREEN",
                  "original_modified": "yesterday"}]}, "not a STIX timestamp"),
])
def test_malformed_provenance_is_rejected_with_a_reason(bad: dict[str, Any], message: str) -> None:
    obj = indicator(1, created_by_ref=A.id, extensions={PROVENANCE_EXTENSION: bad})
    with pytest.raises(InvalidObject, match=message):
        relay(obj, PEER_A, B)
