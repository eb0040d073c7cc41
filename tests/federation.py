"""Test harness for meshes of hubs: each hub its own identity and country, peers that pull and/or push."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from exchange.dedup.merge import PROVENANCE_EXTENSION, HubIdentity
from exchange.policy.credentials import hash_password
from tests.hubs import CANONICAL, INBOX, Hub
from tests.peering import PEER_PASSWORD, TAXII, hub_config, peer_block

ENV = {"MESH_PASSWORD": PEER_PASSWORD}


@dataclass(frozen=True)
class MeshHub:
    name: str  # also the hub's identity name and, lower-cased, its peer id elsewhere
    country: str
    port: int

    @property
    def peer_id(self) -> str:
        return self.name.lower()

    @property
    def identity(self) -> str:
        return HubIdentity(self.name).id

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"


@dataclass
class Link:
    """What `hub` does with `other`: pull its canonical collection, push to its inbox, or let it in."""

    other: MeshHub
    pull: bool = False
    push: bool = False
    agreement: dict[str, Any] = field(default_factory=lambda: {"max_tlp": "green"})
    interval: float = 0.2


def mesh_config(directory: Path, hub: MeshHub, links: list[Link], *, audience: str = "green", extra: str = "",
                alerts_collection: str | None = None) -> Path:
    """A hub config whose every linked hub is a [[peers]] entry and has a peer account here (kind = peer);
    `extra` TOML (accounts, [alerts], [[members]]) is appended, `alerts_collection` goes into [hub]."""
    for link in links:
        other = link.other
        extra += peer_block(
            id=other.peer_id, name=other.name, country=other.country, api_root=other.api, identity=other.identity,
            pull=[CANONICAL] if link.pull else [], push=[INBOX] if link.push else [], pull_into="inbox",
            trust=0.8, auth={"username": hub.peer_id, "password_env": "MESH_PASSWORD"}, poll_interval=link.interval,
            push_interval=link.interval, timeout=5,
            agreement={"readable_collections": ["canonical"], **link.agreement})
        extra += (f'\n[[accounts]]\nusername = "{other.peer_id}"\nkind = "peer"\npeer = "{other.peer_id}"\n'
                  f'password_hash = "{hash_password(PEER_PASSWORD)}"\ncan_write = ["inbox"]\n')
    path = hub_config(directory, extra)
    text = path.read_text().replace('identity_name = "Test CERT"', f'identity_name = "{hub.name}"')
    text = text.replace('canonical_collection = "canonical"',
                        f'canonical_collection = "canonical"\ncanonical_audience = "{audience}"'
                        + (f'\nalerts_collection = "{alerts_collection}"' if alerts_collection else ""))
    path.write_text(text)
    return path


def canonical_versions(hub: Hub, indicator_id: str) -> list[dict[str, Any]]:
    response = requests.get(hub.collection_url(CANONICAL) + f"objects/{indicator_id}/",
                            params={"match[version]": "all"}, auth=("alice", "alice-pw"),
                            headers={"Accept": TAXII}, timeout=10)
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    return list(response.json().get("objects", []))


def latest(hub: Hub, indicator_id: str) -> dict[str, Any] | None:
    versions = canonical_versions(hub, indicator_id)
    return max(versions, key=lambda v: v["modified"]) if versions else None


def claim_origins(obj: dict[str, Any] | None) -> set[tuple[str, str]]:
    """(source, origin) of every provenance claim of a canonical indicator."""
    if obj is None:
        return set()
    return {(c["source"], c["origin"]) for c in obj["extensions"][PROVENANCE_EXTENSION]["claims"]}
