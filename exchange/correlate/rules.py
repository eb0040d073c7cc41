"""Correlate stage: alert rules as data (the `[alerts]` config table, schemas/alert-rules.schema.json) and the pure
decision they make about a threat's spread at a given moment."""

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exchange.correlate.spread import Admission, SpreadState, countries_within, new_countries_within, sources_within
from exchange.correlate.threats import ThreatKind
from exchange.errors import ConfigError
from exchange.policy.tlp import Tlp

SECOND = 1_000_000  # µs
HOUR = 3_600 * SECOND
DAY = 24 * HOUR
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


@dataclass(frozen=True, slots=True)
class Rule:
    """One alert level: reached when at least `countries` distinct countries report within `window`."""

    name: str
    countries: int
    window: int = DAY  # µs


@dataclass(frozen=True, slots=True)
class FastGrowth:
    """At least `new_countries` countries reporting for the first time within `window` raise the level by one."""

    new_countries: int = 5  # 0 turns it off
    window: int = HOUR


DEFAULT_LEVELS = (Rule("large-scale", 3), Rule("widespread", 10), Rule("global", 25))


@dataclass(frozen=True, slots=True)
class AlertRules:
    levels: tuple[Rule, ...] = DEFAULT_LEVELS  # level n is levels[n - 1]; countries strictly ascending
    fast_growth: FastGrowth = FastGrowth()
    min_confidence: int = 0
    min_sources: int = 1  # distinct sources within the level's window, besides the countries
    suppress_warninglisted: bool = True
    expire_after: int = 7 * DAY  # µs without any report, then the alert expires
    enabled: bool = True

    def admission(self, *, hub: str | None = None, audience: Tlp = Tlp.RED) -> Admission:
        return Admission(min_confidence=self.min_confidence, suppress_warninglisted=self.suppress_warninglisted,
                         hub=hub, audience=audience)

    def level_name(self, level: int) -> str | None:
        return self.levels[level - 1].name if 0 < level <= len(self.levels) else None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules say about a threat now; level 0 is no alert."""

    level: int
    name: str | None  # of the level
    countries: int  # reporting within the window of the level reached (of level 1 when none is)
    new_countries: int  # first reporting within the fast-growth window
    boosted: bool = False  # fast growth raised the level by one
    suppressed: bool = False  # the indicator is warninglisted
    subsumed: bool = False  # an indicator whose reports name a family, campaign or intrusion set: that one alerts
    quiet: bool = False  # nothing reported for expire_after (or ever)


def evaluate(state: SpreadState, rules: AlertRules, now: int) -> Decision:
    last = state.last_seen
    if rules.suppress_warninglisted and state.warninglists:
        return Decision(0, None, 0, 0, suppressed=True)
    if state.related and state.kind is ThreatKind.INDICATOR:
        # Its spread is part of each related threat's (spread.update), so the wider alert covers it: one alert
        # per threat, not one per indicator of a family as well.
        return Decision(0, None, 0, 0, subsumed=True)
    if not rules.enabled or last is None or now - last > rules.expire_after:
        return Decision(0, None, 0, 0, quiet=last is None or now - last > rules.expire_after)
    base, counted = 0, len(countries_within(state, now, rules.levels[0].window))
    for level, rule in enumerate(rules.levels, start=1):
        # Each level has its own window, so a higher one may hold while a lower one does not: take the highest.
        countries = len(countries_within(state, now, rule.window))
        if countries >= rule.countries and len(sources_within(state, now, rule.window)) >= rules.min_sources:
            base, counted = level, countries
    growth = rules.fast_growth
    fresh = len(new_countries_within(state, now, growth.window)) if growth.new_countries else 0
    boosted = (growth.new_countries > 0 and fresh >= growth.new_countries and base < len(rules.levels)
               and len(sources_within(state, now, growth.window)) >= rules.min_sources)
    level = base + 1 if boosted else base
    return Decision(level, rules.level_name(level), counted, fresh, boosted=boosted)


# [alerts] config table -> AlertRules. The table is validated against schemas/alert-rules.schema.json by the
# config loader; these checks repeat what a JSON Schema cannot say (ascending levels) and keep a hand-built dict
# from slipping through.
_TOP = {"enabled", "min_confidence", "min_sources", "suppress_warninglisted", "expire_after", "levels", "fast_growth"}


def _fail(key: str, problem: str) -> ConfigError:
    return ConfigError(f"config key 'alerts.{key}': {problem}")


def _int(raw: Mapping[str, Any], key: str, default: int, low: int, high: int, where: str = "") -> int:
    value = raw.get(key, default)
    if type(value) is not int or not low <= value <= high:
        raise _fail(where + key, f"must be an integer from {low} to {high}, not {value!r}")
    return value


def _seconds(raw: Mapping[str, Any], key: str, default: int, where: str = "") -> int:
    value = raw.get(key, default / SECOND)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 366 * 86_400:
        raise _fail(where + key, f"must be a number of seconds from 1 to 31622400, not {value!r}")
    return round(value * SECOND)


def _bool(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise _fail(key, f"must be true or false, not {value!r}")
    return value


def _table(value: Any, key: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(key, "must be a table")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _fail(f"{key}.{unknown[0]}" if key else unknown[0], "is not a known option")
    return value


def _levels(raw: Any) -> tuple[Rule, ...]:
    if not isinstance(raw, list) or not raw:
        raise _fail("levels", "must be a non-empty list of tables")
    levels = []
    for index, item in enumerate(raw):
        where = f"levels[{index}]."
        table = _table(item, f"levels[{index}]", {"name", "countries", "window"})
        name = table.get("name")
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            raise _fail(where + "name", f"must be lower-case letters, digits and hyphens, not {name!r}")
        levels.append(Rule(name, _int(table, "countries", 0, 1, 1000, where), _seconds(table, "window", DAY, where)))
    for index, (lower, higher) in enumerate(itertools.pairwise(levels), start=1):
        if higher.countries <= lower.countries:
            raise _fail(f"levels[{index}].countries", "must be more than the level before's")
    if len({rule.name for rule in levels}) != len(levels):
        raise _fail("levels", "level names must be distinct")
    return tuple(levels)


def rules_from_config(raw: Mapping[str, Any]) -> AlertRules:
    """The rules of an `[alerts]` table; every option has a default (AlertRules()). ConfigError names the key."""
    table = _table(raw, "", _TOP)
    defaults = AlertRules()
    growth = _table(table.get("fast_growth", {}), "fast_growth", {"new_countries", "window"})
    return AlertRules(
        levels=_levels(table["levels"]) if "levels" in table else defaults.levels,
        fast_growth=FastGrowth(_int(growth, "new_countries", defaults.fast_growth.new_countries, 0, 1000,
                                    "fast_growth."),
                               _seconds(growth, "window", defaults.fast_growth.window, "fast_growth.")),
        min_confidence=_int(table, "min_confidence", defaults.min_confidence, 0, 100),
        min_sources=_int(table, "min_sources", defaults.min_sources, 1, 1000),
        suppress_warninglisted=_bool(table, "suppress_warninglisted", defaults.suppress_warninglisted),
        expire_after=_seconds(table, "expire_after", defaults.expire_after),
        enabled=_bool(table, "enabled", defaults.enabled),
    )
