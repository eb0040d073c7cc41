"""STIX 2.1 bundles and TAXII envelopes, passed through; STIX 2.0 objects upgraded to 2.1 (normalize stage).

Plain dict transforms on orjson output: this is the hot path, so no `stix2.parse` (see DESIGN.md).
"""

import re
from typing import Any

from exchange.errors import InvalidObject
from exchange.model.timestamps import parse_timestamp
from exchange.normalize.formats.conform import nonconformity
from exchange.normalize.formats.observables import extract_observables
from exchange.normalize.formats.result import ReadResult, Reject, load_json, locate

_TYPE = re.compile(r"^[a-z0-9][a-z0-9-]{1,248}[a-z0-9]$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# STIX 2.1 section 10 open vocabularies. In 2.0, `labels` on these five types *was* the type
# (required, from the matching 2.0 vocabulary); 2.1 moved it to `<type>_types` and made `labels`
# free-form. Values from the 2.1 vocabulary move; anything else stays a plain label, so nothing is lost
# and the validator's vocabulary checks (codes 214-222) hold.
_TYPES_VOCAB: dict[str, tuple[str, frozenset[str]]] = {
    "indicator": ("indicator_types", frozenset({
        "anomalous-activity", "anonymization", "benign", "compromised", "malicious-activity", "attribution",
        "unknown"})),
    "malware": ("malware_types", frozenset({
        "adware", "backdoor", "bot", "bootkit", "ddos", "downloader", "dropper", "exploit-kit", "keylogger",
        "ransomware", "remote-access-trojan", "resource-exploitation", "rogue-security-software", "rootkit",
        "screen-capture", "spyware", "trojan", "unknown", "virus", "webshell", "wiper", "worm"})),
    "report": ("report_types", frozenset({
        "threat-report", "attack-pattern", "campaign", "identity", "indicator", "intrusion-set", "malware",
        "observed-data", "threat-actor", "tool", "vulnerability"})),
    "threat-actor": ("threat_actor_types", frozenset({
        "activist", "competitor", "crime-syndicate", "criminal", "hacker", "insider-accidental",
        "insider-disgruntled", "nation-state", "sensationalist", "spy", "terrorist", "unknown"})),
    "tool": ("tool_types", frozenset({
        "denial-of-service", "exploitation", "information-gathering", "network-capture",
        "credential-exploitation", "remote-access", "vulnerability-scanning", "unknown"})),
}

# STIX 2.1 section 7.2.1.4: the four TLP 1.0 marking definitions keep the ids they had in 2.0; 2.1 adds `name`.
_TLP_V21: dict[str, dict[str, Any]] = {
    f"marking-definition--{uuid}": {
        "type": "marking-definition", "spec_version": "2.1", "id": f"marking-definition--{uuid}",
        "created": "2017-01-20T00:00:00.000Z", "definition_type": "tlp", "name": f"TLP:{colour.upper()}",
        "definition": {"tlp": colour},
    }
    for colour, uuid in (
        ("white", "613f2e26-407d-48c7-9eca-b8e91df99dc9"), ("green", "34098fce-860f-48ae-8e50-ebd3cc5e41da"),
        ("amber", "f88d31f6-486f-44da-b317-01333bde0b82"), ("red", "5e57c739-391a-4eb3-b6be-7d15ca92d5ed"),
    )
}

# STIX 2.1 MUSTs on timestamp order (the validator's timestamp_compare): (later, earlier, may_be_equal).
# Checked here because real feeds break them (a 2.0 campaign with last_seen 1970-01-01) and such an
# object would poison every canonical copy made from it.
_ORDER_ANY = (("modified", "created", True),)
_ORDER: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "campaign": (("last_seen", "first_seen", True),),
    "infrastructure": (("last_seen", "first_seen", True),),
    "intrusion-set": (("last_seen", "first_seen", True),),
    "malware": (("last_seen", "first_seen", True),),
    "sighting": (("last_seen", "first_seen", True),),
    "threat-actor": (("last_seen", "first_seen", True),),
    "indicator": (("valid_until", "valid_from", False),),
    "observed-data": (("last_observed", "first_observed", True),),
    "relationship": (("stop_time", "start_time", False),),
}


def read_stix2(data: bytes, name: str = "") -> ReadResult:
    """A bundle, a TAXII envelope, one object or a JSON list of objects, in STIX 2.1 or 2.0."""
    document, error = load_json(data, name)
    if error is not None:
        return ReadResult([], [error])
    items = _container_items(document)
    if items is None:
        return ReadResult([], [Reject(locate(name, 1), "not a STIX bundle, TAXII envelope, STIX object or list "
                                                       "of STIX objects")])
    return convert_objects(items, name)


def convert_objects(items: list[Any], name: str = "") -> ReadResult:
    """Check each item's header, upgrade the 2.0 ones; bad items are rejected one by one.

    Indicators and sightings become claims, which check what they use; every other object is passed on as it
    is, so it must pass stix2-validator's MUST checks (a relationship without target_ref is rejected here, as
    it is when a converter makes it)."""
    objects: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for index, item in enumerate(items):
        try:
            converted = _convert(item)
        except InvalidObject as exc:
            rejects.append(Reject(locate(name, f"objects[{index}]"), str(exc)))
            continue
        for obj in map(_to_the_millisecond, converted):
            problem = None if obj["type"] in _CLAIMED else nonconformity(obj)
            if problem is None:
                objects.append(obj)
            else:
                rejects.append(Reject(locate(name, f"objects[{index}]"), problem))
    return ReadResult(objects, rejects)


