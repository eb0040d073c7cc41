"""Claims: what one source said about one canonical indicator (or sighted it), read from its STIX object.

Pure functions; they run in the processor's worker thread. A claim keeps the producer's own id and
version, so a newer version from the same producer replaces its claim and a revocation retracts it.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import msgspec

from exchange.errors import InvalidObject
from exchange.model.stix import timestamp_property as _time
from exchange.normalize.ids import indicator_id
from exchange.normalize.patterns import canonical_pattern_with_role, single_value
from exchange.normalize.values import ValueKind
from exchange.policy.tlp import Tlp, tlp_of_markings


@dataclass(frozen=True, slots=True)
class Source:
    """Who sends: an account today, a peer hub with #4; country is ISO 3166-1 alpha-2."""

    name: str
    country: str | None = None
    trust: float = 1.0  # weight of this source's confidence in the merged confidence
    relay: bool = False  # a peer hub: the provenance in its canonical indicators is unpacked (dedup/relay.py)


# msgspec structs, not dataclasses: every indicator builds one, and a frozen dataclass of this width costs ~5x
# more to construct (each field goes through object.__setattr__). gc=False: only strings, numbers and tuples.
class Claim(msgspec.Struct, frozen=True, gc=False):
    # Every tuple of strings here is sorted and distinct, as every reader of claims builds it: merge relies on it.
    indicator_id: str
    pattern: str  # canonical
    source: str
    country: str | None
    trust: float
    producer_id: str
    created: int
    modified: int
    revoked: bool
    tlp: Tlp
    confidence: int | None
    valid_from: int | None
    valid_until: int | None
    name: str | None
    labels: tuple[str, ...]
    indicator_types: tuple[str, ...]
    kill_chain: tuple[tuple[str, str], ...]
    role: str | None  # e.g. 'dst' for misp-stix network-traffic dst_ref forms
    warnings: tuple[str, ...]  # names of the warninglists the value is on
    # Federation: the hub where the claim was made (None: this hub) and the hubs it has crossed, origin
    # first. A hub never takes back a claim whose path names it, so a mesh of hubs converges.
    origin: str | None = None
    path: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Who the claim belongs to: source names are only unique within the hub that made the claim."""
        return self.source if self.origin is None else f"{self.source}@{self.origin}"


class SightingClaim(msgspec.Struct, frozen=True, gc=False):
    sighting_id: str
    sighting_of: str  # the id the sender used: its own indicator id, or a canonical one
    source: str
    country: str | None
    modified: int
    revoked: bool
    tlp: Tlp
    count: int
    first_seen: int | None
    last_seen: int | None


def _strings(obj: dict[str, Any], prop: str) -> tuple[str, ...]:
    """A list-of-strings property as a sorted tuple of its distinct values."""
    value = obj.get(prop)
    if not value:
        return ()
    if type(value) is list:
        try:
            return _distinct_strings(tuple(value))
        except TypeError:  # an unhashable member (a list, an object) or a member that is not a string
            pass
    raise InvalidObject(f"'{prop}' must be a list of strings")


@lru_cache(maxsize=1024)  # peers send a few label and type lists over and over
def _distinct_strings(values: tuple[Any, ...]) -> tuple[str, ...]:
    if not all(type(v) is str for v in values):
        raise TypeError("not all strings")  # raised, so never cached
    return tuple(sorted(set(values)))


# STIX 2.1 section 10.12 indicator-type-ov. Values outside it are kept, as labels, so the canonical
# object stays within the vocabulary consumers filter on.
INDICATOR_TYPES = frozenset({"anomalous-activity", "anonymization", "benign", "compromised", "malicious-activity",
                             "attribution", "unknown"})


def _tlp(obj: dict[str, Any], default: Tlp) -> Tlp:
    # Not `or default`: TLP:CLEAR is 0, and an explicit CLEAR must never become the default.
    found = tlp_of_markings(obj.get("object_marking_refs"))
    return default if found is None else found


def _slug(text: str) -> str:
    # STIX 2.1 section 4.3 recommends lower-case, hyphen-separated names: 'Network activity' == 'network-activity'.
    return "-".join(text.lower().replace("_", " ").split())


def _kill_chain(obj: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    phases = obj.get("kill_chain_phases")
    if not phases:
        return ()
    try:
        if len(phases) == 1:  # the common case: no set to build, nothing to sort
            return (_phase(phases[0]["kill_chain_name"], phases[0]["phase_name"]),)
        return tuple(sorted({_phase(p["kill_chain_name"], p["phase_name"]) for p in phases}))
    except (TypeError, KeyError):
        raise InvalidObject("'kill_chain_phases' entries need kill_chain_name and phase_name strings") from None


@lru_cache(maxsize=1024)  # peers name a handful of phases over and over
def _phase(chain: Any, phase: Any) -> tuple[str, str]:
    if type(chain) is not str or type(phase) is not str:
        raise TypeError("not strings")  # raised, so never cached
    return _slug(chain), _slug(phase)


def _confidence(obj: dict[str, Any]) -> int | None:
    value = obj.get("confidence")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidObject(f"'confidence' must be an integer 0-100, not {value!r}")
    return value


class _Hit(Protocol):
    @property
    def list_name(self) -> str: ...


Warn = Callable[[ValueKind, str], Iterable[_Hit]]  # a warninglist matcher (normalize/warninglists.py)


class Facets(msgspec.Struct, frozen=True, gc=False):
    """What an indicator says beyond its pattern, shared by every claim read from it."""

    name: str | None
    indicator_types: tuple[str, ...]  # within the STIX vocabulary
    other_types: tuple[str, ...]  # outside it: kept as labels
    kill_chain: tuple[tuple[str, str], ...]


def indicator_facets(obj: dict[str, Any]) -> Facets:
    name = obj.get("name")
    types, other = _split_types(_strings(obj, "indicator_types"))
    return Facets(name if type(name) is str else None, types, other, _kill_chain(obj))  # positional: see Claim


@lru_cache(maxsize=256)
def _split_types(types: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(within the vocabulary, outside it) of sorted distinct indicator types."""
    return tuple(t for t in types if t in INDICATOR_TYPES), tuple(t for t in types if t not in INDICATOR_TYPES)


