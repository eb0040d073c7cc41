"""STIX 2.0 observed-data `objects` lifted into top-level STIX 2.1 SCOs with deterministic ids (normalize stage)."""

import uuid
from collections.abc import Iterator
from typing import Any

from exchange.errors import InvalidObject
from exchange.normalize.ids import sco_id

_HEADER = ("type", "spec_version", "id")
# The ID contributing properties (STIX 2.1 section 2.9 and 6.x) that can hold references: an SCO's id depends on
# the ids of the SCOs these point at, so those ids are computed first. No other SCO type has such properties.
_REF_CONTRIBUTING: dict[str, tuple[str, ...]] = {
    "email-message": ("from_ref",),
    "file": ("parent_directory_ref", "extensions"),
    "network-traffic": ("src_ref", "dst_ref", "extensions"),
}

# Cyber-observable properties renamed or dropped between 2.0 and 2.1 (the same table as stix2-elevator's
# stix_stepper). Dropped ones have no 2.1 home: process name/arguments (2.1 keeps command_line only),
# file encryption fields, socket protocol_family.
_RENAMES: dict[str, dict[str, str]] = {
    "file": {"created": "ctime", "modified": "mtime", "accessed": "atime"},
    "directory": {"created": "ctime", "modified": "mtime", "accessed": "atime"},
    "process": {"binary_ref": "image_ref", "created": "created_time"},
    "user-account": {"password_last_changed": "credential_last_changed"},
}
_DROPS: dict[str, tuple[str, ...]] = {
    "file": ("is_encrypted", "encryption_algorithm", "decryption_key"),
    "process": ("name", "arguments"),
}


def extract_observables(observed_data: dict[str, Any]) -> list[dict[str, Any]]:
    """Replace `objects` of this (copied) observed-data by `object_refs`; return the SCOs it pointed at.

    The 2.0 producer never saw these ids, so nothing else can reference them: only the observed-data's own
    refs and the SCOs' local refs ("0", "1", ...) are rewritten.
    """
    embedded = observed_data.pop("objects")
    where = observed_data["id"]
    if not isinstance(embedded, dict) or not embedded or not all(isinstance(o, dict) for o in embedded.values()):
        raise InvalidObject(f"{where}: 'objects' must be a non-empty dictionary of cyber observables")
    scos = {key: _upgrade_sco(sco, where) for key, sco in embedded.items()}
    for key, sco in scos.items():
        missing = set(_local_refs(sco)) - scos.keys()
        if missing:
            raise InvalidObject(f"{where}: objects[{key!r}] refers to {sorted(missing)}, not in 'objects'")
    ids = _assign_ids(scos, where)
    observed_data["object_refs"] = list(ids.values())
    return [{"type": sco["type"], "spec_version": "2.1", "id": ids[key],
             **{prop: value for prop, value in _resolve(sco, ids).items() if prop not in _HEADER}}
            for key, sco in scos.items()]


def _assign_ids(scos: dict[str, dict[str, Any]], where: str) -> dict[str, str]:
    # An id depends on the ids of the SCOs its contributing properties refer to (a network-traffic's
    # src_ref), so ids are computed leaves first.
    ids: dict[str, str] = {}
    while len(ids) < len(scos):
        ready = [key for key, sco in scos.items() if key not in ids
                 and set(_local_refs(_id_inputs(sco))) <= ids.keys()]
        if not ready:
            raise InvalidObject(f"{where}: reference cycle among 'objects'")
        for key in ready:
            ids[key] = _sco_id(_resolve(scos[key], ids))
    return ids


def _sco_id(sco: dict[str, Any]) -> str:
    # The ids exchange.normalize.ids gives every SCO, over the values as sent: canonical values are the
    # business of a later step, which re-derives the id when it rewrites a value.
    try:
        return sco_id(sco["type"], sco)
    except InvalidObject:
        # Section 2.9: a type without ID contributing properties (process, custom types), or an object
        # carrying none of them, gets a UUIDv4.
        return f"{sco['type']}--{uuid.uuid4()}"


def _id_inputs(sco: dict[str, Any]) -> list[Any]:
    return [sco[prop] for prop in _REF_CONTRIBUTING.get(sco["type"], ()) if prop in sco]


def _upgrade_sco(sco: dict[str, Any], where: str) -> dict[str, Any]:
    sco_type = sco.get("type", "")
    if not isinstance(sco_type, str) or not sco_type:
        raise InvalidObject(f"{where}: an embedded cyber observable has no 'type'")
    renames, drops = _RENAMES.get(sco_type, {}), _DROPS.get(sco_type, ())
    new = {renames.get(key, key): value for key, value in sco.items() if key not in drops}
    extensions = new.get("extensions")
    if isinstance(extensions, dict) and isinstance(extensions.get("socket-ext"), dict):
        socket = {k: v for k, v in extensions["socket-ext"].items() if k != "protocol_family"}
        new["extensions"] = {**extensions, "socket-ext": socket}
    return new


def _local_refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith("_ref") and isinstance(item, str):
                yield item
            elif key.endswith("_refs") and isinstance(item, list):
                yield from (ref for ref in item if isinstance(ref, str))
            else:
                yield from _local_refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _local_refs(item)


def _resolve(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, dict):
        resolved: dict[str, Any] = {}
        for key, item in value.items():
            if key.endswith("_ref") and isinstance(item, str):
                resolved[key] = ids.get(item, item)
            elif key.endswith("_refs") and isinstance(item, list):
                resolved[key] = [ids.get(ref, ref) if isinstance(ref, str) else ref for ref in item]
            else:
                resolved[key] = _resolve(item, ids)
        return resolved
    if isinstance(value, list):
        return [_resolve(item, ids) for item in value]
    return value
