"""Correlate stage: one alert per threat, everywhere — deterministic ids, the life cycle, the STIX form (checked
with stix2-validator and the shipped JSON Schema), and alerts of peer hubs merged with ours."""

import copy
import json
from functools import cache
from typing import Any

import jsonschema
import pytest
from stix2validator import ValidationOptions, validate_instance

from exchange.config import SCHEMA_DIR
from exchange.correlate.alert_stix import ALERT_EXTENSION, alert_object, parse_alert
from exchange.correlate.alerts import Alert, AlertReason, AlertStatus, advance, alert_id, close, recompute
from exchange.correlate.rules import AlertRules, Decision
from exchange.correlate.spread import SpreadState, merge, update
from exchange.dedup.merge import MIN_STEP, PROJECT_IDENTITY, HubIdentity
from exchange.errors import InvalidObject
from exchange.model.timestamps import parse_timestamp
from exchange.normalize.ids import NAMESPACE
from exchange.policy.tlp import Tlp, marking_id
from tests.correlate.helpers import COUNTRIES, DAY, HASH, HOUR, IP, KILL_SWITCH, MINUTE, T0, obs, spread_over

HUB = HubIdentity("CERT-X")
RULES = AlertRules()
FAMILY = "family:wannacryptor"
# As tests/dedup/test_merge.py: strict, but for check 103 (UUIDv4 ids): alert ids are UUIDv5 of the threat key
# by design (DESIGN.md "Deterministic ids make hubs converge").
VALIDATION = ValidationOptions(version="2.1", strict=True, disabled="103")


@cache
def extension_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / "alert.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def assert_valid(obj: dict[str, Any]) -> None:
    assert [str(e) for e in validate_instance(obj, VALIDATION).errors] == []
    extension_validator().validate(obj["extensions"][ALERT_EXTENSION])


def publish(alert: Alert) -> dict[str, Any]:
    obj = alert_object(alert, HUB)
    assert_valid(obj)
    return obj


def family_state(countries: list[str], *, start: int = T0, step: int = 2 * HOUR, **props: Any) -> SpreadState:
    return update({}, spread_over(countries, start=start, step=step, families=("WannaCry",), **props))[FAMILY]


def test_alert_id_is_deterministic_from_the_threat_key() -> None:
    import uuid

    assert alert_id(FAMILY) == alert_id("family:" + "wannacryptor")  # two independent computations
    assert alert_id(FAMILY) == f"grouping--{uuid.uuid5(NAMESPACE, 'alert:' + FAMILY)}"
    assert len({alert_id(k) for k in (FAMILY, "family:emotet", f"indicator:{KILL_SWITCH}", "campaign:wannacryptor",
                                      "intrusion-set:wannacryptor")}) == 5
    with pytest.raises(ValueError):
        alert_id("wannacry")


def test_life_cycle_open_escalate_expire_reopen() -> None:
    three = family_state(COUNTRIES[:3])
    now = T0 + 5 * HOUR
    opened = recompute(None, three, RULES, now=now)
    assert opened is not None
    assert (opened.status, opened.reason, opened.level, opened.level_name) == (
        AlertStatus.OPEN, AlertReason.THRESHOLD, 1, "large-scale")
    assert opened.created == opened.modified == now
    assert recompute(opened, three, RULES, now=now + MINUTE) is None  # nothing new to say
    four = family_state(COUNTRIES[:4])
    spread = recompute(opened, four, RULES, now=now + 2 * HOUR)  # a country more, same level: a new version
    assert spread is not None and spread.id == opened.id and spread.modified > opened.modified
    assert (spread.level, spread.status, spread.reason) == (1, AlertStatus.OPEN, AlertReason.MORE_COUNTRIES)
    assert spread.spread.countries == frozenset(COUNTRIES[:4])
    assert recompute(spread, four, RULES, now=now + 3 * HOUR) is None  # and nothing more until it changes

    ten = family_state(COUNTRIES[:10], step=2 * HOUR)
    later = T0 + 19 * HOUR
    escalated = recompute(opened, ten, RULES, now=later)
    assert escalated is not None
    assert (escalated.id, escalated.status, escalated.reason, escalated.level) == (
        opened.id, AlertStatus.ESCALATED, AlertReason.MORE_COUNTRIES, 2)
    assert escalated.created == opened.created and escalated.modified > opened.modified
    first, second = publish(opened), publish(escalated)
    assert first["id"] == second["id"] and second["modified"] > first["modified"]
    assert first["created"] == second["created"]

    assert recompute(escalated, ten, RULES, now=later + 2 * DAY) is None  # quiet, but not for expire_after yet
    expired = recompute(escalated, ten, RULES, now=later + 8 * DAY)
    assert expired is not None
    assert (expired.status, expired.reason, expired.level) == (AlertStatus.EXPIRED, AlertReason.NO_RECENT_REPORTS, 2)
    publish(expired)

    again = merge(ten, family_state(["SE", "NO", "CH"], start=later + 9 * DAY))
    reopened = recompute(expired, again, RULES, now=later + 9 * DAY + 5 * HOUR)
    assert reopened is not None
    assert (reopened.id, reopened.status, reopened.reason, reopened.level) == (
        opened.id, AlertStatus.OPEN, AlertReason.REPORTED_AGAIN, 1)
    publish(reopened)


