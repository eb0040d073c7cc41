"""The TLP matrix on every egress path: TAXII reads (taxii/objects.egress_page), pushes to peers
(dedup/relay.view_for, what fanout/push.py sends) and alert fan-out (fanout/subscriptions.plan)."""

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.dedup.relay import view_for
from exchange.fanout.records import Filters, Member, Notice, SseChannel, Subscription
from exchange.fanout.subscriptions import plan
from exchange.policy.egress import Recipient, Relation
from exchange.policy.tlp import TLP2_IDS, Tlp
from exchange.store.base import Page, StoredObject
from exchange.taxii.objects import egress_page
from tests.policy.test_egress import MATRIX, marked

ALERT = "grouping--5e5e5e5e-0000-4000-8000-000000000001"


def read_path(recipient: Recipient, obj: dict[str, Any]) -> bool:
    item = StoredObject(date_added=1, id=obj["id"], type=obj["type"], spec_version="2.1", version=1,
                        body=orjson.dumps(obj))
    return bool(egress_page(Page(items=[item], more=False), recipient, Tlp.GREEN, True).items)


def push_path(recipient: Recipient, obj: dict[str, Any]) -> bool:
    return view_for(recipient, obj, Tlp.GREEN) is not None


def member_of(recipient: Recipient) -> Member:
    return Member(name=recipient.name, account=recipient.name, country="DE", max_tlp=recipient.max_tlp,
                  subscriptions=(Subscription(id=f"{recipient.name}-live", channel=SseChannel(), filters=Filters()),))


def notice(tlp: Tlp, indicators: list[dict[str, Any]]) -> Notice:
    alert = {"type": "grouping", "spec_version": "2.1", "id": ALERT, "created": "2026-01-01T00:00:00.000Z",
             "modified": "2026-01-01T00:00:00.000Z", "context": "suspicious-activity",
             "object_refs": [i["id"] for i in indicators], "object_marking_refs": [TLP2_IDS[tlp]]}
    return Notice(alert_id=ALERT, version="2026-01-01T00:00:00.000Z", level=1, level_name="large-scale", tlp=tlp,
                  objects=(alert, *indicators))


def fanout_path(recipient: Recipient, obj: dict[str, Any], tlp: Tlp) -> bool:
    return bool(plan([member_of(recipient)], notice(tlp, [obj])))


PEERS = [r for r in MATRIX if r.relation is Relation.PEER]
MEMBERS = [r for r in MATRIX if r.relation is Relation.MEMBER]


@pytest.mark.parametrize("tlp", list(Tlp), ids=lambda t: t.label)
@pytest.mark.parametrize("recipient", list(MATRIX), ids=lambda r: f"{r.relation}-{r.name}")
def test_reads_follow_the_matrix(recipient: Recipient, tlp: Tlp) -> None:
    assert read_path(recipient, marked(tlp)) is (tlp in MATRIX[recipient])


@pytest.mark.parametrize("tlp", list(Tlp), ids=lambda t: t.label)
@pytest.mark.parametrize("recipient", PEERS, ids=lambda r: r.name)
def test_pushes_follow_the_matrix(recipient: Recipient, tlp: Tlp) -> None:
    assert push_path(recipient, marked(tlp)) is (tlp in MATRIX[recipient])


@pytest.mark.parametrize("tlp", list(Tlp), ids=lambda t: t.label)
@pytest.mark.parametrize("recipient", MEMBERS, ids=lambda r: r.name)
def test_alert_fanout_follows_the_matrix(recipient: Recipient, tlp: Tlp) -> None:
    assert fanout_path(recipient, marked(tlp), tlp) is (tlp in MATRIX[recipient])


levels = st.sampled_from(list(Tlp))


@given(st.sampled_from(MEMBERS), levels, st.lists(levels, min_size=1, max_size=4))
def test_no_fanned_out_bundle_holds_an_object_its_member_may_not_receive(recipient: Recipient, alert_tlp: Tlp,
                                                                         tlps: list[Tlp]) -> None:
    indicators = [{**marked(t), "id": f"indicator--00000000-0000-4000-8000-{i:012d}"} for i, t in enumerate(tlps)]
    for outgoing in plan([member_of(recipient)], notice(max([alert_tlp, *tlps]), indicators)):
        for obj in orjson.loads(outgoing.body)["objects"]:
            level = Tlp.GREEN if "object_marking_refs" not in obj else next(
                t for t in Tlp if TLP2_IDS[t] in obj["object_marking_refs"])
            assert level in MATRIX[recipient], (recipient.name, obj["id"], level)
