"""Subscription filters and per-member TLP views (pure)."""

from typing import Any

import orjson
import pytest

from exchange.fanout import ChannelKind, SseChannel, TaxiiChannel, matches, plan, taxii_view, view_for
from exchange.fanout.signing import bundle_id, idempotency_key
from exchange.policy.tlp import Tlp
from tests.fanout.helpers import indicator, member, notice, subscription, webhook

HOOK = webhook("http://127.0.0.1:1/hook")


@pytest.mark.parametrize(("filters", "wanted"), [
    ({}, True),
    ({"min_level": 2}, True),
    ({"min_level": 3}, False),
    ({"indicator_types": frozenset({"malicious-activity", "anomalous-activity"})}, True),
    ({"indicator_types": frozenset({"anomalous-activity"})}, False),
    ({"families": frozenset({"wannacry"})}, True),  # case does not matter
    ({"families": frozenset({"NotPetya", "WannaCry"})}, True),
    ({"families": frozenset({"NotPetya"})}, False),
    ({"countries": frozenset({"fr"})}, True),
    ({"countries": frozenset({"US", "JP"})}, False),
    ({"min_level": 2, "countries": frozenset({"FR"}), "families": frozenset({"WannaCry"})}, True),
    ({"min_level": 2, "countries": frozenset({"FR"}), "families": frozenset({"Emotet"})}, False),  # AND
])
def test_filter_matrix(filters: dict[str, Any], wanted: bool) -> None:
    alert = notice(level=2, countries=("DE", "FR"), families=("WannaCry",), indicator_types=("malicious-activity",))
    assert matches(subscription("s", HOOK, **filters), alert) is wanted


def ids(objects: list[dict[str, Any]] | None) -> list[str] | None:
    return None if objects is None else [o["id"] for o in objects]


@pytest.mark.parametrize(("alert_tlp", "max_tlp", "sees_alert"), [
    (Tlp.CLEAR, Tlp.CLEAR, True),
    (Tlp.GREEN, Tlp.CLEAR, False),  # above the member's entitlement
    (Tlp.GREEN, Tlp.GREEN, True),
    (Tlp.AMBER, Tlp.GREEN, False),
    (Tlp.AMBER, Tlp.AMBER, True),
    (Tlp.AMBER_STRICT, Tlp.RED, False),  # the hub's own organization only: members are constituents
    (Tlp.RED, Tlp.RED, False),  # only to members the alert names
])
def test_alert_tlp_against_the_members_entitlement(alert_tlp: Tlp, max_tlp: Tlp, sees_alert: bool) -> None:
    alert = notice(tlp=alert_tlp, indicators=[indicator(1, Tlp.CLEAR)])
    view = view_for(member("acme", max_tlp=max_tlp), alert)
    assert ids(view) == ([alert.alert_id, "indicator--00000000-0000-4000-8000-000000000001"] if sees_alert else None)


def test_red_reaches_only_the_members_it_names() -> None:
    alert = notice(tlp=Tlp.RED, indicators=[indicator(1, Tlp.GREEN)], x_exchange_recipients=["acme-user"])
    assert view_for(member("acme", max_tlp=Tlp.RED), alert) is not None
    assert view_for(member("acme", max_tlp=Tlp.AMBER), alert) is None  # the entitlement is still a ceiling
    assert view_for(member("globex", max_tlp=Tlp.RED), alert) is None


def test_indicators_are_filtered_by_their_own_markings_and_the_alert_lists_only_what_is_sent() -> None:
    alert = notice(tlp=Tlp.GREEN, indicators=[indicator(1, Tlp.CLEAR), indicator(2, Tlp.AMBER),
                                              indicator(3, None), indicator(4, Tlp.RED)])
    green, amber = member("green", max_tlp=Tlp.GREEN), member("amber", max_tlp=Tlp.AMBER)
    view = view_for(green, alert)
    assert view is not None
    assert ids(view)[1:] == [indicator(1)["id"], indicator(3)["id"]]  # type: ignore[index]  # unmarked = GREEN
    assert view[0]["object_refs"] == [indicator(1)["id"], indicator(3)["id"]]
    assert ids(view_for(amber, alert))[1:] == [indicator(n)["id"] for n in (1, 2, 3)]  # type: ignore[index]
    # The hub's default for unmarked objects is configurable.
    assert ids(view_for(green, alert, default_tlp=Tlp.AMBER))[1:] == [indicator(1)["id"]]  # type: ignore[index]
    assert alert.objects[0]["object_refs"] == [indicator(n)["id"] for n in (1, 2, 3, 4)]  # the notice is untouched


def test_an_alert_whose_every_indicator_is_withheld_is_not_sent() -> None:
    alert = notice(tlp=Tlp.GREEN, indicators=[indicator(1, Tlp.AMBER)])
    assert view_for(member("green", max_tlp=Tlp.GREEN), alert) is None


