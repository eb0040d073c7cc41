"""TLP at the TAXII read egress: every marking x every recipient relationship, over HTTP, on a real hub."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from exchange.policy.tlp import TLP2_IDS, Tlp
from tests.hubs import INBOX, PASSWORDS, Hub
from tests.peering import PEER_PASSWORD, TAXII, config_hub, hub_config, peer_block, post_all

LEVELS = {"clear": Tlp.CLEAR, "green": Tlp.GREEN, "amber": Tlp.AMBER, "strict": Tlp.AMBER_STRICT, "red": Tlp.RED}
TLP1_WHITE = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"


def obj(n: int, markings: list[str] | None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "indicator", "spec_version": "2.1",
                           "id": f"indicator--00000000-0000-4000-8000-{n:012d}", "created": "2026-01-01T00:00:00.000Z",
                           "modified": "2026-01-01T00:00:00.000Z", "pattern": f"[domain-name:value = 't{n}.example']",
                           "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z", **extra}
    if markings is not None:
        out["object_marking_refs"] = markings
    return out


OBJECTS = {
    "clear": obj(1, [TLP2_IDS[Tlp.CLEAR]]),
    "white-1.0": obj(2, [TLP1_WHITE]),
    "unmarked": obj(3, None),  # the hub's default_tlp: green
    "green": obj(4, [TLP2_IDS[Tlp.GREEN]]),
    "amber": obj(5, [TLP2_IDS[Tlp.AMBER]]),
    "amber+strict": obj(6, [TLP2_IDS[Tlp.AMBER_STRICT]]),
    "red": obj(7, [TLP2_IDS[Tlp.RED]]),
    "red-for-amberorg": obj(8, [TLP2_IDS[Tlp.RED]], x_exchange_recipients=["amberorg"]),
    "red-for-cert-nl": obj(9, [TLP2_IDS[Tlp.RED]], x_exchange_recipients=["cert-nl"]),
}
PUBLIC = {"clear", "white-1.0", "unmarked", "green"}
EXPECTED = {
    "alice": set(OBJECTS),  # operator: the hub's own organization
    "greenorg": PUBLIC,  # member entitled to GREEN
    "amberorg": PUBLIC | {"amber"},  # member entitled to AMBER; RED named to it stays above its entitlement
    "peer-fr": PUBLIC,  # peer, agreement max GREEN
    "peer-nl": PUBLIC | {"red-for-cert-nl"},  # peer, agreement max RED without AMBER for constituents
    "peer-be": PUBLIC | {"amber"},  # peer, agreement max AMBER with AMBER for its constituents
}


def peer_setup(peer_id: str, country: str, agreement: dict[str, Any]) -> str:
    account = (f'\n[[accounts]]\nusername = "{peer_id}"\nkind = "peer"\npeer = "{peer_id.replace("peer-", "cert-")}"'
               f'\npassword_hash = "{_hash()}"\n')
    return peer_block(id=peer_id.replace("peer-", "cert-"), name=peer_id.upper(), country=country,
                      api_root="http://127.0.0.1:9/api/", agreement={"readable_collections": ["inbox"], **agreement}
                      ) + account


def _hash() -> str:
    from exchange.policy.credentials import hash_password

    return hash_password(PEER_PASSWORD)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    extra = (peer_setup("peer-fr", "FR", {"max_tlp": "green"})
             + peer_setup("peer-nl", "NL", {"max_tlp": "red"})
             + peer_setup("peer-be", "BE", {"max_tlp": "amber", "amber_constituents": True}))
    path: Path = hub_config(tmp_path_factory.mktemp("tlp"), extra)
    with config_hub(path) as running:
        post_all(running, list(OBJECTS.values()))
        yield running


def auth(user: str) -> tuple[str, str]:
    return (user, PASSWORDS.get(user, PEER_PASSWORD))


def names(objects: list[dict[str, Any]]) -> set[str]:
    by_id = {o["id"]: name for name, o in OBJECTS.items()}
    return {by_id[o["id"]] for o in objects}


@pytest.mark.parametrize("user", list(EXPECTED))
def test_objects_endpoint_serves_only_what_the_recipient_may_receive(hub: Hub, user: str) -> None:
    response = requests.get(hub.collection_url(INBOX) + "objects/", auth=auth(user), headers={"Accept": TAXII},
                            timeout=10)
    assert response.status_code == 200, response.text
    assert names(response.json().get("objects", [])) == EXPECTED[user]


@pytest.mark.parametrize("user", list(EXPECTED))
def test_manifest_and_object_endpoints_follow_the_same_rules(hub: Hub, user: str) -> None:
    manifest = requests.get(hub.collection_url(INBOX) + "manifest/", auth=auth(user), headers={"Accept": TAXII},
                            timeout=10).json().get("objects", [])
    assert names(manifest) == EXPECTED[user]
    red = OBJECTS["red"]["id"]
    single = requests.get(hub.collection_url(INBOX) + f"objects/{red}/", auth=auth(user), headers={"Accept": TAXII},
                          timeout=10)
    assert names(single.json().get("objects", [])) == (EXPECTED[user] & {"red"})


def test_paging_skips_what_is_hidden_without_losing_the_rest(hub: Hub) -> None:
    seen: list[dict[str, Any]] = []
    params: dict[str, str] = {"limit": "2"}
    for _ in range(20):
        page = requests.get(hub.collection_url(INBOX) + "objects/", auth=auth("greenorg"), params=params,
                            headers={"Accept": TAXII}, timeout=10).json()
        seen += page.get("objects", [])
        if not page.get("more"):
            break
        params = {"limit": "2", "next": page["next"]}
    assert names(seen) == PUBLIC and len(seen) == len(PUBLIC)
