"""TLP 2.0 levels and the marking-definition ids that carry them (pure).

Recognized: the OASIS TLP 2.0 marking definitions, the STIX 2.1 TLP 1.0 ids (WHITE is read as CLEAR),
and OpenCTI's AMBER+STRICT id. Emitted: the OASIS TLP 2.0 ids only.
"""

from enum import IntEnum
from typing import Any


class Tlp(IntEnum):
    """Ordered from most to least shareable, so `max` of two levels is the stricter one."""

    CLEAR = 0
    GREEN = 1
    AMBER = 2
    AMBER_STRICT = 3
    RED = 4

    @property
    def label(self) -> str:
        return "TLP:" + self.name.replace("_", "+")

    @classmethod
    def parse(cls, text: str) -> "Tlp":
        """'green', 'TLP:AMBER+STRICT', 'amber_strict', 'white' (TLP 1.0 for CLEAR)."""
        key = text.strip().upper().removeprefix("TLP:").replace("+", "_").replace("-", "_")
        if key == "WHITE":
            return cls.CLEAR
        try:
            return cls[key]
        except KeyError:
            raise ValueError(f"not a TLP level: {text!r}") from None


# OASIS TLP 2.0 marking definitions (extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d).
TLP2_IDS: dict[Tlp, str] = {
    Tlp.CLEAR: "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    Tlp.GREEN: "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    Tlp.AMBER: "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    Tlp.AMBER_STRICT: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    Tlp.RED: "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}
_KNOWN: dict[str, Tlp] = {
    **{marking: level for level, marking in TLP2_IDS.items()},
    # STIX 2.1 section 7.2.1.4: the TLP 1.0 marking definitions.
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": Tlp.CLEAR,
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": Tlp.GREEN,
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": Tlp.AMBER,
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": Tlp.RED,
    # OpenCTI's own AMBER+STRICT, widespread in feeds exported from it.
    "marking-definition--826578e1-40ad-459f-bc73-ede076f81f37": Tlp.AMBER_STRICT,
}


def tlp_of_markings(marking_refs: Any) -> Tlp | None:
    """The strictest TLP among an object's object_marking_refs; None when it carries no TLP marking."""
    if type(marking_refs) is not list:
        return None
    if len(marking_refs) == 1:  # the usual case: one TLP marking
        ref = marking_refs[0]
        return _KNOWN.get(ref) if type(ref) is str else None
    levels = [_KNOWN[ref] for ref in marking_refs if isinstance(ref, str) and ref in _KNOWN]
    return max(levels) if levels else None


def marking_id(level: Tlp) -> str:
    return TLP2_IDS[level]


TLP2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"


def marking_definition(level: Tlp) -> dict[str, Any]:
    """The OASIS TLP 2.0 marking-definition object of a level (cti-stix-common-objects), for bundles that must
    carry what their objects reference: STIX 2.1 predefines only the TLP 1.0 markings."""
    return {"type": "marking-definition", "spec_version": "2.1", "id": TLP2_IDS[level],
            "created": "2022-10-01T00:00:00.000Z", "name": level.label,
            "extensions": {TLP2_EXTENSION: {"extension_type": "property-extension",
                                            "tlp_2_0": level.name.lower().replace("_", "+")}}}