def test_plan_queues_webhook_and_sse_subscriptions_that_match() -> None:
    acme = member("acme", subscription("acme-hook", HOOK), subscription("acme-sse", SseChannel(), min_level=1),
                  subscription("acme-taxii", TaxiiChannel()), subscription("acme-high", HOOK, min_level=3))
    small = member("small", subscription("small-hook", HOOK), max_tlp=Tlp.CLEAR)
    alert = notice(level=2, version="2026-03-02T00:00:00Z")
    out = plan([acme, small], alert)
    assert [(o.subscription_id, o.channel) for o in out] == [("acme-hook", ChannelKind.WEBHOOK),
                                                             ("acme-sse", ChannelKind.SSE)]
    first = out[0]
    assert first.version == "2026-03-02T00:00:00.000000Z"  # one text per instant
    assert first.idempotency_key == idempotency_key("acme-hook", alert.alert_id, first.version)
    bundle = orjson.loads(first.body)
    bid = bundle_id(alert.alert_id, first.version, [o["id"] for o in alert.objects])
    assert bundle == {"type": "bundle", "id": bid, "objects": list(alert.objects)}
    assert out[1].body is first.body  # the same view: the same bundle, byte for byte, for every subscriber
    assert b"\n" not in first.body
    # The same instant written differently is the same version, with the same key.
    assert plan([acme], notice(level=2, version="2026-03-02T00:00:00.000Z"))[0].idempotency_key == first.idempotency_key


def test_plan_sends_each_member_its_own_view_though_it_serializes_each_distinct_view_once() -> None:
    alert = notice(tlp=Tlp.GREEN, indicators=[indicator(1, Tlp.CLEAR), indicator(2, Tlp.AMBER),
                                              indicator(3, Tlp.RED, x_exchange_recipients=["named-user"])])
    members = [member(name, subscription(f"{name}-hook", HOOK), max_tlp=tlp) for name, tlp in (
        ("green", Tlp.GREEN), ("amber", Tlp.AMBER), ("named", Tlp.RED), ("green2", Tlp.GREEN), ("amber2", Tlp.AMBER))]
    out = plan(members, alert)
    assert [o.subscription_id for o in out] == [f"{m.name}-hook" for m in members]
    for member_, sent in zip(members, out, strict=True):
        # Byte for byte what serializing the member's own view as a whole bundle writes.
        view = view_for(member_, alert)
        assert view is not None
        bid = bundle_id(alert.alert_id, sent.version, [o["id"] for o in view])
        assert sent.body == orjson.dumps({"type": "bundle", "id": bid, "objects": view}), member_.name
    assert sorted({len(orjson.loads(o.body)["objects"][0]["object_refs"]) for o in out}) == [1, 2, 3]  # 3 views
    assert len({o.body for o in out}) == 3 and out[0].body is out[3].body  # shared within a view only


@pytest.mark.parametrize("red", [False, True])
def test_members_of_one_entitlement_share_a_view_unless_a_red_object_names_some_of_them(red: bool) -> None:
    # Views are judged once per entitlement when nothing is TLP:RED (nobody is named); a RED object makes the
    # view depend on who the member is, so two members entitled to RED may then see different bundles.
    extra = [indicator(3, Tlp.RED, x_exchange_recipients=["named-user"])] if red else []
    alert = notice(tlp=Tlp.GREEN, indicators=[indicator(1, Tlp.CLEAR), indicator(2, Tlp.AMBER), *extra])
    members = [member(name, subscription(f"{name}-hook", HOOK), max_tlp=tlp) for name, tlp in (
        ("named", Tlp.RED), ("other", Tlp.RED), ("amber", Tlp.AMBER), ("other2", Tlp.RED))]
    out = plan(members, alert)
    for member_, sent in zip(members, out, strict=True):
        view = view_for(member_, alert)
        assert view is not None
        assert [o["id"] for o in orjson.loads(sent.body)["objects"]] == [o["id"] for o in view], member_.name
    refs = [len(orjson.loads(o.body)["objects"][0]["object_refs"]) for o in out]
    assert refs == ([3, 2, 2, 2] if red else [2, 2, 2, 2])
    assert out[1].body is out[3].body


def test_taxii_view_follows_the_members_taxii_subscriptions() -> None:
    alert = notice(level=2)
    with_taxii = member("acme", subscription("t", TaxiiChannel(), min_level=2))
    assert ids(taxii_view(with_taxii, alert)) == ids(view_for(with_taxii, alert))
    assert taxii_view(member("acme", subscription("t", TaxiiChannel(), min_level=3)), alert) is None
    assert taxii_view(member("acme", subscription("h", HOOK)), alert) is None
