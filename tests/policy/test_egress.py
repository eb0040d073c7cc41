"""TLP 2.0 egress rules: every marking x every recipient relationship, and properties over random objects."""

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.dedup.merge import PROVENANCE_EXTENSION
from exchange.dedup.relay import strip_echo, view_for
from exchange.policy.egress import RECIPIENTS_PROPERTY, Recipient, Relation, may_receive, may_receive_object
from exchange.policy.tlp import TLP2_IDS, Tlp

OPERATOR = Recipient("ops", Relation.OPERATOR, Tlp.RED)
GREEN_MEMBER = Recipient("bank", Relation.MEMBER, Tlp.GREEN)
AMBER_MEMBER = Recipient("utility", Relation.MEMBER, Tlp.AMBER)
RED_MEMBER = Recipient("ministry", Relation.MEMBER, Tlp.RED)
GREEN_PEER = Recipient("peer:fr", Relation.PEER, Tlp.GREEN, aliases=frozenset({"fr"}))
AMBER_PEER = Recipient("peer:nl", Relation.PEER, Tlp.AMBER, aliases=frozenset({"nl"}))
AMBER_CONSTITUENTS_PEER = Recipient("peer:be", Relation.PEER, Tlp.RED, amber_constituents=True,
                                    aliases=frozenset({"be"}))
CLEAR_PEER = Recipient("peer:xx", Relation.PEER, Tlp.CLEAR)
C, G, A, S, R = Tlp.CLEAR, Tlp.GREEN, Tlp.AMBER, Tlp.AMBER_STRICT, Tlp.RED

# Who gets what, unnamed: the whole matrix, written out so a rule change shows up here.
MATRIX = {
    OPERATOR: {C, G, A, S, R},
    GREEN_MEMBER: {C, G},
    AMBER_MEMBER: {C, G, A},
    RED_MEMBER: {C, G, A},  # AMBER+STRICT never leaves the recipient organization; RED only when named
    GREEN_PEER: {C, G},
    AMBER_PEER: {C, G},  # AMBER to a peer only for its constituents, by agreement
    AMBER_CONSTITUENTS_PEER: {C, G, A},
    CLEAR_PEER: {C},
}


@pytest.mark.parametrize("recipient", list(MATRIX), ids=lambda r: f"{r.relation}-{r.name}")
@pytest.mark.parametrize("tlp", list(Tlp), ids=lambda t: t.label)
def test_tlp_matrix_unnamed(recipient: Recipient, tlp: Tlp) -> None:
    assert may_receive(recipient, tlp) is (tlp in MATRIX[recipient])


@pytest.mark.parametrize("recipient, name, expected", [
    (RED_MEMBER, "ministry", True),
    (GREEN_MEMBER, "bank", False),  # named, but its entitlement stops below RED
    (AMBER_CONSTITUENTS_PEER, "be", True),  # by alias (the peer id)
    (AMBER_CONSTITUENTS_PEER, "peer:be", True),
    (AMBER_PEER, "nl", False),  # the agreement's ceiling is AMBER
    (RED_MEMBER, "someone-else", False),
])
def test_red_goes_only_to_named_recipients_within_their_ceiling(recipient: Recipient, name: str,
                                                               expected: bool) -> None:
    assert may_receive(recipient, Tlp.RED, [name]) is expected


def marked(tlp: Tlp | None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "indicator", "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", **extra}
    if tlp is not None:
        obj["object_marking_refs"] = [TLP2_IDS[tlp]]
    return obj


def test_unmarked_objects_get_the_default() -> None:
    assert may_receive_object(GREEN_MEMBER, marked(None), Tlp.GREEN)
    assert not may_receive_object(GREEN_MEMBER, marked(None), Tlp.AMBER)


def test_the_strictest_of_several_markings_counts() -> None:
    obj = marked(None, object_marking_refs=[TLP2_IDS[Tlp.CLEAR], TLP2_IDS[Tlp.RED]])
    assert not may_receive_object(AMBER_MEMBER, obj, Tlp.GREEN)


recipients = st.builds(Recipient, name=st.sampled_from(["a", "b", "peer:c"]), relation=st.sampled_from(list(Relation)),
                       max_tlp=st.sampled_from(list(Tlp)), amber_constituents=st.booleans(),
                       aliases=st.frozensets(st.sampled_from(["c", "d"]), max_size=2),
                       hub_identity=st.sampled_from([None, "identity--00000000-0000-4000-8000-000000000001"]))
levels = st.sampled_from([None, *Tlp])
names = st.lists(st.sampled_from(["a", "b", "c", "d", "peer:c", "x"]), max_size=3)


@given(recipients, levels, names, st.sampled_from(list(Tlp)))
def test_no_object_reaches_a_recipient_its_marking_forbids(recipient: Recipient, tlp: Tlp | None,
                                                          named: list[str], default: Tlp) -> None:
    obj = marked(tlp, **{RECIPIENTS_PROPERTY: named})
    level = default if tlp is None else tlp
    view = view_for(recipient, obj, default)
    if view is not None:
        assert level <= recipient.max_tlp
        if level is Tlp.AMBER_STRICT:
            assert recipient.relation is Relation.OPERATOR
        if level is Tlp.AMBER:
            assert recipient.relation is not Relation.PEER or recipient.amber_constituents
        if level is Tlp.RED:
            assert recipient.relation is Relation.OPERATOR or recipient.named_in(named)
    # Stricter never shows more: what a recipient may not see at one level it may not see at any higher one
    # (unless the object names it: a TLP:RED object addressed to a member reaches it, AMBER+STRICT never).
    if view is None and tlp is not None and not recipient.named_in(named):
        for stricter in (t for t in Tlp if t > tlp):
            assert view_for(recipient, marked(stricter, **{RECIPIENTS_PROPERTY: named}), default) is None


HUB_A, HUB_B = "identity--00000000-0000-4000-8000-00000000000a", "identity--00000000-0000-4000-8000-00000000000b"


def canonical(paths: list[list[str]]) -> dict[str, Any]:
    claims = [{"source": f"s{i}", "original_id": f"indicator--00000000-0000-4000-8000-{i:012d}",
               "original_modified": "2024-01-01T00:00:00.000Z", "tlp": "TLP:GREEN", "origin": p[0], "path": p}
              for i, p in enumerate(paths)]
    return marked(Tlp.GREEN, extensions={PROVENANCE_EXTENSION: {"extension_type": "property-extension",
                                                                "claims": claims, "source_count": len(claims)}})


def test_claims_are_never_echoed_to_a_hub_on_their_path() -> None:
    obj = canonical([[HUB_A], [HUB_B, HUB_A]])
    view = strip_echo(obj, HUB_B)
    assert view is not None
    assert [c["path"] for c in view["extensions"][PROVENANCE_EXTENSION]["claims"]] == [[HUB_A]]
    assert strip_echo(canonical([[HUB_B, HUB_A]]), HUB_B) is None  # nothing new for B: not sent at all
    assert strip_echo(obj, "identity--00000000-0000-4000-8000-00000000000c") is obj
    peer_b = Recipient("peer:b", Relation.PEER, Tlp.GREEN, hub_identity=HUB_B)
    assert view_for(peer_b, canonical([[HUB_B]]), Tlp.GREEN) is None
