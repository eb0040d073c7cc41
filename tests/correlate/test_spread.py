"""Correlate stage: spread state per threat — windows, incremental updates, and a merge that is commutative,
associative and idempotent (hypothesis), so peer hubs' states fold in without double counting."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.correlate.spread import (
    Admission,
    Reporter,
    Seen,
    SpreadState,
    countries_within,
    empty,
    keys_to_load,
    merge,
    new_countries_within,
    observe,
    sources_within,
    state_from_wire,
    state_to_wire,
    update,
)
from exchange.errors import InvalidObject
from exchange.policy.tlp import Tlp
from tests.correlate.helpers import DAY, HASH, HOUR, IP, KILL_SWITCH, MINUTE, T0, obs, spread_over

INDICATOR = f"indicator:{KILL_SWITCH}"


def test_distinct_sources_countries_and_times() -> None:
    state = observe(empty(INDICATOR), [obs("FR", at=T0 + HOUR), obs("FR", at=T0), obs("DE", at=T0 + 2 * HOUR),
                                       obs("DE", source="cert-de-2", at=T0 + 3 * HOUR), obs(None, source="anon")])
    assert state.countries == {"FR", "DE"}
    assert state.sources == {"cert-fr", "cert-de", "cert-de-2", "anon"}
    assert (state.first_seen, state.last_seen) == (T0, T0 + 3 * HOUR)
    assert state.reporters[Reporter("cert-fr", "FR")] == Seen(T0, T0 + HOUR)
    assert state.by_country()["DE"] == Seen(T0 + 2 * HOUR, T0 + 3 * HOUR)
    assert state.indicators == {KILL_SWITCH: Tlp.GREEN}


def test_sliding_windows() -> None:
    state = observe(empty(INDICATOR), [obs("FR", at=T0), obs("DE", at=T0 + 20 * HOUR), obs("PL", at=T0 + 30 * HOUR),
                                       obs("FR", at=T0 + 40 * HOUR)])
    now = T0 + 44 * HOUR
    assert countries_within(state, now, DAY) == {"PL", "FR"}  # DE last reported 24 h ago: out
    # Per reporter only the first and last report are kept, so windows are asked about the present: a report
    # dated after `now` (a peer's clock running ahead) counts as in the window.
    assert countries_within(state, T0 + 30 * HOUR, DAY) == {"FR", "DE", "PL"}
    assert new_countries_within(state, now, 15 * HOUR) == {"PL"}  # FR reported again, but first reported long ago
    assert sources_within(state, now, 5 * HOUR) == {"cert-fr"}
    assert countries_within(state, T0 - HOUR, HOUR) == {"FR", "DE", "PL"}  # reports after `now` count


def test_observe_is_incremental_and_returns_the_same_state_when_nothing_changes() -> None:
    batch = spread_over(["FR", "DE", "PL"])
    whole = observe(empty(INDICATOR), batch)
    stepwise = observe(observe(empty(INDICATOR), batch[:1]), batch[1:])
    assert whole == stepwise
    assert observe(whole, batch[1:]) is whole  # replaying a batch (a restart) changes nothing
    assert observe(whole, []) is whole


def test_admission_min_confidence_tlp_echoes_and_warninglists() -> None:
    admission = Admission(min_confidence=50, hub="CERT-X", audience=Tlp.AMBER)
    state = observe(empty(INDICATOR), [
        obs("FR", confidence=49), obs("DE", confidence=50), obs("PL"),  # no confidence: counts
        obs("IT", tlp=Tlp.RED), obs("ES", path=("CERT-Y", "CERT-X")),
    ], admission)
    assert state.countries == {"DE", "PL"}
    flagged = observe(empty(INDICATOR), [obs("FR", warninglists=("alexa",)), obs("DE")], admission)
    assert flagged.countries == {"DE"} and flagged.warninglists == {"alexa"}  # the state is flagged: rules suppress
    counted = observe(empty(INDICATOR), [obs("FR", warninglists=("alexa",))], Admission(suppress_warninglisted=False))
    assert counted.countries == {"FR"} and counted.warninglists == {"alexa"}


def test_strictest_tlp_per_indicator() -> None:
    state = observe(empty(INDICATOR), [obs("FR", tlp=Tlp.AMBER), obs("DE", tlp=Tlp.GREEN)])
    assert state.indicators == {KILL_SWITCH: Tlp.AMBER} and state.tlp is Tlp.AMBER
    assert empty(INDICATOR).tlp is None


def test_update_feeds_families_from_indicator_states() -> None:
    batch = [obs("FR", families=("WannaCry",)), obs("DE", indicator=HASH, families=("WCry",)),
             obs("PL", indicator=IP)]  # the IP names no family: it stays an indicator threat
    changed = update({}, batch)
    assert set(changed) == {INDICATOR, f"indicator:{HASH}", f"indicator:{IP}", "family:wannacryptor"}
    family = changed["family:wannacryptor"]
    assert family.countries == {"FR", "DE"} and set(family.indicators) == {KILL_SWITCH, HASH}
    assert family.families == {"wannacryptor"}
    assert changed[INDICATOR].related == {"family:wannacryptor"}
    assert update(changed, batch) == {}  # nothing new


def test_a_family_named_later_takes_the_indicators_earlier_reports() -> None:
    first = update({}, spread_over(["FR", "DE"]))
    assert set(first) == {INDICATOR}
    needed = keys_to_load([obs("PL", at=T0 + HOUR, families=("WannaCry",))])
    assert needed == {INDICATOR, "family:wannacryptor"}
    second = update(first, [obs("PL", at=T0 + HOUR, families=("WannaCry",))])
    assert second["family:wannacryptor"].countries == {"FR", "DE", "PL"}
    # Later reports that name no family still count for it: the stored indicator state knows its family.
    stored = first | second
    later = [obs("IT", at=T0 + 2 * HOUR)]
    assert keys_to_load(later, loaded=stored) == {INDICATOR, "family:wannacryptor"}
    third = update(stored, later)
    assert third["family:wannacryptor"].countries == {"FR", "DE", "PL", "IT"}


def test_warninglisted_values_feed_no_family() -> None:
    flagged = [obs(c, families=("WannaCry",), warninglists=("google-dns",)) for c in ["FR", "DE", "PL", "IT"]]
    changed = update({}, flagged)
    assert set(changed) == {INDICATOR}
    assert changed[INDICATOR].warninglists == {"google-dns"} and not changed[INDICATOR].reporters


def test_remote_states_merge_and_propagate() -> None:
    peer = update({}, [obs("FR", families=("WannaCry",)), obs("DE", families=("WannaCry",))])
    local = update({}, [obs("DE", families=("WCry",)), obs("PL", indicator=HASH, families=("WannaCry",))])
    merged = update(local, remote=[peer[INDICATOR]])
    assert merged["family:wannacryptor"].countries == {"FR", "DE", "PL"}
    assert merged["family:wannacryptor"].sources == {"cert-fr", "cert-de", "cert-pl"}  # cert-de counted once
    assert update(local | merged, remote=[peer[INDICATOR]]) == {}  # the same peer state again: nothing new
    secret = SpreadState(INDICATOR, {Reporter("x", "SE"): Seen(T0, T0)}, {KILL_SWITCH: Tlp.RED})
    assert update({}, remote=[secret], admission=Admission(audience=Tlp.AMBER)) == {}


def test_merge_rejects_different_threats() -> None:
    with pytest.raises(ValueError):
        merge(empty(INDICATOR), empty("family:x"))
    with pytest.raises(ValueError):
        empty("nonsense")


def test_wire_round_trip() -> None:
    state = update({}, [obs("FR", families=("WannaCry",), tlp=Tlp.AMBER), obs(None, source="anon", at=T0 + MINUTE),
                        obs("DE", warninglists=("x",))], Admission(suppress_warninglisted=False))
    for spread in state.values():
        assert state_from_wire(state_to_wire(spread)) == spread
    for bad in [None, {}, {"key": "nope", "reporters": [], "indicators": {}, "related": [], "warninglists": []},
                {"key": INDICATOR, "reporters": [["a", None, 2, 1]], "indicators": {}, "related": [],
                 "warninglists": []},
                {"key": INDICATOR, "reporters": [], "indicators": {"x": 9}, "related": [], "warninglists": []}]:
        with pytest.raises(InvalidObject):
            state_from_wire(bad)


# Properties: small alphabets, so that generated states overlap and merging has something to union.
times = st.integers(min_value=T0, max_value=T0 + 3 * DAY)
seen = st.tuples(times, times).map(lambda t: Seen(min(t), max(t)))
reporters = st.dictionaries(st.builds(Reporter, st.sampled_from(["a", "b", "c", "d"]),
                                      st.sampled_from([None, "FR", "DE", "PL"])), seen, max_size=6)
indicators = st.dictionaries(st.sampled_from([KILL_SWITCH, HASH, IP]), st.sampled_from(list(Tlp)), max_size=3)
keys = st.frozensets(st.sampled_from(["family:a", "campaign:b", "intrusion-set:c"]))
lists = st.frozensets(st.sampled_from(["alexa", "google-dns"]))
states = st.builds(SpreadState, st.just(INDICATOR), reporters, indicators, keys, lists)


@given(states, states)
def test_merge_is_commutative(a: SpreadState, b: SpreadState) -> None:
    assert merge(a, b) == merge(b, a)


@given(states, states, states)
def test_merge_is_associative(a: SpreadState, b: SpreadState, c: SpreadState) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c))


@given(states, states)
def test_merge_is_idempotent(a: SpreadState, b: SpreadState) -> None:
    assert merge(a, a) == a
    assert merge(merge(a, b), b) == merge(a, b)


@given(states, states)
def test_merge_counts_each_country_and_source_once(a: SpreadState, b: SpreadState) -> None:
    m = merge(a, b)
    assert m.countries == a.countries | b.countries
    assert m.sources == a.sources | b.sources
    assert m.first_seen == min(filter(None, (a.first_seen, b.first_seen)), default=None)
    assert m.last_seen == max(filter(None, (a.last_seen, b.last_seen)), default=None)


observation_lists = st.lists(st.builds(obs, st.sampled_from([None, "FR", "DE", "PL"]), at=times,
                                       source=st.sampled_from(["a", "b", "c"]),
                                       indicator=st.sampled_from([KILL_SWITCH, HASH])), max_size=8)


@given(observation_lists, observation_lists)
def test_observing_two_batches_on_two_hubs_then_merging_equals_observing_both(first: list, second: list) -> None:
    both = update({}, first + second)
    apart = [update({}, first), update({}, second)]
    merged = {k: merge(apart[0].get(k, empty(k)), apart[1].get(k, empty(k))) for k in both}
    assert merged == both
