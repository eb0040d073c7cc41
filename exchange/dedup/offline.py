"""Deduplicate converted objects without a hub (`exchange normalize`): same claims, same merge."""

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from exchange.dedup.claims import Claim, SightingClaim, Source, Warn, claim_from_indicator, claim_from_sighting
from exchange.dedup.merge import HubIdentity, merge
from exchange.errors import InvalidObject
from exchange.model.timestamps import parse_timestamp
from exchange.normalize.ids import NAMESPACE
from exchange.policy.tlp import Tlp


@dataclass
class OfflineResult:
    objects: list[dict[str, Any]]
    rejects: list[tuple[str, str]] = field(default_factory=list)  # (where, message)


def _version(obj: dict[str, Any]) -> int:
    try:
        return parse_timestamp(obj.get("modified") or obj.get("created") or "1970-01-01T00:00:00Z")
    except ValueError:
        return 0


def deduplicate(batches: Iterable[tuple[Source, list[dict[str, Any]]]], *, hub: HubIdentity,
                default_tlp: Tlp = Tlp.GREEN, warn: Warn | None = None) -> OfflineResult:
    """Indicators become canonical (every claim visible: the caller owns all the inputs); other
    objects are kept once per id, newest version."""
    claims: dict[str, list[Claim]] = defaultdict(list)
    sightings: list[SightingClaim] = []
    others: dict[str, dict[str, Any]] = {}
    result = OfflineResult(objects=[])
    for source, objects in batches:
        for index, obj in enumerate(objects):
            where = f"{source.name}:objects[{index}]"
            try:
                if obj.get("type") == "indicator" and (claim := claim_from_indicator(
                        obj, source, default_tlp=default_tlp, warn=warn)) is not None:
                    claims[claim.indicator_id].append(claim)
                    continue
                if obj.get("type") == "sighting" and (seen := claim_from_sighting(
                        obj, source, default_tlp=default_tlp)) is not None:
                    sightings.append(seen)
                    continue
            except InvalidObject as exc:
                result.rejects.append((where, str(exc)))
                continue
            current = others.get(obj["id"])
            if current is None or _version(obj) > _version(current):
                others[obj["id"]] = obj
    by_producer = {c.producer_id: c.indicator_id for group in claims.values() for c in group}
    for indicator_id, group in sorted(claims.items()):
        attached = [s for s in sightings if by_producer.get(s.sighting_of, s.sighting_of) == indicator_id]
        merged = merge(group, audience=Tlp.RED, hub=hub, created=min(c.created for c in group),
                       previous_modified=0, sightings=attached)
        if merged is not None:
            result.objects.append(merged.body)
    result.objects.extend(others[k] for k in sorted(others))
    return result


def bundle(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """A STIX 2.1 bundle whose id follows from its content, so the same inputs give the same output."""
    key = ",".join(f"{o['id']}@{o.get('modified', '')}" for o in objects)
    return {"type": "bundle", "id": f"bundle--{uuid.uuid5(NAMESPACE, key)}", "objects": objects}
