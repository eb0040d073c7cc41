"""The canonical indicator: merged from the claims an audience may see, authored by the hub.

Pure. A claim above the audience's TLP neither changes nor shows in the result (so a TLP:RED claim
never leaks into what a TLP:GREEN audience receives, while CLEAR and GREEN claims stay shareable).
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import msgspec
import orjson

from exchange.dedup.claims import Claim, SightingClaim
from exchange.model.stix import StixRecord
from exchange.model.timestamps import format_timestamp
from exchange.normalize.ids import NAMESPACE, uuid5_text
from exchange.policy.tlp import Tlp, marking_id

# The provenance property extension (STIX 2.1 section 7.3); definition and JSON Schema in schemas/.
PROVENANCE_EXTENSION = "extension-definition--6a437e0c-ef20-4ed6-8352-4415f4043e9a"
PROJECT_IDENTITY = "identity--c39d4954-eedb-43f3-a885-0bfa60b545cb"  # the author of that extension
MIN_STEP = 1_000  # µs: consecutive canonical versions differ by at least a millisecond in `modified`
# Each audience's view of an indicator has its own `modified` sequence (a shared one would let a GREEN version's
# `modified` show when an AMBER claim arrived), kept apart by the microseconds within the millisecond: view
# `lane` only ever uses modified ≡ lane (mod LANES), so one id and `modified` never name two contents.
LANES = MIN_STEP
_BY_SOURCE = attrgetter("key", "producer_id")
_TLP_LABELS = {level: level.label for level in Tlp}  # Tlp.label is a property: once per claim adds up
_BY_AGE = attrgetter("created", "key")


@dataclass(frozen=True, slots=True)
class HubIdentity:
    name: str
    # Deterministic from the hub's name, so a restarted or re-installed hub keeps authoring as itself; computed
    # once, as every merged indicator asks for it several times.
    id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", _hub_id(self.name))

    def stix(self, created: str = "2024-01-01T00:00:00.000Z") -> dict[str, Any]:
        return {"type": "identity", "spec_version": "2.1", "id": self.id, "created": created, "modified": created,
                "name": self.name, "identity_class": "organization"}


def _hub_id(name: str) -> str:
    return f"identity--{uuid5_text(NAMESPACE.bytes, 'hub:' + name)}"


class Merged(msgspec.Struct, frozen=True):  # a struct: one per materialized indicator (see claims.Claim)
    body: dict[str, Any]
    content_hash: bytes  # of everything but `modified`: an unchanged merge makes no new version
    created: int
    record: StixRecord  # the body as the store keeps it, serialized once: its content hash is content_hash


def combined_confidence(claims: Sequence[Claim]) -> int | None:
    """Independent-evidence combination over sources: 1 - prod(1 - trust * confidence), each source counted once
    with its strongest claim. Claims are evidence only as far as their sources are independent: one source
    re-posting a value under new ids must not raise the confidence."""
    strongest: dict[str, float] = {}
    for c in claims:
        if c.confidence is not None:
            weight = _weight(c.trust, c.confidence)
            if weight > strongest.get(c.key, -1.0):
                strongest[c.key] = weight
    if not strongest:
        return None
    doubt = 1.0
    for weight in strongest.values():
        doubt *= 1 - weight
    return round(100 * (1 - doubt))


def _weight(trust: float, confidence: int) -> float:
    return min(max(trust * confidence / 100, 0.0), 1.0)


def _provenance(claim: Claim, hub: HubIdentity) -> dict[str, Any]:
    entry: dict[str, Any] = {"source": claim.source, "original_id": claim.producer_id,
                             "original_modified": format_timestamp(claim.modified), "tlp": _TLP_LABELS[claim.tlp],
                             "origin": claim.origin or hub.id, "path": [*claim.path, hub.id]}
    # Optional members, in this order, only when the claim has them.
    if claim.country is not None:
        entry["country"] = claim.country
    if claim.confidence is not None:
        entry["confidence"] = claim.confidence
    if claim.role is not None:
        entry["role"] = claim.role
    if claim.valid_from is not None:
        entry["valid_from"] = format_timestamp(claim.valid_from)
    if claim.valid_until is not None:
        entry["valid_until"] = format_timestamp(claim.valid_until)
    if claim.labels:
        entry["labels"] = list(claim.labels)
    if claim.revoked:
        entry["revoked"] = claim.revoked
    return entry


def _sightings(sightings: Sequence[SightingClaim]) -> dict[str, Any] | None:
    live = [s for s in sightings if not s.revoked]
    if not live:
        return None
    seen = [t for s in live for t in (s.first_seen, s.last_seen) if t is not None]
    out: dict[str, Any] = {"count": sum(s.count for s in live), "sources": sorted({s.source for s in live})}
    countries = sorted({s.country for s in live if s.country})
    if countries:
        out["countries"] = countries
    if seen:
        out["first_seen"], out["last_seen"] = format_timestamp(min(seen)), format_timestamp(max(seen))
    return out


def merge(claims: Sequence[Claim], *, audience: Tlp, hub: HubIdentity, created: int | None,
          previous_modified: int, sightings: Sequence[SightingClaim] = (), lane: int = 0) -> Merged | None:
    """The canonical indicator as `audience` may see it, or None when it may see no claim of it.

    `created` is the canonical object's, fixed at its first version; None for a first version, which then
    takes the earliest visible claim's (never an invisible one's: that would leak its existence).
    `previous_modified` is this view's last version's (0 before its first) and `lane` the view's (see LANES)."""
    visible = [c for c in claims if c.tlp <= audience]
    if not visible:
        return None
    visible_sightings = [s for s in sightings if s.tlp <= audience] if sightings else []
    if len(visible) == 1:
        body, created = _one_claim(visible[0], hub, created, visible_sightings)
    else:
        visible.sort(key=_BY_SOURCE)
        body, created = _many_claims(visible, hub, created, visible_sightings)
    return _finish(body, visible, created, previous_modified, lane)


