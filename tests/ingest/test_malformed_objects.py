"""Whatever a peer puts in an object's properties, checking it either succeeds or rejects it with InvalidObject.

Anything else surfaces as "could not be checked (TypeError)" in the status resource: no reason a peer can act on.
Two such escapes were found this way (an unhashable STIX 2.0 label, an integer beyond 64 bits).
"""

import contextlib
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exchange.dedup.claims import Source
from exchange.dedup.merge import PROVENANCE_EXTENSION
from exchange.errors import InvalidObject
from exchange.ingest.processor import ClaimPolicy, derive
from exchange.model.stix import read_record

HUB_ID = "identity--00000000-0000-4000-8000-0000000000bb"
PEER_HUB = "identity--00000000-0000-4000-8000-0000000000aa"
INDICATOR = {"type": "indicator", "spec_version": "2.1", "id": "indicator--00000000-0000-4000-8000-000000000001",
             "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
             "pattern": "[domain-name:value = 'evil.example']", "pattern_type": "stix",
             "valid_from": "2024-01-01T00:00:00Z"}
SIGHTING = {"type": "sighting", "spec_version": "2.1", "id": "sighting--00000000-0000-4000-8000-000000000001",
            "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
            "sighting_of_ref": "indicator--00000000-0000-4000-8000-000000000002"}
PROPERTIES = ["created", "modified", "pattern", "pattern_type", "valid_from", "valid_until", "name", "labels",
              "indicator_types", "kill_chain_phases", "confidence", "revoked", "object_marking_refs",
              "created_by_ref", "extensions", "count", "first_seen", "last_seen", "sighting_of_ref"]
# Any JSON value (integers as any decoder may hand them over, beyond 64 bits too).
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=5)
PEER = Source(name="peer", country="DE")
RELAY = Source(name="hub-b", country="FR", relay=True)
POLICY = ClaimPolicy(sources={"peer": PEER, "hub-b": RELAY}, hub_id=HUB_ID)


def check(obj: dict[str, Any], source: Source) -> None:
    with contextlib.suppress(InvalidObject):
        derive(obj, read_record(obj), source, POLICY)


@settings(max_examples=300, suppress_health_check=list(HealthCheck), deadline=None)
@example(INDICATOR, {"labels": ["malicious-activity", {}]}, True)  # the two escapes found so far
@example(SIGHTING, {"count": 2**64}, False)
@given(st.sampled_from([INDICATOR, SIGHTING]), st.dictionaries(st.sampled_from(PROPERTIES), JSON, min_size=1,
                                                               max_size=3), st.booleans())
def test_a_malformed_property_is_an_invalid_object_or_nothing(base: dict[str, Any], changes: dict[str, Any],
                                                              stix20: bool) -> None:
    obj = {**base, **changes}
    if stix20:  # an SDO without spec_version is STIX 2.0, and is upgraded before its claim is read
        obj.pop("spec_version")
    check(obj, PEER)


ENTRY = {"source": "alice", "original_id": "indicator--00000000-0000-4000-8000-000000000003",
         "original_modified": "2024-01-01T00:00:00.000Z", "tlp": "TLP:GREEN", "origin": PEER_HUB, "path": [PEER_HUB]}
ENTRY_KEYS = [*ENTRY, "country", "confidence", "role", "valid_from", "valid_until", "labels", "revoked"]


@settings(max_examples=300, suppress_health_check=list(HealthCheck), deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(ENTRY_KEYS), JSON, max_size=2).map(lambda c: {**ENTRY, **c})
                | JSON, max_size=3) | JSON,
       st.dictionaries(st.sampled_from(["source_count", "countries", "warninglists", "sightings"]), JSON, max_size=2))
def test_a_malformed_provenance_from_a_peer_hub_is_an_invalid_object_or_nothing(claims: Any,
                                                                                 extra: dict[str, Any]) -> None:
    obj = {**INDICATOR, "created_by_ref": PEER_HUB,
           "extensions": {PROVENANCE_EXTENSION: {"extension_type": "property-extension", "claims": claims, **extra}}}
    check(obj, RELAY)
