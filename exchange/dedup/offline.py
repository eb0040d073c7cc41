"""Deduplicate converted objects without a hub (`exchange normalize`): same claims, same merge."""

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from exchange.config import SCHEMA_DIR
from exchange.dedup.claims import (
    FUTURE_SKEW,
    Claim,
    SightingClaim,
    Source,
    Warn,
    claim_from_indicator,
    claim_from_sighting,
)
from exchange.dedup.merge import HubIdentity, merge
from exchange.errors import InvalidObject
from exchange.model.timestamps import now_micros, parse_timestamp
from exchange.normalize.ids import NAMESPACE
from exchange.policy.tlp import Tlp, marking_definition, marking_id


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
    not_after = now_micros() + FUTURE_SKEW
    for source, objects in batches:
        for index, obj in enumerate(objects):
            where = f"{source.name}:objects[{index}]"
            try:
                if obj.get("type") == "indicator" and (claim := claim_from_indicator(
                        obj, source, default_tlp=default_tlp, warn=warn, not_after=not_after)) is not None:
                    claims[claim.indicator_id].append(claim)
                    continue
                if obj.get("type") == "sighting" and (seen := claim_from_sighting(
                        obj, source, default_tlp=default_tlp, not_after=not_after)) is not None:
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
    # The producers' indicators are not in the bundle, their canonical indicators are: what pointed at one
    # points at the other (its provenance names the producer's id), or the bundle's references would dangle.
    result.objects.extend(_repointed(others[k], by_producer) for k in sorted(others))
    if claims:
        result.objects[:0] = _referenced(result.objects, hub)
    return result


def _repointed(obj: dict[str, Any], canonical: dict[str, str]) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for key, value in obj.items():
        if key.endswith("_ref") and isinstance(value, str) and value in canonical:
            changed[key] = canonical[value]
        elif key.endswith("_refs") and isinstance(value, list) and any(v in canonical for v in value
                                                                        if isinstance(v, str)):
            changed[key] = list(dict.fromkeys(canonical.get(v, v) if isinstance(v, str) else v for v in value))
    return {**obj, **changed} if changed else obj


def _referenced(objects: list[dict[str, Any]], hub: HubIdentity) -> list[dict[str, Any]]:
    """What canonical indicators reference, so the bundle stands alone: the author's identity, the provenance
    extension's definition (and its author) and the TLP 2.0 marking definitions in use."""
    have = {o.get("id") for o in objects}
    used = {ref for o in objects for ref in o.get("object_marking_refs") or () if isinstance(ref, str)}
    fixed = orjson.loads((SCHEMA_DIR / "provenance-extension-definition.json").read_bytes())["objects"]
    extra = [hub.stix(), *fixed, *(marking_definition(level) for level in Tlp if marking_id(level) in used)]
    return [o for o in extra if o["id"] not in have]


def bundle(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """A STIX 2.1 bundle whose id follows from its content, so the same inputs give the same output."""
    key = ",".join(f"{o['id']}@{o.get('modified', '')}" for o in objects)
    return {"type": "bundle", "id": f"bundle--{uuid.uuid5(NAMESPACE, key)}", "objects": objects}
