"""Observations read from a canonical indicator (pure): one per live provenance claim.

Correlation reads what dedup published, not the raw claims: the canonical collection is the stage boundary,
and a relayed claim names its original source and origin hub there, so every hub counts a reporter once.
"""

from typing import Any

from exchange.correlate.threats import Observation, TaggedNames, names_from_labels, reporter_name
from exchange.dedup.merge import PROVENANCE_EXTENSION
from exchange.model.timestamps import parse_timestamp
from exchange.policy.tlp import Tlp


def _time(value: Any, fallback: int) -> int:
    try:
        return parse_timestamp(value) if isinstance(value, str) else fallback
    except ValueError:
        return fallback


def _names(obj: dict[str, Any], entry: dict[str, Any]) -> TaggedNames:
    labels = [*(obj.get("labels") or ()), *(entry.get("labels") or ())]
    return names_from_labels(label for label in labels if isinstance(label, str))


def observations_from_canonical(obj: dict[str, Any], hub_id: str) -> list[Observation]:
    """The reports a canonical indicator carries (none when it is revoked or has no provenance)."""
    if obj.get("type") != "indicator" or obj.get("revoked") is True:
        return []
    provenance = (obj.get("extensions") or {}).get(PROVENANCE_EXTENSION)
    if not isinstance(provenance, dict):
        return []
    created = _time(obj.get("created"), 0)
    warninglists = tuple(w for w in provenance.get("warninglists") or () if isinstance(w, str))
    out = []
    for entry in provenance.get("claims") or ():
        if not isinstance(entry, dict) or entry.get("revoked") is True or not isinstance(entry.get("source"), str):
            continue
        try:
            tlp = Tlp.parse(str(entry.get("tlp", "")))
        except ValueError:
            continue
        names = _names(obj, entry)
        confidence = entry.get("confidence")
        out.append(Observation(
            indicator_id=obj["id"], source=reporter_name(entry["source"], str(entry.get("origin") or hub_id)),
            country=entry.get("country") if isinstance(entry.get("country"), str) else None,
            time=_time(entry.get("original_modified"), created), tlp=tlp,
            confidence=confidence if isinstance(confidence, int) and not isinstance(confidence, bool) else None,
            families=names.families, campaigns=names.campaigns, intrusion_sets=names.intrusion_sets,
            warninglists=warninglists))
    return out
