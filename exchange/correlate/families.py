"""Correlate stage: malware family names to one canonical key, through the aliases of the MISP galaxies.

"WannaCry", "WannaCrypt", "WCry" and "Wana Decrypt0r" are one family. The galaxies ship with pymispgalaxies; they
are read once (about 0.2 s, measured in tests/correlate/test_families.py) and the lookup is then a dict access.
"""

import functools
import importlib.util
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from exchange.errors import ConfigError

# Malpedia is the anchor: one cluster per family, curated with its synonyms. Clusters of the other galaxies join
# the malpedia family their primary name belongs to. They are never chained through each other's synonyms: the
# galaxies disagree at the edges (one lists "Pony" as a synonym of Hancitor, another puts Poison Ivy and DarkComet
# one synonym apart), and transitive joining turned a dozen unrelated families into one.
ANCHOR = "malpedia"
GALAXIES = (ANCHOR, "ransomware", "mitre-malware", "mitre-tool", "tidal-software", "tool", "backdoor", "banker",
            "botnet", "rat", "stealer", "android", "cryptominers")
MITRE_SUFFIX = re.compile(r"\s+-\s+[SG][0-9]{4}$")  # "WannaCry - S0366": the ATT&CK id is not part of the name
_NOT_WORD = re.compile(r"[\W_]+")
# Loose keys, tried only when the exact key is unknown: digits read as letters inside a word ("Decrypt0r",
# "Gh0st"), doubled letters collapsed ("Wanna" = "Wana"), and a trailing generic word dropped ("Wcry Ransomware").
_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"}
_LEET_INSIDE = re.compile(r"(?<=[^\W\d_])[013457](?=[^\W\d_])")
_RUNS = re.compile(r"(.)\1+")
_GENERIC = frozenset({"ransomware", "ransom", "malware", "trojan", "rat", "backdoor", "botnet", "stealer", "loader",
                      "family", "variant", "virus", "worm"})


