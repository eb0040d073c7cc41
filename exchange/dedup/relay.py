"""Claims that cross hubs: a peer hub's canonical indicator is unpacked into the claims it carries.

Pure. Taking the peer's merged object as one claim "peer said X" would make a ring of hubs loop forever
(each new version at A changes B's claim, B's version changes C's, C's changes A's). Instead every
provenance entry becomes a claim of its original source, with the origin hub and the path of hubs it
crossed; entries whose path names this hub are echoes and are dropped, so the ring converges.
"""

from typing import Any

from exchange.dedup.claims import Claim, Source, Warn, indicator_facets
from exchange.dedup.merge import PROVENANCE_EXTENSION
from exchange.errors import InvalidObject
from exchange.model.timestamps import parse_timestamp
from exchange.normalize.ids import indicator_id
from exchange.normalize.patterns import canonical_pattern_with_role, single_value
from exchange.policy.egress import Recipient, may_receive_object
from exchange.policy.tlp import Tlp


def provenance_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The provenance extension of a hub-authored canonical indicator, else None."""
    if obj.get("type") != "indicator":
        return None
    extensions = obj.get("extensions")
    found = extensions.get(PROVENANCE_EXTENSION) if isinstance(extensions, dict) else None
    return found if isinstance(found, dict) else None


def _time(entry: dict[str, Any], prop: str, index: int) -> int | None:
    value = entry.get(prop)
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except (ValueError, TypeError):
        raise InvalidObject(f"provenance claims[{index}].{prop}: not a STIX timestamp: {value!r}") from None


def _entry_strings(entry: dict[str, Any], prop: str, index: int) -> tuple[str, ...]:
    value = entry.get(prop, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidObject(f"provenance claims[{index}].{prop}: must be a list of strings")
    return tuple(value)


def relayed_claims(obj: dict[str, Any], provenance: dict[str, Any], sender: Source, *, hub_id: str,
                   warn: Warn | None = None, not_after: int | None = None) -> list[Claim]:
    """The claims a peer hub's canonical indicator carries, minus those that already crossed this hub.

    `not_after`: the latest `original_modified` taken, as for a claim of this hub's own (claims.FUTURE_SKEW)."""
    entries = provenance.get("claims")
    if not isinstance(entries, list):
        raise InvalidObject("provenance extension: 'claims' must be a list")
    author = obj.get("created_by_ref")
    pattern = obj.get("pattern")
    if not isinstance(pattern, str):
        raise InvalidObject("indicator has no 'pattern'")
    canonical, _ = canonical_pattern_with_role(pattern)
    ident = indicator_id(canonical)
    facets = indicator_facets(obj)
    hits = warn(*value) if warn is not None and (value := single_value(canonical)) is not None else ()
    warnings = tuple(sorted({h.list_name for h in hits}))
    created = parse_timestamp(obj["created"]) if isinstance(obj.get("created"), str) else 0
    claims = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InvalidObject(f"provenance claims[{index}]: not an object")
        path = _entry_strings(entry, "path", index) or ((author,) if isinstance(author, str) else ())
        origin = entry.get("origin") or (path[0] if path else None)
        if hub_id in path or origin == hub_id:
            continue  # our own claim coming back round the ring
        source, producer = entry.get("source"), entry.get("original_id")
        if not isinstance(source, str) or not isinstance(producer, str) or not isinstance(origin, str):
            raise InvalidObject(f"provenance claims[{index}]: needs source, original_id and origin")
        try:
            tlp = Tlp.parse(entry.get("tlp", ""))
        except (ValueError, AttributeError):
            raise InvalidObject(f"provenance claims[{index}].tlp: not a TLP label: {entry.get('tlp')!r}") from None
        confidence = entry.get("confidence")
        if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, int)
                                       or not 0 <= confidence <= 100):
            raise InvalidObject(f"provenance claims[{index}].confidence: must be an integer 0-100")
        country = entry.get("country")
        modified = _time(entry, "original_modified", index) or created
        if not_after is not None and modified > not_after:
            raise InvalidObject(f"provenance claims[{index}].original_modified: more than a day ahead of this "
                                "hub's clock")
        claims.append(Claim(
            indicator_id=ident, pattern=canonical, source=source, country=country if isinstance(country, str) else None,
            trust=sender.trust, producer_id=producer, created=created,
            modified=modified, revoked=entry.get("revoked") is True,
            tlp=tlp, confidence=confidence, valid_from=_time(entry, "valid_from", index),
            valid_until=_time(entry, "valid_until", index), name=facets.name,
            labels=tuple(sorted(set(_entry_strings(entry, "labels", index)))),
            indicator_types=facets.indicator_types, kill_chain=facets.kill_chain,
            role=entry.get("role") if isinstance(entry.get("role"), str) else None, warnings=warnings,
            origin=origin, path=path))
    return claims


def strip_echo(obj: dict[str, Any], hub_identity: str) -> dict[str, Any] | None:
    """What a peer hub may be sent of a canonical indicator: without the claims that crossed it already;
    None when nothing else is left (sending it would only echo the peer's own knowledge back)."""
    provenance = provenance_of(obj)
    if provenance is None or not isinstance(provenance.get("claims"), list):
        return obj
    claims = provenance["claims"]
    kept = [c for c in claims if not (isinstance(c, dict) and hub_identity in (c.get("path") or ()))]
    if len(kept) == len(claims):
        return obj
    if not kept:
        return None
    return {**obj, "extensions": {**obj["extensions"], PROVENANCE_EXTENSION: {**provenance, "claims": kept}}}


def view_for(recipient: Recipient, obj: dict[str, Any], default_tlp: Tlp) -> dict[str, Any] | None:
    """What one recipient may be sent of one object, on any egress path: None when TLP or the agreement
    forbids it, or when all it would carry is the recipient hub's own claims."""
    if not may_receive_object(recipient, obj, default_tlp):
        return None
    if recipient.hub_identity is not None:
        return strip_echo(obj, recipient.hub_identity)
    return obj
