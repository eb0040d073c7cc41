"""Correlate stage: how far a threat has spread (who reported it, from which countries, when) as a mergeable state.

A state keeps, per reporter (source and country), the first and last time it reported the threat. Merging two
states unions the reporters and widens their times, so the merge is commutative, associative and idempotent: a
hub can fold in a peer hub's state as often as it arrives, in any order, and count each country and source once.
Windows ("countries in the last 24 h") are computed from the times when a rule asks, never stored.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from exchange.correlate.families import FamilyIndex
from exchange.correlate.threats import Observation, ThreatKind, split_key, threat_key, threat_keys
from exchange.errors import InvalidObject
from exchange.policy.tlp import Tlp


class Reporter(NamedTuple):
    source: str
    country: str | None


@dataclass(frozen=True, slots=True)
class Seen:
    first: int  # µs since the epoch
    last: int

    def merge(self, other: "Seen") -> "Seen":
        if self.first <= other.first and self.last >= other.last:
            return self
        return Seen(min(self.first, other.first), max(self.last, other.last))


@dataclass(frozen=True, slots=True)
class Admission:
    """Which observations count as evidence: a rule's thresholds plus the hub's own name and audience."""

    min_confidence: int = 0  # an observation without a confidence counts: most national feeds send none
    suppress_warninglisted: bool = True
    hub: str | None = None  # this hub's identity id: an observation whose path names it is an echo
    audience: Tlp = Tlp.RED  # observations above it are not counted: they must not show in what it receives

    def admits(self, obs: Observation) -> bool:
        if obs.tlp > self.audience or (self.hub is not None and self.hub in obs.path):
            return False
        if obs.confidence is not None and obs.confidence < self.min_confidence:
            return False
        return not (self.suppress_warninglisted and obs.warninglisted)


@dataclass(frozen=True, slots=True)
class SpreadState:
    """What is known about one threat. Treat the mappings as frozen: every function here returns new ones."""

    key: str
    reporters: Mapping[Reporter, Seen] = field(default_factory=dict)
    indicators: Mapping[str, Tlp] = field(default_factory=dict)  # canonical id -> strictest TLP reported with it
    related: frozenset[str] = frozenset()  # other threats the reports named: an indicator's family, campaign...
    warninglists: frozenset[str] = frozenset()  # of the indicator, for indicator keys: suppresses the threat

    @property
    def kind(self) -> ThreatKind:
        return split_key(self.key)[0]

    @property
    def families(self) -> frozenset[str]:
        """Canonical malware families: the threat's own and those its reports named."""
        return frozenset(name for kind, name in map(split_key, self.related | {self.key}) if kind is ThreatKind.FAMILY)

    @property
    def sources(self) -> frozenset[str]:
        return frozenset(r.source for r in self.reporters)

    @property
    def countries(self) -> frozenset[str]:
        return frozenset(r.country for r in self.reporters if r.country)

    @property
    def first_seen(self) -> int | None:
        return min((s.first for s in self.reporters.values()), default=None)

    @property
    def last_seen(self) -> int | None:
        return max((s.last for s in self.reporters.values()), default=None)

    @property
    def tlp(self) -> Tlp | None:
        """The strictest TLP of the indicators, which an alert about the threat must carry."""
        return max(self.indicators.values(), default=None)

    def by_country(self) -> dict[str, Seen]:
        seen: dict[str, Seen] = {}
        for reporter, times in self.reporters.items():
            if reporter.country:
                current = seen.get(reporter.country)
                seen[reporter.country] = times if current is None else current.merge(times)
        return seen


def countries_within(state: SpreadState, now: int, window: int) -> frozenset[str]:
    """Countries that reported the threat in (now - window, ...]; a report dated after `now` counts."""
    return frozenset(c for c, seen in state.by_country().items() if seen.last > now - window)


def new_countries_within(state: SpreadState, now: int, window: int) -> frozenset[str]:
    """Countries whose first report of the threat falls in the window: the growth."""
    return frozenset(c for c, seen in state.by_country().items() if seen.first > now - window)


def sources_within(state: SpreadState, now: int, window: int) -> frozenset[str]:
    return frozenset(r.source for r, seen in state.reporters.items() if seen.last > now - window)


def observe(state: SpreadState, observations: Iterable[Observation], admission: Admission = Admission(),
            families: FamilyIndex | None = None) -> SpreadState:
    """The state with the observations folded in; the same object when they change nothing.

    Meant for an indicator's state and that indicator's observations (update() routes them); a warninglisted
    observation is no evidence, but it marks the indicator's state as warninglisted."""
    reporters = dict(state.reporters)
    indicators = dict(state.indicators)
    related, warnings = set(state.related), set(state.warninglists)
    for obs in observations:
        if obs.tlp <= admission.audience:
            warnings.update(obs.warninglists)
        if not admission.admits(obs):
            continue
        reporter = Reporter(obs.source, obs.country)
        seen, current = Seen(obs.time, obs.time), reporters.get(reporter)
        reporters[reporter] = seen if current is None else current.merge(seen)
        indicators[obs.indicator_id] = max(obs.tlp, indicators.get(obs.indicator_id, obs.tlp))
        related.update(threat_keys(obs, families))
    related.discard(state.key)
    new = SpreadState(state.key, reporters, indicators, frozenset(related), frozenset(warnings))
    return state if new == state else new