_CLAIMED = frozenset({"indicator", "sighting"})
_WHOLE_SECOND = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def _to_the_millisecond(obj: dict[str, Any]) -> dict[str, Any]:
    """`created` and `modified` written to the millisecond, as STIX 2.1 section 3.2 requires (and stix2-validator
    checks): "…:00Z" is the same instant as "…:00.000Z", and feeds often write the former."""
    fixed = {prop: value[:-1] + ".000Z" for prop in ("created", "modified")
             if isinstance(value := obj.get(prop), str) and _WHOLE_SECOND.fullmatch(value)}
    return {**obj, **fixed} if fixed else obj


def upgrade_object(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """One STIX 2.0 SDO/SRO/marking as STIX 2.1 (plus the SCOs a 2.0 observed-data embedded).

    Ids are kept: 2.0 ids are UUIDs the producer and its peers already reference.
    """
    obj_id = obj["id"]
    if obj_id in _TLP_V21:
        return [dict(_TLP_V21[obj_id])]
    new = dict(obj)
    new["spec_version"] = "2.1"
    obj_type = new["type"]
    if obj_type in _TYPES_VOCAB:
        _labels_to_types(new)
    if obj_type == "indicator":
        new.setdefault("pattern_type", "stix")
        # Required in both versions, but 2.0 feeds in the wild omit it; `created` is the earliest the
        # producer vouches for. pattern_version is left out: it defaults to the object's spec_version (2.1),
        # whose grammar accepts 2.0 patterns; exchange.normalize.patterns canonicalizes them anyway.
        if "valid_from" not in new and "created" in new:
            new["valid_from"] = new["created"]
    elif obj_type == "malware":
        # Required in 2.1; 2.0 could not say whether an object was a family (stix2-elevator assumes false too).
        new.setdefault("is_family", False)
    elif obj_type == "observed-data" and "objects" in new:
        # stix2-validator 3.2.0 crashes on the deprecated embedded form, and 2.1 prefers top-level SCOs.
        # Those get STIX 2.1 deterministic ids, which differ from anything a 2.0 producer could have used;
        # harmless, since in 2.0 only the observed-data itself could point at its embedded objects.
        return [*extract_observables(new), new]
    return [new]


def _convert(item: Any) -> list[dict[str, Any]]:
    _check_header(item)
    version = item.get("spec_version")
    if version == "2.0" or (version is None and "created" in item):
        # 2.0 objects carry no spec_version; 2.1 SCOs may omit it too, but only SDOs/SROs (and 2.0's
        # marking definitions) have `created`, and 2.0 had no top-level SCOs.
        converted = upgrade_object(item)
    elif version in ("2.1", None):
        converted = [item]
    else:
        raise InvalidObject(f"{item['id']}: unsupported spec_version {version!r}")
    for obj in converted:
        _check_order(obj)
    return converted


def _container_items(document: Any) -> list[Any] | None:
    if isinstance(document, list):
        return document
    if not isinstance(document, dict):
        return None
    if document.get("type") == "bundle" or ("type" not in document and "objects" in document):
        items = document.get("objects", [])  # a bundle, or a TAXII 2.1 envelope (TAXII 2.1 section 3.7)
        return items if isinstance(items, list) else None
    if "type" in document and "id" in document:
        return [document]
    return None


def _check_header(item: Any) -> None:
    if not isinstance(item, dict):
        raise InvalidObject(f"not a JSON object but {type(item).__name__}")
    obj_type, obj_id = item.get("type"), item.get("id")
    if not isinstance(obj_type, str) or not obj_type:
        raise InvalidObject("missing required property 'type'")
    if not _TYPE.match(obj_type):
        raise InvalidObject(f"invalid 'type' {obj_type!r}: 3-250 characters of a-z, 0-9 and '-'")
    if not isinstance(obj_id, str) or not obj_id:
        raise InvalidObject(f"{obj_type}: missing required property 'id'")
    prefix, _, uuid = obj_id.partition("--")
    if prefix != obj_type or not _UUID.match(uuid):
        raise InvalidObject(f"invalid 'id' {obj_id!r}: expected '{obj_type}--<UUID>'")


def _check_order(obj: dict[str, Any]) -> None:
    for later, earlier, may_be_equal in (*_ORDER_ANY, *_ORDER.get(obj["type"], ())):
        late, early = obj.get(later), obj.get(earlier)
        if late is None or early is None:
            continue
        if isinstance(late, str) and isinstance(early, str) and len(late) == len(early):
            # Same shape (the common case: one producer, one precision): text order is time order, and
            # parsing costs more than the rest of this reader together.
            in_order = late > early or (may_be_equal and late == early)
        else:
            try:
                late_us, early_us = parse_timestamp(late), parse_timestamp(early)
            except ValueError as exc:
                raise InvalidObject(f"{obj['id']}: {exc}") from None
            in_order = late_us > early_us or (may_be_equal and late_us == early_us)
        if not in_order:
            relation = "at or after" if may_be_equal else "after"
            raise InvalidObject(f"{obj['id']}: '{later}' ({late}) must be {relation} '{earlier}' ({early})")


def _labels_to_types(obj: dict[str, Any]) -> None:
    labels = obj.get("labels")
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        return  # left as sent, for the object's reader to reject with its own message
    prop, vocab = _TYPES_VOCAB[obj["type"]]
    typed = [label for label in labels if label in vocab]
    if not typed:
        return
    obj.setdefault(prop, typed)
    rest = [label for label in labels if label not in vocab]
    if rest:
        obj["labels"] = rest
    else:
        del obj["labels"]