FUTURE_SKEW = 86_400_000_000  # µs: a day of clock skew; a claim dated later would pin every canonical version after it


def _versioned(obj: dict[str, Any], not_after: int | None) -> tuple[int, int]:
    """(created, modified) of an SDO or SRO that makes a claim: both required (STIX 2.1 section 3.2), modified not
    before created, and neither later than `not_after`: a canonical indicator's `modified` is never before its
    newest claim's, so one claim from 2099 would date every later version of it 2099."""
    created, modified = _time(obj, "created"), _time(obj, "modified")
    if created is None or modified is None:
        raise InvalidObject(f"missing required property '{'created' if created is None else 'modified'}'")
    if modified < created:
        raise InvalidObject("'modified' is before 'created'")
    if not_after is not None and modified > not_after:
        raise InvalidObject(f"'modified' {obj['modified']} is more than a day ahead of this hub's clock")
    return created, modified


def claim_from_indicator(obj: dict[str, Any], source: Source, *, default_tlp: Tlp,
                         warn: Warn | None = None, not_after: int | None = None) -> Claim | None:
    """The claim an indicator makes; None for non-STIX pattern languages (kept verbatim only).

    `not_after`: the latest `modified` taken (now plus FUTURE_SKEW), None for no limit."""
    pattern_type = obj.get("pattern_type")
    if pattern_type != "stix":
        if pattern_type is None:
            raise InvalidObject("missing required property 'pattern_type'")
        if type(pattern_type) is not str or not pattern_type:
            raise InvalidObject(f"invalid 'pattern_type' {pattern_type!r}: expected a pattern language name")
        return None
    pattern = obj.get("pattern")
    if type(pattern) is not str or not pattern or pattern.isspace():
        raise InvalidObject("indicator has no 'pattern'")
    created, modified = _versioned(obj, not_after)
    valid_from, valid_until = _time(obj, "valid_from"), _time(obj, "valid_until")
    if valid_from is None:
        raise InvalidObject("missing required property 'valid_from'")
    if valid_until is not None and valid_until <= valid_from:
        raise InvalidObject("'valid_until' must be later than 'valid_from'")
    canonical, role = canonical_pattern_with_role(pattern)
    facets = indicator_facets(obj)
    labels = _strings(obj, "labels")
    if facets.other_types:
        labels = tuple(sorted({*labels, *facets.other_types}))
    warnings: tuple[str, ...] = ()
    if warn is not None and (value := single_value(canonical)) is not None:
        hits = warn(*value)
        warnings = tuple(sorted({h.list_name for h in hits})) if hits else ()
    # Positional: with keywords, building the struct cost ~4x more (0.6 µs of ~20 per indicator). The order is
    # Claim's field order, and test_claims checks every field of a claim read this way.
    return Claim(
        indicator_id(canonical), canonical, source.name, source.country, source.trust,
        obj["id"], created, modified, bool(obj.get("revoked", False)),
        _tlp(obj, default_tlp), _confidence(obj), valid_from, valid_until,
        facets.name, labels, facets.indicator_types, facets.kill_chain, role, warnings,
    )


def claim_from_sighting(obj: dict[str, Any], source: Source, *, default_tlp: Tlp,
                        not_after: int | None = None) -> SightingClaim | None:
    target = obj.get("sighting_of_ref")
    if not isinstance(target, str) or not target.startswith("indicator--"):
        return None  # sightings of other SDOs are kept verbatim only
    count = obj.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 999_999_999:
        raise InvalidObject(f"'count' must be an integer 0-999999999 (STIX 2.1 section 5.2), not {count!r}")
    _, modified = _versioned(obj, not_after)
    first_seen, last_seen = _time(obj, "first_seen"), _time(obj, "last_seen")
    if first_seen is not None and last_seen is not None and last_seen < first_seen:
        raise InvalidObject("'last_seen' is before 'first_seen'")
    return SightingClaim(
        sighting_id=obj["id"], sighting_of=target, source=source.name, country=source.country,
        modified=modified, revoked=bool(obj.get("revoked", False)),
        tlp=_tlp(obj, default_tlp), count=count, first_seen=first_seen, last_seen=last_seen,
    )