def _fold(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


def family_slug(name: str) -> str:
    """Lower case, runs of anything but letters and digits become one hyphen: 'Cobalt Strike' -> 'cobalt-strike'."""
    return _NOT_WORD.sub("-", _fold(name)).strip("-")


def name_key(name: str) -> str:
    """Case, punctuation and white space do not matter: 'Wanna-Cry', 'wanna cry' and 'WannaCry' are one key."""
    return _NOT_WORD.sub("", _fold(name))


def loose_key(name: str) -> str:
    words = [w for w in _NOT_WORD.split(_fold(name)) if w]
    while len(words) > 1 and words[-1] in _GENERIC:
        words.pop()
    joined = _LEET_INSIDE.sub(lambda m: _LEET[m.group()], "".join(words))
    return _RUNS.sub(r"\1", joined)


@dataclass(frozen=True, slots=True)
class _Cluster:
    rank: int  # of its galaxy in GALAXIES: lower is more authoritative
    value: str
    keys: tuple[str, ...]  # name keys, the value's first, then the synonyms', each once
    loose: tuple[str, ...]  # loose keys of the same names

    @classmethod
    def read(cls, rank: int, value: Mapping[str, Any]) -> "_Cluster":
        primary = MITRE_SUFFIX.sub("", str(value.get("value", "")))
        synonyms = (value.get("meta") or {}).get("synonyms") or []
        names = [primary, *(s for s in synonyms if isinstance(s, str))]
        keys = dict.fromkeys(k for k in map(name_key, names) if k)  # ordered, without repeats
        loose = dict.fromkeys(k for k in map(loose_key, names) if k)
        return cls(rank, primary, tuple(keys), tuple(loose))


@dataclass(frozen=True, slots=True)
class FamilyIndex:
    """Name keys to canonical family slugs. Build it once; `canonical` is pure and cheap."""

    exact: Mapping[str, str]
    loose: Mapping[str, str]

    def canonical(self, name: str) -> str | None:
        """The family's canonical key; an unknown name is its own slug; None for a name without letters or digits."""
        key = name_key(name)
        if not key:
            return None
        found = self.exact.get(key) or self.loose.get(loose_key(name))
        return found or family_slug(name)

    def knows(self, name: str) -> bool:
        """Whether the name is a known family's (exactly or loosely), rather than falling back to its own slug."""
        return name_key(name) in self.exact or loose_key(name) in self.loose

    @classmethod
    def from_galaxies(cls, galaxies: Iterable[tuple[str, Iterable[Mapping[str, Any]]]]) -> "FamilyIndex":
        """From (galaxy name, cluster values) pairs in the MISP galaxy cluster format, most authoritative first;
        the first galaxy is the anchor."""
        clusters = [_Cluster.read(rank, value) for rank, (_, values) in enumerate(galaxies) for value in values]
        return _index(_groups([c for c in clusters if c.keys]))

    @classmethod
    def from_package(cls, galaxies: tuple[str, ...] = GALAXIES) -> "FamilyIndex":
        spec = importlib.util.find_spec("pymispgalaxies")
        if spec is None or spec.origin is None:
            raise ConfigError("pymispgalaxies is not installed: malware families cannot be aliased")
        root = Path(spec.origin).parent / "data" / "misp-galaxy" / "clusters"
        loaded = []
        for name in galaxies:
            path = root / f"{name}.json"
            if path.is_file():  # a galaxy renamed or dropped upstream leaves the others usable
                loaded.append((name, orjson.loads(path.read_bytes()).get("values", [])))
        if not loaded or loaded[0][0] != galaxies[0]:
            raise ConfigError(f"the anchor galaxy {galaxies[:1]!r} is missing from pymispgalaxies")
        return cls.from_galaxies(loaded)


@functools.cache
def default_index() -> FamilyIndex:
    """The index of the packaged galaxies, built on first use (a race builds it twice, harmlessly)."""
    return FamilyIndex.from_package()


def canonical_family(name: str) -> str | None:
    return default_index().canonical(name)


def _unique(claims: Mapping[str, set[int]]) -> dict[str, int]:
    return {key: next(iter(ids)) for key, ids in claims.items() if len(ids) == 1}


def _anchor_of(cluster: _Cluster, by_exact: Mapping[str, int], by_loose: Mapping[str, int]) -> int | None:
    """The anchor family that names the cluster's value; failing that, the one family its synonyms name."""
    found = by_exact.get(cluster.keys[0])
    if found is None:
        found = by_loose.get(loose_key(cluster.value))
    if found is not None:
        return found
    named = {by_exact[key] for key in cluster.keys[1:] if key in by_exact}
    return named.pop() if len(named) == 1 else None


def _groups(clusters: list[_Cluster]) -> list[list[_Cluster]]:
    """Each anchor cluster is a family; every other cluster joins the anchor family that names it, or the family
    of an earlier cluster with the same value, or starts its own."""
    groups: list[list[_Cluster]] = []
    exact: dict[str, set[int]] = defaultdict(set)
    loose: dict[str, set[int]] = defaultdict(set)
    for cluster in (c for c in clusters if c.rank == 0):
        groups.append([cluster])
        for key in cluster.keys:
            exact[key].add(len(groups) - 1)
        for key in cluster.loose:
            loose[key].add(len(groups) - 1)
    # A name two anchor families claim links neither: joining the wrong one is worse than joining none.
    by_exact, by_loose = _unique(exact), _unique(loose)
    by_value: dict[str, int] = {}
    for cluster in (c for c in clusters if c.rank > 0):
        key = cluster.keys[0]
        target = _anchor_of(cluster, by_exact, by_loose)
        if target is None:
            target = by_value.get(key)
        if target is None:
            groups.append([])
            target = len(groups) - 1
        groups[target].append(cluster)
        by_value.setdefault(key, target)
    return groups


def _index(groups: list[list[_Cluster]]) -> FamilyIndex:
    # A family's key is the slug of its first cluster's value: Malpedia's name when Malpedia knows the family
    # ("wannacryptor"), so every hub with the same galaxy data derives the same key, which alert ids depend on.
    exact: dict[str, dict[str, tuple[int, int]]] = defaultdict(dict)
    loose: dict[str, set[str]] = defaultdict(set)
    for group in filter(None, groups):
        slug = family_slug(group[0].value)
        exact[name_key(slug)][slug] = (-1, 0)
        for cluster in group:
            for position, key in enumerate(cluster.keys):
                # Anchor value, anchor synonym, other value, other synonym; then how many clusters name it (negated).
                rank = 2 * min(cluster.rank, 1) + min(position, 1)
                best, support = exact[key].get(slug, (rank, 0))
                exact[key][slug] = (min(rank, best), support - 1)
            for key in cluster.loose:
                loose[key].add(slug)
    return FamilyIndex(exact=_resolve(exact), loose={k: s for k, c in loose.items() if len(c) == 1 for s in c})


def _resolve(candidates: Mapping[str, dict[str, tuple[int, int]]]) -> dict[str, str]:
    """Per key, the family with the most authoritative claim, then the one more clusters name ("Qbot" is QakBot's
    in three galaxies, Bashlite's in one). A tie makes the key ambiguous: dropped, the name stays its own slug."""
    out: dict[str, str] = {}
    for key, slugs in candidates.items():
        ordered = sorted(slugs.items(), key=lambda item: item[1])
        if len(ordered) == 1 or ordered[0][1] != ordered[1][1]:
            out[key] = ordered[0][0]
    return out