def rekey(state: SpreadState, key: str) -> SpreadState:
    """An indicator's spread as its share of a family's, campaign's or intrusion set's, without its warninglists
    (they flag the value, not the family)."""
    return SpreadState(key, state.reporters, state.indicators, state.related - {key})


def update(states: Mapping[str, SpreadState], observations: Iterable[Observation] = (),
           admission: Admission = Admission(), families: FamilyIndex | None = None, *,
           remote: Iterable[SpreadState] = ()) -> dict[str, SpreadState]:
    """After a batch: the states that changed (new ones included), from local observations and from the spreads
    of peer hubs' alerts (alert_stix.parse_alert). `states` must hold the current states of keys_to_load().

    Observations feed their indicator's state; the state of a family, campaign or intrusion set is the merge of
    its indicators' states, so an indicator's earlier reports count for a family named later, and a report that
    names no family still counts for the family another source named."""
    changed: dict[str, SpreadState] = {}

    def fold(before: SpreadState, after: SpreadState) -> None:
        if after != before:
            changed[after.key] = after

    def current(key: str) -> SpreadState:
        return changed.get(key) or states.get(key) or empty(key)

    for spread in remote:
        if spread.tlp is not None and spread.tlp <= admission.audience:
            fold(before := current(spread.key), merge(before, spread))
    by_indicator: dict[str, list[Observation]] = defaultdict(list)
    for obs in observations:
        by_indicator[threat_key(ThreatKind.INDICATOR, obs.indicator_id)].append(obs)
    for key, batch in by_indicator.items():
        fold(before := current(key), observe(before, batch, admission, families))
    shares: dict[str, list[SpreadState]] = defaultdict(list)
    for spread in [s for s in changed.values() if s.kind is ThreatKind.INDICATOR]:
        if spread.warninglists and admission.suppress_warninglisted:
            continue  # a value found to be a false positive feeds no family
        for group in spread.related:
            shares[group].append(rekey(spread, group))
    for group, parts in shares.items():  # one copy of a large family's state per batch, not one per indicator
        fold(before := current(group), merge(before, *parts))
    return changed


def keys_to_load(observations: Iterable[Observation], remote: Iterable[SpreadState] = (),
                 families: FamilyIndex | None = None, loaded: Mapping[str, SpreadState] | None = None) -> set[str]:
    """The states update() reads. Load in two rounds: these keys, then keys_to_load(..., loaded=the states) for
    the families and campaigns that stored indicator states name and this batch does not."""
    keys = {key for obs in observations for key in threat_keys(obs, families)}
    for spread in remote:
        keys.add(spread.key)
        if spread.kind is ThreatKind.INDICATOR:
            keys |= spread.related
    for key in list(keys):
        known = (loaded or {}).get(key)
        if known is not None and known.kind is ThreatKind.INDICATOR:
            keys |= known.related
    return keys


def empty(key: str) -> SpreadState:
    split_key(key)  # ValueError early for a malformed key
    return SpreadState(key)


def merge(a: SpreadState, *others: SpreadState) -> SpreadState:
    """Several hubs' knowledge of one threat: reporters unioned with their widest times, the stricter TLP per
    indicator. Commutative, associative and idempotent (tests/correlate/test_spread.py proves it)."""
    reporters, indicators = dict(a.reporters), dict(a.indicators)
    related, warnings = set(a.related), set(a.warninglists)
    for b in others:
        if a.key != b.key:
            raise ValueError(f"cannot merge the states of two threats: {a.key!r} and {b.key!r}")
        for reporter, seen in b.reporters.items():
            current = reporters.get(reporter)
            reporters[reporter] = seen if current is None else current.merge(seen)
        for ident, tlp in b.indicators.items():
            indicators[ident] = max(tlp, indicators.get(ident, tlp))
        related |= b.related
        warnings |= b.warninglists
    return SpreadState(a.key, reporters, indicators, frozenset(related), frozenset(warnings))


def state_to_wire(state: SpreadState) -> dict[str, Any]:
    """A plain dict for msgpack or JSON (the store keeps states between batches), in a stable order."""
    return {
        "key": state.key,
        "reporters": [[r.source, r.country, s.first, s.last]
                      for r, s in sorted(state.reporters.items(), key=lambda item: (item[0].source,
                                                                                   item[0].country or ""))],
        "indicators": {ident: int(tlp) for ident, tlp in sorted(state.indicators.items())},
        "related": sorted(state.related),
        "warninglists": sorted(state.warninglists),
    }


def state_from_wire(raw: Any) -> SpreadState:
    """InvalidObject when `raw` is not what state_to_wire makes."""
    try:
        key = raw["key"]
        split_key(key)
        reporters: dict[Reporter, Seen] = {}
        for source, country, first, last in raw["reporters"]:
            if not isinstance(source, str) or not (country is None or isinstance(country, str)):
                raise TypeError("reporter source and country must be strings")
            if type(first) is not int or type(last) is not int or first > last:
                raise TypeError("reporter times must be integers, first <= last")
            reporter = Reporter(source, country)
            current = reporters.get(reporter)
            reporters[reporter] = Seen(first, last) if current is None else current.merge(Seen(first, last))
        indicators = {str(ident): Tlp(level) for ident, level in raw["indicators"].items()}
        related, warnings = frozenset(map(str, raw["related"])), frozenset(map(str, raw["warninglists"]))
        for other in related:
            split_key(other)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidObject(f"not a spread state: {exc}") from None
    return SpreadState(key, reporters, indicators, related, warnings)