def _finish(body: dict[str, Any], visible: Sequence[Claim], created: int, previous_modified: int,
            lane: int = 0) -> Merged:
    # One serialization serves the hash and the stored record: `modified` goes last, so the bytes before it are
    # everything but `modified`. The body's keys are in the order this module writes them, the same every time.
    head = orjson.dumps(body)
    digest = hashlib.sha256(head).digest()[:16]
    newest_claim = max(c.modified for c in visible) if len(visible) > 1 else visible[0].modified
    modified = max(previous_modified + MIN_STEP, newest_claim, created)
    modified += (lane - modified) % LANES  # the first instant of the view's lane from there on
    body["modified"] = text = format_timestamp(modified)
    # A hub-made version's id and `modified` name one content, so its content hash serves as the record's too.
    record = StixRecord(body["id"], "indicator", "2.1", modified, "revoked" in body, digest,
                        b'%s,"modified":"%s"}' % (head[:-1], text.encode()))
    return Merged(body, digest, created, record)


def _head(first: Claim, hub: HubIdentity, created: int, valid_from: int, claims: int, sources: int) -> dict[str, Any]:
    return {
        "type": "indicator", "spec_version": "2.1", "id": first.indicator_id, "created_by_ref": hub.id,
        "created": format_timestamp(created), "pattern": first.pattern, "pattern_type": "stix",
        "pattern_version": "2.1", "valid_from": format_timestamp(valid_from), "name": first.name or first.pattern,
        "description": f"Merged by {hub.name} from {claims} claim(s) of {sources} source(s); provenance in the "
                       "extension.",
    }


def _extension(body: dict[str, Any], provenance: dict[str, Any], sightings: Sequence[SightingClaim]) -> None:
    if sightings and (seen := _sightings(sightings)) is not None:
        provenance["sightings"] = seen
    body["extensions"] = {PROVENANCE_EXTENSION: provenance}


