"""Correlate stage: observations (one source reporting one canonical indicator) and the threat keys they feed.

A threat key names what an alert is about: `indicator:<id>`, `family:<canonical family>`, `campaign:<slug>` or
`intrusion-set:<slug>`. Equal keys on two hubs mean the same threat, so the key alone decides the alert's id.
"""

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from exchange.correlate.families import GALAXIES, MITRE_SUFFIX, FamilyIndex, default_index, family_slug
from exchange.dedup.claims import Claim, SightingClaim
from exchange.policy.tlp import Tlp


class ThreatKind(StrEnum):
    INDICATOR = "indicator"
    FAMILY = "family"
    CAMPAIGN = "campaign"
    INTRUSION_SET = "intrusion-set"


@dataclass(frozen=True, slots=True)
class Observation:
    """One report that feeds correlation.

    `source` must name the reporter the same way on every hub of a federation, or merged alerts count it twice:
    reporter_name() does, and observation_from_claim uses it. `path` lists the identity ids of the hubs the
    report crossed, origin first (Claim.path)."""

    indicator_id: str  # canonical
    source: str
    country: str | None  # ISO 3166-1 alpha-2 of the source, or of a sighting's location
    time: int  # µs since the epoch: when it was reported
    tlp: Tlp
    confidence: int | None = None
    families: tuple[str, ...] = ()  # malware family names as reported; canonicalized by threat_keys
    campaigns: tuple[str, ...] = ()
    intrusion_sets: tuple[str, ...] = ()
    warninglists: tuple[str, ...] = ()  # lists the value is on: non-empty means a likely false positive
    path: tuple[str, ...] = ()

    @property
    def warninglisted(self) -> bool:
        return bool(self.warninglists)


def threat_key(kind: ThreatKind, name: str) -> str:
    return f"{kind.value}:{name}"


def split_key(key: str) -> tuple[ThreatKind, str]:
    """ValueError for a key of no known kind or with an empty name."""
    kind, sep, name = key.partition(":")
    if not sep or not name:
        raise ValueError(f"not a threat key: {key!r}")
    return ThreatKind(kind), name


def canonical_families(names: Iterable[str], families: FamilyIndex | None = None) -> tuple[str, ...]:
    index = families or default_index()
    return tuple(sorted({f for f in map(index.canonical, names) if f}))


def threat_keys(obs: Observation, families: FamilyIndex | None = None) -> tuple[str, ...]:
    """The keys an observation contributes to: its indicator's, then each family's, campaign's, intrusion set's."""
    keys = [threat_key(ThreatKind.INDICATOR, obs.indicator_id)]
    if obs.families:
        keys += [threat_key(ThreatKind.FAMILY, f) for f in canonical_families(obs.families, families)]
    for kind, names in ((ThreatKind.CAMPAIGN, obs.campaigns), (ThreatKind.INTRUSION_SET, obs.intrusion_sets)):
        keys += [threat_key(kind, s) for s in sorted({family_slug(n) for n in names} - {""})]
    return tuple(keys)


def group_by_threat(observations: Iterable[Observation],
                    families: FamilyIndex | None = None) -> dict[str, list[Observation]]:
    grouped: dict[str, list[Observation]] = defaultdict(list)
    for obs in observations:
        for key in threat_keys(obs, families):
            grouped[key].append(obs)
    return dict(grouped)


# MISP galaxy tags as misp-stix and most MISP exports carry them in `labels`: misp-galaxy:<galaxy>="<cluster>".
_GALAXY_TAG = re.compile(r'misp-galaxy:([a-z0-9-]+)="(.+)"')
_ACTOR_GALAXIES = frozenset({"threat-actor", "mitre-intrusion-set", "mitre-enterprise-attack-intrusion-set",
                             "mitre-mobile-attack-intrusion-set", "mitre-ics-groups", "tidal-groups",
                             "microsoft-activity-group"})
_CAMPAIGN_GALAXIES = frozenset({"tidal-campaigns"})
_FAMILY_GALAXIES = frozenset({*GALAXIES, "mitre-enterprise-attack-malware", "mitre-enterprise-attack-tool",
                              "mitre-mobile-attack-malware", "mitre-mobile-attack-tool", "mitre-ics-software"})


@dataclass(frozen=True, slots=True)
class TaggedNames:
    families: tuple[str, ...] = ()
    campaigns: tuple[str, ...] = ()
    intrusion_sets: tuple[str, ...] = ()


def names_from_labels(labels: Iterable[str]) -> TaggedNames:
    """Family, campaign and intrusion-set names from the MISP galaxy tags among an object's labels."""
    found: dict[str, set[str]] = {"families": set(), "campaigns": set(), "intrusion_sets": set()}
    for label in labels:
        match = _GALAXY_TAG.fullmatch(label.strip())
        if match is None:
            continue
        galaxy, name = match.groups()
        if galaxy in _ACTOR_GALAXIES:
            found["intrusion_sets"].add(name)
        elif galaxy in _CAMPAIGN_GALAXIES:
            found["campaigns"].add(name)
        elif galaxy in _FAMILY_GALAXIES:
            found["families"].add(MITRE_SUFFIX.sub("", name))
    return TaggedNames(**{k: tuple(sorted(v)) for k, v in found.items()})


def reporter_name(source: str, origin: str) -> str:
    """A source's name as every hub of a federation spells it: the name it has at the hub where it reports
    (its origin), qualified by that hub's identity id, the same way dedup/relay.py carries claims across hubs."""
    return f"{source}@{origin}"


def observation_from_claim(claim: Claim, *, hub_id: str, time: int, names: TaggedNames = TaggedNames()
                           ) -> Observation | None:
    """What a merged claim reports (`hub_id`: this hub's identity id, the origin of local claims); None for a
    revoked claim, a retraction reports nothing."""
    if claim.revoked:
        return None
    return Observation(indicator_id=claim.indicator_id, source=reporter_name(claim.source, claim.origin or hub_id),
                       country=claim.country, time=time, tlp=claim.tlp, confidence=claim.confidence,
                       families=names.families, campaigns=names.campaigns, intrusion_sets=names.intrusion_sets,
                       warninglists=claim.warnings, path=claim.path)


def observation_from_sighting(sighting: SightingClaim, indicator_id: str, *, hub_id: str, time: int,
                              names: TaggedNames = TaggedNames(), warninglists: Sequence[str] = ()
                              ) -> Observation | None:
    """A local sighting of a canonical indicator, dated when it was last seen but never later than `time` (when
    it was reported): a sender's clock or a typo must not keep a threat inside the window for ever."""
    if sighting.revoked:
        return None
    seen = time if sighting.last_seen is None else min(sighting.last_seen, time)
    return Observation(indicator_id=indicator_id, source=reporter_name(sighting.source, hub_id),
                       country=sighting.country, time=seen, tlp=sighting.tlp, families=names.families,
                       campaigns=names.campaigns, intrusion_sets=names.intrusion_sets,
                       warninglists=tuple(warninglists))