def test_fast_growth_opens_higher_and_escalates_with_its_reason() -> None:
    fast = family_state(COUNTRIES[:5], step=10 * MINUTE)
    alert = recompute(None, fast, RULES, now=T0 + 50 * MINUTE)
    assert alert is not None and (alert.level, alert.reason) == (2, AlertReason.FAST_GROWTH)
    assert recompute(None, fast, RULES, now=T0 + 70 * MINUTE).level == 1  # type: ignore[union-attr]
    slow = recompute(None, family_state(COUNTRIES[:3]), RULES, now=T0 + 5 * HOUR)
    assert slow is not None
    burst = merge(family_state(COUNTRIES[:3]), family_state(COUNTRIES[3:8], start=T0 + 5 * HOUR, step=5 * MINUTE))
    escalated = recompute(slow, burst, RULES, now=T0 + 5 * HOUR + 30 * MINUTE)
    assert escalated is not None and (escalated.level, escalated.reason) == (2, AlertReason.FAST_GROWTH)


def test_versions_are_strictly_newer_even_at_the_same_instant() -> None:
    opened = recompute(None, family_state(COUNTRIES[:3]), RULES, now=T0 + 5 * HOUR)
    assert opened is not None
    escalated = advance(opened, opened.spread, Decision(2, "widespread", 10, 0), now=opened.modified)
    assert escalated is not None and escalated.modified == opened.modified + MIN_STEP


def test_warninglisted_indicator_alert_closes_and_operator_close_sticks() -> None:
    key = f"indicator:{KILL_SWITCH}"
    state = update({}, spread_over(COUNTRIES[:3]))[key]
    opened = recompute(None, state, RULES, now=T0 + HOUR)
    assert opened is not None
    flagged = update({key: state}, [obs("FR", warninglists=("alexa",))])[key]
    closed = recompute(opened, flagged, RULES, now=T0 + 2 * HOUR)
    assert closed is not None and (closed.status, closed.reason) == (AlertStatus.CLOSED, AlertReason.WARNINGLISTED)
    publish(closed)

    by_operator = close(opened, now=T0 + 2 * HOUR)
    assert (by_operator.status, by_operator.reason) == (AlertStatus.CLOSED, AlertReason.OPERATOR)
    assert close(by_operator, now=T0 + 3 * HOUR) is by_operator
    assert recompute(by_operator, state, RULES, now=T0 + 3 * HOUR) is None  # same level: stays closed
    wider = update({key: state}, spread_over(COUNTRIES[3:10], start=T0 + 2 * HOUR))[key]
    reopened = recompute(by_operator, wider, RULES, now=T0 + 3 * HOUR)
    assert reopened is not None and reopened.status is AlertStatus.OPEN and reopened.level > by_operator.level


def test_an_indicator_alert_closes_when_its_family_takes_over() -> None:
    key = f"indicator:{KILL_SWITCH}"
    state = update({}, spread_over(COUNTRIES[:3]))[key]
    opened = recompute(None, state, RULES, now=T0 + HOUR)
    assert opened is not None
    changed = update({key: state}, [obs("DE", at=T0 + HOUR, families=("WCry",))])
    closed = recompute(opened, changed[key], RULES, now=T0 + 2 * HOUR)
    assert closed is not None and (closed.status, closed.reason) == (AlertStatus.CLOSED, AlertReason.SUBSUMED)
    family = recompute(None, changed[FAMILY], RULES, now=T0 + 2 * HOUR)
    assert family is not None and family.spread.countries == set(COUNTRIES[:3])


def test_stix_form() -> None:
    observations = [*spread_over(COUNTRIES[:3], families=("WannaCry",), tlp=Tlp.CLEAR),
                    obs("DE", indicator=HASH, families=("WCry",), tlp=Tlp.AMBER),
                    obs(None, source="honeypot", indicator=IP, families=("wanna decryptor",))]
    alert = recompute(None, update({}, observations)[FAMILY], RULES, now=T0 + HOUR)
    assert alert is not None
    obj = publish(alert)
    assert obj["type"] == "grouping" and obj["context"] == "suspicious-activity"
    assert obj["id"] == alert_id(FAMILY) and obj["created_by_ref"] == HUB.id
    assert obj["object_refs"] == sorted([KILL_SWITCH, HASH, IP])
    assert obj["object_marking_refs"] == [marking_id(Tlp.AMBER)]  # the strictest of its indicators
    ext = obj["extensions"][ALERT_EXTENSION]
    assert ext["threat_key"] == FAMILY and ext["family"] == "wannacryptor" and ext["families"] == ["wannacryptor"]
    assert (ext["level"], ext["level_name"], ext["status"]) == (1, "large-scale", "open")
    assert ext["countries"] == sorted(COUNTRIES[:3]) and ext["country_count"] == 3
    assert ext["source_count"] == 4  # the honeypot has no country but is a source
    assert parse_timestamp(ext["first_seen"]) == T0
    assert "warninglists" not in ext


