"""medallion 3.0.0 as a CERT's server that a hub both pulls from and pushes to (found by `exchange demo`): what the
hub pushes must leave medallion readable, and the STIX 2.0 a CERT keeps there (no spec_version on its objects,
as STIX 2.0 has it) must reach the hub's canonical collection, upgraded to 2.1."""

from pathlib import Path
from typing import Any

import pytest
import requests
from taxii2client.v21 import Collection

from exchange.dedup.merge import PROVENANCE_EXTENSION
from exchange.normalize.ids import indicator_id
from exchange.normalize.patterns import canonical_pattern
from scripts.medallion_peer import run_medallion
from tests.peering import TAXII, canonical_objects, config_hub, hub_config, indicators, peer_block, post_all, wait_for

pytestmark = pytest.mark.slow

STIX20_PATTERN = "[domain-name:value = 'wcry-c2.example.net']"
STIX20 = [
    {"type": "indicator", "id": "indicator--5a9c1d0e-7b61-4e4b-9d56-0f2a8c3e1b77",
     "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z", "labels": ["malicious-activity"],
     "pattern": STIX20_PATTERN, "valid_from": "2026-01-01T00:00:00Z"},
    {"type": "malware", "id": "malware--0c7b5e4a-3f1e-4d8a-9b2c-6e5f4a3b2c1d", "created": "2026-01-01T00:00:00.000Z",
     "modified": "2026-01-01T00:00:00.000Z", "labels": ["ransomware"], "name": "WannaCry"},
]


def medallion_objects(url: str, auth: tuple[str, str]) -> requests.Response:
    """A plain read of the whole collection, as any client (and the hub's own poller) makes it."""
    return requests.get(url + "objects/", auth=auth, headers={"Accept": TAXII}, timeout=30)


def test_a_hub_pushing_to_medallion_leaves_it_readable_and_takes_its_stix_2_0(tmp_path: Path) -> None:
    with run_medallion(tmp_path / "medallion") as medallion:
        auth = (medallion.user, medallion.password)
        Collection(medallion.collection_url, user=medallion.user, password=medallion.password).add_objects(
            {"objects": STIX20})
        peer = peer_block(id="cert-nl", name="CERT-NL", country="NL", api_root=medallion.api_root_url,
                          pull=[medallion.collection_id], push=[medallion.collection_id], poll_interval=0.2,
                          push_interval=0.2, auth={"username": medallion.user, "password_env": "MEDALLION_PASSWORD"},
                          timeout=10)
        with config_hub(hub_config(tmp_path / "hub", peer), env={"MEDALLION_PASSWORD": medallion.password}) as hub:
            ours = indicators(0, 1, tag="demo")
            post_all(hub, ours)
            ours_id = indicator_id(canonical_pattern(ours[0]["pattern"]))
            theirs_id = indicator_id(canonical_pattern(STIX20_PATTERN))

            def held() -> set[str]:
                response = medallion_objects(medallion.collection_url, auth)
                assert response.status_code == 200, response.text[:300]  # was 500 once the hub had pushed
                return {o["id"] for o in response.json().get("objects", [])}

            wait_for(lambda: ours_id in held(), within=30, what="the hub's canonical indicator on medallion")

            def from_nl() -> dict[str, Any] | None:
                return next((o for o in canonical_objects(hub) if o["id"] == theirs_id), None)

            merged = wait_for(from_nl, within=30, what="medallion's STIX 2.0 indicator in the canonical collection")
        assert merged["spec_version"] == "2.1" and merged["indicator_types"] == ["malicious-activity"]
        assert merged["extensions"][PROVENANCE_EXTENSION]["countries"] == ["NL"]
        types = {o["type"] for o in medallion_objects(medallion.collection_url, auth).json()["objects"]}
        assert "extension-definition" not in types  # static, served by the hub itself; medallion cannot hold one
