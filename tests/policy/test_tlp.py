"""Policy stage: TLP 2.0 levels, their parsing, and the marking-definition ids that carry them (pure)."""

from typing import Any

import pytest
import stix2.v21

from exchange.policy.tlp import Tlp, marking_id, tlp_of_markings

# The OASIS TLP 2.0 marking definitions (extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d); misp-stix's
# TLP2MarkingDefinitions and the CACAO common data markings use the same UUIDs.
TLP2 = {
    Tlp.CLEAR: "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    Tlp.GREEN: "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    Tlp.AMBER: "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    Tlp.AMBER_STRICT: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    Tlp.RED: "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
# STIX 2.1 section 7.2.1.4, taken from the stix2 library rather than retyped: TLP 1.0, whose WHITE is TLP 2.0 CLEAR.
TLP1 = {
    Tlp.CLEAR: stix2.v21.TLP_WHITE.id,
    Tlp.GREEN: stix2.v21.TLP_GREEN.id,
    Tlp.AMBER: stix2.v21.TLP_AMBER.id,
    Tlp.RED: stix2.v21.TLP_RED.id,
}
OPENCTI_AMBER_STRICT = "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37"
STATEMENT = "marking-definition--2f4f2f0e-7a0b-4b5e-9c6e-3d1c2b0a9f8e"  # some copyright statement: not TLP


def test_levels_order_from_most_to_least_shareable() -> None:
    assert Tlp.CLEAR < Tlp.GREEN < Tlp.AMBER < Tlp.AMBER_STRICT < Tlp.RED
    assert max(Tlp.GREEN, Tlp.RED, Tlp.CLEAR) is Tlp.RED
    assert max(Tlp.AMBER, Tlp.AMBER_STRICT) is Tlp.AMBER_STRICT
    assert sorted([Tlp.RED, Tlp.CLEAR, Tlp.AMBER_STRICT, Tlp.GREEN, Tlp.AMBER]) == list(TLP2)


@pytest.mark.parametrize(
    ("level", "label"),
    [(Tlp.CLEAR, "TLP:CLEAR"), (Tlp.GREEN, "TLP:GREEN"), (Tlp.AMBER, "TLP:AMBER"),
     (Tlp.AMBER_STRICT, "TLP:AMBER+STRICT"), (Tlp.RED, "TLP:RED")],
)
def test_label_is_the_tlp_2_0_name_and_parses_back(level: Tlp, label: str) -> None:
    assert level.label == label
    assert Tlp.parse(label) is level


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("white", Tlp.CLEAR),  # TLP 1.0 WHITE is TLP 2.0 CLEAR
        ("TLP:WHITE", Tlp.CLEAR),
        ("clear", Tlp.CLEAR),
        ("Green", Tlp.GREEN),
        ("  tlp:green ", Tlp.GREEN),
        ("AMBER", Tlp.AMBER),
        ("TLP:AMBER+STRICT", Tlp.AMBER_STRICT),
        ("amber+strict", Tlp.AMBER_STRICT),
        ("amber_strict", Tlp.AMBER_STRICT),
        ("TLP:RED", Tlp.RED),
    ],
)
def test_parse(text: str, level: Tlp) -> None:
    assert Tlp.parse(text) is level


@pytest.mark.parametrize("text", ["", "TLP:", "purple", "TLP:PINK", "amber strict", "ambe", "TLP:AMBER+", "label"])
def test_parse_rejects_what_is_no_tlp_level(text: str) -> None:
    with pytest.raises(ValueError, match="not a TLP level"):
        Tlp.parse(text)


@pytest.mark.parametrize(("level", "ref"), list(TLP2.items()))
def test_tlp_2_0_ids_are_read(level: Tlp, ref: str) -> None:
    assert tlp_of_markings([ref]) is level


@pytest.mark.parametrize(("level", "ref"), list(TLP1.items()))
def test_stix_2_1_tlp_1_0_ids_are_read(level: Tlp, ref: str) -> None:
    assert tlp_of_markings([ref]) is level


def test_opencti_amber_strict_id_is_read() -> None:
    assert tlp_of_markings([OPENCTI_AMBER_STRICT]) is Tlp.AMBER_STRICT


@pytest.mark.parametrize(
    ("refs", "level"),
    [
        ([TLP1[Tlp.GREEN], TLP2[Tlp.RED]], Tlp.RED),
        ([TLP2[Tlp.RED], TLP1[Tlp.GREEN]], Tlp.RED),  # order does not matter
        ([TLP2[Tlp.CLEAR], STATEMENT, TLP1[Tlp.AMBER]], Tlp.AMBER),
        ([TLP2[Tlp.AMBER], OPENCTI_AMBER_STRICT], Tlp.AMBER_STRICT),
        ([TLP1[Tlp.CLEAR], TLP2[Tlp.GREEN]], Tlp.GREEN),
        ([TLP1[Tlp.RED], OPENCTI_AMBER_STRICT, TLP2[Tlp.CLEAR]], Tlp.RED),
        ([STATEMENT, 7, None, TLP1[Tlp.CLEAR]], Tlp.CLEAR),  # junk entries are skipped, not fatal
    ],
)
def test_mixed_markings_take_the_strictest(refs: list[Any], level: Tlp) -> None:
    assert tlp_of_markings(refs) is level


@pytest.mark.parametrize(
    "refs",
    [
        None,
        [],
        [STATEMENT],
        TLP2[Tlp.RED],  # a bare string, not the list STIX requires
        {"object_marking_refs": [TLP2[Tlp.RED]]},
        [{"id": TLP2[Tlp.RED]}],
        [TLP2[Tlp.RED].upper()],  # ids are compared exactly, as STIX identifiers are
        ["TLP:RED", "red"],  # labels are no marking refs
        [123, True, None],
    ],
)
def test_no_tlp_marking_reads_as_none(refs: Any) -> None:
    assert tlp_of_markings(refs) is None


@pytest.mark.parametrize(("level", "ref"), list(TLP2.items()))
def test_marking_id_emits_tlp_2_0_ids(level: Tlp, ref: str) -> None:
    assert marking_id(level) == ref
    assert tlp_of_markings([marking_id(level)]) is level
    assert marking_id(level) not in TLP1.values()