def test_extension_definition_ships_as_a_valid_bundle() -> None:
    bundle = json.loads((SCHEMA_DIR / "alert-extension-definition.json").read_text())
    assert [str(e) for e in validate_instance(bundle, ValidationOptions(version="2.1", strict=True)).errors] == []
    definition = next(o for o in bundle["objects"] if o["type"] == "extension-definition")
    assert definition["id"] == ALERT_EXTENSION and definition["created_by_ref"] == PROJECT_IDENTITY
    assert definition["extension_types"] == ["property-extension"]
    assert definition["schema"].endswith("/alert.schema.json")
    assert extension_validator().schema["$id"] == definition["schema"]


def test_parse_round_trip() -> None:
    observations = [*spread_over(COUNTRIES[:4], families=("WannaCry",)), obs(None, source="honeypot")]
    alert = recompute(None, update({}, observations)[FAMILY], RULES, now=T0 + HOUR)
    assert alert is not None
    assert parse_alert(publish(alert), default_tlp=Tlp.GREEN) == alert


def test_peer_alerts_merge_without_double_counting() -> None:
    """Five hubs in five countries, each told by its own CERT, naming the family differently: one alert id on
    every hub, and the countries unioned however often and in whatever order peers' alerts arrive."""
    names = {"FR": "WannaCry", "DE": "WCry", "PL": "wanna decryptor", "IT": "WannaCrypt", "ES": "Wana Decrypt0r"}
    hubs = {c: update({}, [obs(c, at=T0 + i * HOUR, families=(n,), indicator=[KILL_SWITCH, HASH, IP][i % 3])])
            for i, (c, n) in enumerate(names.items())}
    assert {key for changed in hubs.values() for key in changed if key.startswith("family:")} == {FAMILY}
    # The French hub hears from the German and Polish hubs' alerts (reconstructed from their objects) twice.
    now = T0 + 5 * HOUR
    local = hubs["FR"]
    peer_alerts = []
    for country in ("DE", "PL"):
        peer_state = merge(hubs[country][FAMILY], hubs["FR"][FAMILY])  # they already heard of France
        peer_alert = Alert(FAMILY, 1, "large-scale", AlertStatus.OPEN, AlertReason.THRESHOLD, now, now, peer_state)
        peer_alerts.append(parse_alert(publish(peer_alert), default_tlp=Tlp.GREEN))
    for _ in range(2):
        for peer in peer_alerts:
            local = local | update(local, remote=[peer.spread])
    assert local[FAMILY].countries == {"FR", "DE", "PL"}
    assert local[FAMILY].sources == {"cert-fr", "cert-de", "cert-pl"}
    alert = recompute(None, local[FAMILY], RULES, now=now)
    assert alert is not None and alert.id == peer_alerts[0].id and alert.level == 1


def bad(mutate: Any) -> dict[str, Any]:
    alert = recompute(None, family_state(COUNTRIES[:3]), RULES, now=T0 + 5 * HOUR)
    assert alert is not None
    obj = copy.deepcopy(alert_object(alert, HUB))
    mutate(obj, obj["extensions"][ALERT_EXTENSION])
    return obj


@pytest.mark.parametrize("mutate", [
    lambda o, e: o.update(type="report"),
    lambda o, e: o.update(id=alert_id("family:emotet")),  # an id that is not the threat key's
    lambda o, e: e.update(threat_key="family:emotet"),
    lambda o, e: e.update(threat_key="no-kind"),
    lambda o, e: e.update(level=0),
    lambda o, e: e.update(level="1"),
    lambda o, e: e.update(status="ringing"),
    lambda o, e: e.update(reason=None),
    lambda o, e: e.update(reporters=[]),
    lambda o, e: e["reporters"][0].update(country="France"),
    lambda o, e: e["reporters"][0].update(first_seen="yesterday"),
    lambda o, e: e["reporters"][0].update(first_seen="2030-01-01T00:00:00Z"),
    lambda o, e: e["reporters"][0].pop("source"),
    lambda o, e: e.update(families=["ok", 3]),
    lambda o, e: e.update(related=["friends:x"]),
    lambda o, e: e.update(extension_type="new-sdo"),
    lambda o, e: o.pop("extensions"),
    lambda o, e: o.update(object_refs=["malware--00000000-0000-4000-8000-000000000000"]),
    lambda o, e: o.update(object_refs=[]),
    lambda o, e: o.update(modified="2000-01-01T00:00:00Z"),
])
def test_malformed_peer_alerts_are_rejected(mutate: Any) -> None:
    with pytest.raises(InvalidObject):
        parse_alert(bad(mutate), default_tlp=Tlp.GREEN)


def test_unmarked_peer_alert_takes_the_default_tlp() -> None:
    obj = bad(lambda o, e: o.pop("object_marking_refs"))
    assert parse_alert(obj, default_tlp=Tlp.AMBER).spread.tlp is Tlp.AMBER
    with pytest.raises(InvalidObject):
        parse_alert("not a dict", default_tlp=Tlp.GREEN)