def _one_claim(claim: Claim, hub: HubIdentity, created: int | None,
               sightings: Sequence[SightingClaim]) -> tuple[dict[str, Any], int]:
    """What _many_claims makes of a single claim, without its sets and sorts: most indicators have one source.
    The tests hold the two to the same output."""
    if created is None:
        created = claim.created
    start = created if claim.valid_from is None else claim.valid_from
    body = _head(claim, hub, created, start, 1, 1)
    if claim.valid_until is not None and claim.valid_until > start:
        body["valid_until"] = format_timestamp(claim.valid_until)
    if claim.indicator_types:  # a claim's lists are sorted and distinct already (see Claim)
        body["indicator_types"] = list(claim.indicator_types)
    if claim.labels:
        body["labels"] = list(claim.labels)
    if claim.kill_chain:
        body["kill_chain_phases"] = [{"kill_chain_name": k, "phase_name": p} for k, p in claim.kill_chain]
    live = not claim.revoked
    if live and claim.confidence is not None:
        body["confidence"] = round(100 * (1 - (1 - _weight(claim.trust, claim.confidence))))  # as combined
    if not live:
        body["revoked"] = True
    body["object_marking_refs"] = [marking_id(claim.tlp)]
    provenance: dict[str, Any] = {"extension_type": "property-extension", "claims": [_provenance(claim, hub)],
                                  "source_count": 1 if live else 0}
    if live and claim.country:
        provenance["countries"] = [claim.country]
    if claim.warnings:
        provenance["warninglists"] = list(claim.warnings)
    _extension(body, provenance, sightings)
    return body, created


def _many_claims(visible: Sequence[Claim], hub: HubIdentity, created: int | None,
                 sightings: Sequence[SightingClaim]) -> tuple[dict[str, Any], int]:
    """The merge rule, over claims sorted by _BY_SOURCE. One pass gathers what the rule takes from the claims:
    a comprehension per property cost more than the rest of a two-claim merge."""
    live = [c for c in visible if not c.revoked]
    basis = live or visible  # revoked only when no live claim is left
    if created is None:
        created = min([c.created for c in visible])
    first = basis[0]
    first_age = (first.created, first.key)
    start = end = None
    open_ended = False
    keys: set[str] = set()
    types: set[str] = set()
    labels: set[str] = set()
    phases: set[tuple[str, str]] = set()
    for c in basis:
        key = c.key
        keys.add(key)
        if c.created < first_age[0] or (c.created == first_age[0] and key < first_age[1]):
            first, first_age = c, (c.created, key)
        if c.valid_from is not None and (start is None or c.valid_from < start):
            start = c.valid_from
        if c.valid_until is None:
            open_ended = True
        elif end is None or c.valid_until > end:
            end = c.valid_until
        types.update(c.indicator_types)
        labels.update(c.labels)
        phases.update(c.kill_chain)
    if start is None:
        start = created
    body = _head(first, hub, created, start, len(basis), len(keys))
    if not open_ended and end is not None and end > start:
        body["valid_until"] = format_timestamp(end)  # open-ended as soon as one source says so
    if types:
        body["indicator_types"] = sorted(types)
    if labels:
        body["labels"] = sorted(labels)
    if phases:
        body["kill_chain_phases"] = [{"kill_chain_name": k, "phase_name": p} for k, p in sorted(phases)]
    confidence = combined_confidence(live)
    if confidence is not None:
        body["confidence"] = confidence
    if not live:
        body["revoked"] = True
    tlp = visible[0].tlp
    warnings: set[str] = set()
    provenance_claims = []
    for c in visible:
        if c.tlp > tlp:
            tlp = c.tlp
        warnings.update(c.warnings)
        provenance_claims.append(_provenance(c, hub))
    body["object_marking_refs"] = [marking_id(tlp)]
    provenance: dict[str, Any] = {
        "extension_type": "property-extension",
        "claims": provenance_claims,
        "source_count": len(keys) if live else 0,
    }
    countries = sorted({c.country for c in live if c.country})
    if countries:  # STIX 2.1 section 3.3: empty lists are not allowed
        provenance["countries"] = countries
    if warnings:
        provenance["warninglists"] = sorted(warnings)
    _extension(body, provenance, sightings)
    return body, created
