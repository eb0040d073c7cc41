"""Correlate stage: alert rules as data, and the pure decision at thresholds."""

import json
import re
from functools import cache
from typing import Any

import jsonschema
import pytest

from exchange.config import SCHEMA_DIR
from exchange.correlate.rules import (
    DAY,
    HOUR,
    AlertRules,
    Decision,
    FastGrowth,
    Rule,
    evaluate,
    rules_from_config,
)
from exchange.correlate.spread import SpreadState, update
from exchange.errors import ConfigError
from tests.correlate.helpers import COUNTRIES, KILL_SWITCH, MINUTE, T0, obs, spread_over

RULES = AlertRules()
INDICATOR = f"indicator:{KILL_SWITCH}"
SLOW = 2 * HOUR  # one new country every two hours: never fast growth


def state_of(observations: list, rules: AlertRules = RULES, key: str = INDICATOR) -> SpreadState:
    return update({}, observations, rules.admission()).get(key) or SpreadState(key)


def decide(countries: int, *, step: int = SLOW, rules: AlertRules = RULES, **props: Any) -> Decision:
    observations = spread_over(COUNTRIES[:countries], step=step, **props)
    return evaluate(state_of(observations, rules), rules, observations[-1].time + MINUTE)


@pytest.mark.parametrize(("countries", "level", "name"), [
    (1, 0, None), (2, 0, None), (3, 1, "large-scale"), (9, 1, "large-scale"), (10, 2, "widespread"),
    (24, 2, "widespread"), (25, 3, "global"), (30, 3, "global"),
])
def test_levels_at_thresholds(countries: int, level: int, name: str | None) -> None:
    # Windows of 24 h: spread the reports over 20 h whatever their number, so all count.
    decision = decide(countries, step=20 * HOUR // countries)
    assert (decision.level, decision.name, decision.boosted) == (level, name, False)


def test_countries_outside_the_window_do_not_count() -> None:
    observations = [obs("FR", at=T0), obs("DE", at=T0 + 10 * HOUR), obs("PL", at=T0 + 25 * HOUR)]
    state = state_of(observations)
    assert evaluate(state, RULES, T0 + 25 * HOUR).level == 0  # FR reported 25 h ago
    assert evaluate(state, RULES, T0 + 23 * HOUR).level == 1


def test_more_reports_from_one_country_are_not_more_countries() -> None:
    observations = [obs("FR", source=f"fr-{i}", at=T0 + i * MINUTE) for i in range(20)] + [obs("DE")]
    assert evaluate(state_of(observations), RULES, T0 + HOUR).level == 0


def test_fast_growth_raises_one_level() -> None:
    fast = decide(5, step=10 * MINUTE)  # five new countries within the hour
    assert (fast.level, fast.name, fast.boosted, fast.new_countries) == (2, "widespread", True, 5)
    assert decide(4, step=10 * MINUTE).level == 1  # four is not fast enough
    assert decide(26, step=2 * MINUTE).level == 3  # no level above the highest


def test_fast_growth_can_be_turned_off() -> None:
    rules = AlertRules(fast_growth=FastGrowth(new_countries=0))
    assert decide(5, step=10 * MINUTE, rules=rules).level == 1


def test_min_confidence() -> None:
    rules = AlertRules(min_confidence=60)
    assert decide(3, rules=rules, confidence=59).level == 0
    assert decide(3, rules=rules, confidence=60).level == 1
    assert decide(3, rules=rules).level == 1  # no confidence given: counts


def test_min_sources() -> None:
    rules = AlertRules(min_sources=2)
    one_source = [obs(c, source="sightings-bot", at=T0 + i * MINUTE) for i, c in enumerate(COUNTRIES[:3])]
    assert evaluate(state_of(one_source, rules), rules, T0 + HOUR).level == 0
    assert decide(3, rules=rules).level == 1


def test_warninglisted_value_reported_by_20_countries_raises_nothing() -> None:
    observations = spread_over(COUNTRIES[:20], warninglists=("google-dns",), families=("WannaCry",))
    changed = update({}, observations, RULES.admission())
    assert set(changed) == {INDICATOR}  # it feeds no family either
    decision = evaluate(changed[INDICATOR], RULES, T0 + HOUR)
    assert decision.level == 0 and decision.suppressed


def test_suppression_can_be_turned_off() -> None:
    rules = AlertRules(suppress_warninglisted=False)
    assert decide(3, rules=rules, warninglists=("google-dns",)).level == 1


def test_indicator_of_a_family_is_subsumed_by_it() -> None:
    observations = spread_over(COUNTRIES[:3], step=SLOW, families=("WannaCry",))
    changed = update({}, observations, RULES.admission())
    now = observations[-1].time + MINUTE
    assert evaluate(changed[INDICATOR], RULES, now).subsumed
    assert evaluate(changed["family:wannacryptor"], RULES, now).level == 1


def test_quiet_threats_and_disabled_rules() -> None:
    state = state_of(spread_over(COUNTRIES[:3]))
    assert evaluate(state, RULES, T0 + 8 * DAY).quiet
    assert not evaluate(state, RULES, T0 + 6 * DAY).quiet
    assert evaluate(SpreadState(INDICATOR), RULES, T0).quiet
    assert evaluate(state, AlertRules(enabled=False), T0 + HOUR).level == 0


def test_each_level_has_its_own_window() -> None:
    rules = AlertRules(levels=(Rule("regional", 2, window=HOUR), Rule("sustained", 3, window=7 * DAY)))
    observations = [obs("FR", at=T0), obs("DE", at=T0 + 2 * DAY), obs("PL", at=T0 + 2 * DAY + 30 * MINUTE)]
    decision = evaluate(state_of(observations, rules), rules, T0 + 2 * DAY + HOUR)
    assert (decision.level, decision.name, decision.countries) == (2, "sustained", 3)


# Config: the [alerts] table, and the JSON-schema fragment the config schema embeds.
@cache
def schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / "alert-rules.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_defaults_agree_with_the_schema() -> None:
    assert rules_from_config({}) == AlertRules()
    props = schema_validator().schema["properties"]
    defaults = {k: v["default"] for k, v in props.items() if "default" in v}
    assert rules_from_config(defaults) == AlertRules()
    assert props["levels"]["items"]["properties"]["window"]["default"] == DAY / 1_000_000


def test_rules_from_config() -> None:
    raw = {"enabled": True, "min_confidence": 50, "min_sources": 2, "suppress_warninglisted": False,
           "expire_after": 3600, "levels": [{"name": "cross-border", "countries": 2, "window": 7200},
                                            {"name": "continental", "countries": 8}],
           "fast_growth": {"new_countries": 3, "window": 600.5}}
    schema_validator().validate(raw)
    assert rules_from_config(raw) == AlertRules(
        levels=(Rule("cross-border", 2, 2 * HOUR), Rule("continental", 8, DAY)),
        fast_growth=FastGrowth(3, 600_500_000), min_confidence=50, min_sources=2, suppress_warninglisted=False,
        expire_after=HOUR, enabled=True)


@pytest.mark.parametrize(("raw", "key"), [
    ({"min_confidence": 101}, "alerts.min_confidence"),
    ({"min_confidence": True}, "alerts.min_confidence"),
    ({"min_sources": 0}, "alerts.min_sources"),
    ({"expire_after": 0}, "alerts.expire_after"),
    ({"enabled": "yes"}, "alerts.enabled"),
    ({"colour": "red"}, "alerts.colour"),
    ({"levels": []}, "alerts.levels"),
    ({"levels": [{"name": "Big!", "countries": 3}]}, "alerts.levels[0].name"),
    ({"levels": [{"name": "a", "countries": 0}]}, "alerts.levels[0].countries"),
    ({"levels": [{"name": "a", "countries": 3, "extra": 1}]}, "alerts.levels[0].extra"),
    ({"fast_growth": {"new_countries": -1}}, "alerts.fast_growth.new_countries"),
    ({"fast_growth": {"window": "1h"}}, "alerts.fast_growth.window"),
])
def test_invalid_config_names_the_key_and_the_schema_agrees(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        rules_from_config(raw)
    assert not schema_validator().is_valid(raw)


def test_levels_must_ascend_and_have_distinct_names() -> None:
    # What the schema cannot say: rules_from_config checks it.
    for levels in ([{"name": "a", "countries": 3}, {"name": "b", "countries": 3}],
                   [{"name": "a", "countries": 3}, {"name": "a", "countries": 5}]):
        assert schema_validator().is_valid({"levels": levels})
        with pytest.raises(ConfigError, match=r"alerts\.levels"):
            rules_from_config({"levels": levels})


def test_config_schema_embeds_the_fragment() -> None:
    # config.py validates without a $ref registry and the config docs generator reads the schema as it stands,
    # so the config schema carries the [alerts] fragment inline: it must stay the same as the shipped fragment.
    config = json.loads((SCHEMA_DIR / "config.schema.json").read_text())
    embedded = config["properties"].get("alerts")
    if embedded is None:
        pytest.skip("the config schema has no [alerts] table yet")
    fragment = schema_validator().schema
    for key in ("type", "additionalProperties", "properties"):
        assert embedded.get(key) == fragment[key], key
