"""Correlate stage: malware family names through the MISP galaxy aliases (packaged data, no network)."""

import time

import pytest

from exchange.correlate.families import FamilyIndex, default_index, family_slug, loose_key, name_key

WANNACRY = ["WannaCry", "WannaCrypt", "WCry", "wanna decryptor", "Wana Decrypt0r", "WannaCryptor", "WANNACRY",
            "Wanna-Cry", "wcry ransomware"]


@pytest.fixture(scope="module")
def index() -> FamilyIndex:
    return default_index()


def test_wannacry_spellings_are_one_family(index: FamilyIndex) -> None:
    keys = {name: index.canonical(name) for name in WANNACRY}
    assert set(keys.values()) == {"wannacryptor"}, keys  # Malpedia's name for it


@pytest.mark.parametrize(("names", "family"), [
    (["Emotet", "Geodo", "Heodo"], "emotet"),
    (["QakBot", "Qbot", "Pinkslipbot", "Akbot"], "qakbot"),  # Qbot is also a Bashlite synonym, in one galaxy only
    (["Cobalt Strike", "CobaltStrike", "cobalt-strike"], "cobalt-strike"),
    (["NotPetya", "ExPetr", "Nyetya"], "eternalpetya"),
])
def test_known_aliases(index: FamilyIndex, names: list[str], family: str) -> None:
    assert {index.canonical(n) for n in names} == {family}


def test_unrelated_families_stay_apart(index: FamilyIndex) -> None:
    # The galaxies link these through one stray synonym each; chaining through them would make one family.
    families = {index.canonical(n) for n in ["Poison Ivy", "DarkComet", "Hancitor", "Pony", "Petya", "Bashlite"]}
    assert len(families) == 6


def test_unknown_names_are_their_own_slug(index: FamilyIndex) -> None:
    assert index.canonical("Totally New Locker 2031") == "totally-new-locker-2031"
    assert index.canonical("  totally_new  LOCKER-2031 ") == "totally-new-locker-2031"
    assert not index.knows("Totally New Locker 2031")
    assert index.knows("wcry")
    assert index.canonical("---") is None
    assert index.canonical("") is None


def test_canonical_is_idempotent(index: FamilyIndex) -> None:
    for name in [*WANNACRY, "Emotet", "Qbot", "Something Unknown", "LockBit 3.0"]:
        family = index.canonical(name)
        assert family is not None
        assert index.canonical(family) == family


def test_keys_ignore_case_punctuation_and_space() -> None:
    assert name_key("Wanna-Cry ") == name_key("wanna cry") == name_key("WANNACRY") == "wannacry"
    assert family_slug("Cobalt  Strike!") == "cobalt-strike"
    assert loose_key("Wana Decrypt0r") == loose_key("wanna decryptor") == loose_key("Wanna Decryptor Ransomware")
    assert loose_key("Mirai5") == "mirai5"  # a digit at the end of a word is a version, not a letter


def test_index_is_loaded_once_and_quickly() -> None:
    assert default_index() is default_index()
    started = time.perf_counter()
    FamilyIndex.from_package()
    elapsed = time.perf_counter() - started
    # About 0.2 s on a laptop (13 galaxies, ~9,000 clusters); generous bound for slow CI machines.
    assert elapsed < 5, f"building the family index took {elapsed:.2f} s"


def galaxy(*clusters: tuple[str, list[str]]) -> list[dict[str, object]]:
    return [{"value": value, "meta": {"synonyms": synonyms}} for value, synonyms in clusters]


def test_other_galaxies_join_the_anchor_family_by_value_or_synonyms() -> None:
    index = FamilyIndex.from_galaxies([
        ("anchor", galaxy(("Alpha", ["Alfa"]), ("Beta", ["B1"]))),
        ("second", galaxy(("Alfa", ["A-team"]), ("Gamma", ["Beta", "Delta"]), ("Epsilon", []))),
        ("third", galaxy(("Alpha - S0001", []), ("Epsilon", ["Eps"]))),
    ])
    assert {index.canonical(n) for n in ["Alpha", "alfa", "A-team", "ALPHA"]} == {"alpha"}
    assert index.canonical("Gamma") == index.canonical("delta") == "beta"  # joined through its synonym Beta
    assert index.canonical("eps") == "epsilon"  # two non-anchor clusters with one value are one family


def test_ambiguous_names_link_nothing() -> None:
    index = FamilyIndex.from_galaxies([
        ("anchor", galaxy(("Alpha", ["Shared"]), ("Beta", ["Shared"]))),
        ("second", galaxy(("Shared", ["Zeta"]),)),
    ])
    assert index.canonical("Alpha") == "alpha" and index.canonical("Beta") == "beta"
    # "Shared" names two anchor families equally: the other galaxy's cluster does not join either of them.
    assert index.canonical("Shared") == index.canonical("Zeta") == "shared"


def test_no_chaining_through_other_galaxies() -> None:
    index = FamilyIndex.from_galaxies([
        ("anchor", galaxy(("Alpha", []), ("Beta", []))),
        ("second", galaxy(("Alpha", ["Bridge"]),)),
        ("third", galaxy(("Beta", ["Bridge"]),)),
    ])
    assert index.canonical("Alpha") != index.canonical("Beta")
