"""STIX 2.0 observed-data `objects` lifted into top-level STIX 2.1 SCOs with deterministic ids (normalize stage)."""

import uuid
from collections.abc import Iterator
from typing import Any

from exchange.errors import InvalidObject

# STIX 2.1 section 2.9: SCO ids are UUIDv5 under this OASIS namespace over the JCS-canonical JSON of the
# type's ID-contributing properties (listed per type in section 6). It is for SCOs only; indicators use
# the project's own namespace (exchange.normalize.ids).
_SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
_CONTRIBUTING: dict[str, tuple[str, ...]] = {
    "artifact": ("hashes", "payload_bin"),
    "autonomous-system": ("number",),
    "directory": ("path",),
    "domain-name": ("value",),
    "email-addr": ("value",),
    "email-message": ("from_ref", "subject", "body"),
    "file": ("hashes", "name", "parent_directory_ref", "extensions"),
    "ipv4-addr": ("value",),
    "ipv6-addr": ("value",),
    "mac-addr": ("value",),
    "mutex": ("name",),
    "network-traffic": ("start", "end", "src_ref", "dst_ref", "src_port", "dst_port", "protocols", "extensions"),
    "software": ("name", "cpe", "swid", "vendor", "version"),
    "url": ("value",),
    "user-account": ("account_type", "user_id", "account_login"),
    "windows-registry-key": ("key", "values"),
    "x509-certificate": ("hashes", "serial_number"),
}
_HEADER = ("type", "spec_version", "id")
_HASH_PREFERENCE = ("MD5", "SHA-1", "SHA-256", "SHA-512")  # section 2.9: one hash contributes, in this order

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
                 and set(_local_refs(_contributing(sco))) <= ids.keys()]
        if not ready:
            raise InvalidObject(f"{where}: reference cycle among 'objects'")
        for key in ready:
            ids[key] = _sco_id(_resolve(scos[key], ids))
    return ids


def _sco_id(sco: dict[str, Any]) -> str:
    # Lazy: stix2 takes ~0.35 s to import and only 2.0 observed-data needs its JCS canonicalizer.
    from stix2.canonicalization.Canonicalize import canonicalize

    contributing = _contributing(sco)
    if "hashes" in contributing and isinstance(contributing["hashes"], dict):
        hashes = contributing["hashes"]
        chosen = next((name for name in _HASH_PREFERENCE if name in hashes), next(iter(hashes), None))
        contributing["hashes"] = {chosen: hashes[chosen]} if chosen is not None else {}
    if not contributing:
        # Section 2.9: a type without contributing properties (process, custom types) gets a UUIDv4.
        return f"{sco['type']}--{uuid.uuid4()}"
    return f"{sco['type']}--{uuid.uuid5(_SCO_NAMESPACE, canonicalize(contributing, utf8=False))}"


def _contributing(sco: dict[str, Any]) -> dict[str, Any]:
    return {prop: sco[prop] for prop in _CONTRIBUTING.get(sco.get("type", ""), ()) if prop in sco}


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
