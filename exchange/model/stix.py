"""The STIX object header: the few fields the hub routes and indexes on, read from raw JSON.

Only what TAXII needs is checked here (type, id, spec_version, timestamps); deeper STIX
semantics belong to normalize/.
"""

import hashlib
import re
from functools import lru_cache
from typing import Any

import msgspec
import orjson

from exchange.errors import InvalidObject
from exchange.model.timestamps import parse_timestamp, parse_timestamp_text

SUPPORTED_SPEC_VERSIONS = frozenset({"2.0", "2.1"})
# STIX 2.1 section 2.9 (identifier) and 3.1 (type names: 3-250 chars, a-z 0-9 and hyphen).
# Always used with fullmatch: `$` would accept a trailing newline.
STIX_TYPE = re.compile(r"[a-z0-9][a-z0-9-]{1,248}[a-z0-9]")
_ID = re.compile(r"([a-z0-9][a-z0-9-]{1,248}[a-z0-9])--([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                 r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12})")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# STIX 2.1 section 3.2: spec_version is optional on SCOs (and then means 2.1), required on everything else.
SCO_TYPES = frozenset({
    "artifact", "autonomous-system", "directory", "domain-name", "email-addr", "email-message", "file",
    "ipv4-addr", "ipv6-addr", "mac-addr", "mutex", "network-traffic", "process", "software", "url",
    "user-account", "windows-registry-key", "x509-certificate",
})
UNVERSIONED = 0  # version key of objects with neither `modified` nor `created` (most SCOs)


class StixRecord(msgspec.Struct, frozen=True, gc=False):  # a struct: one per object on the hot path (see Claim)
    """One STIX object as it travels: typed header plus the JSON bytes, never re-parsed downstream."""

    id: str
    type: str
    spec_version: str
    version: int  # microseconds of `modified`, else `created`, else UNVERSIONED
    revoked: bool
    content_hash: bytes
    body: bytes


def object_ref(obj: Any) -> tuple[str, str]:
    """(id, version) of a possibly invalid object, as far as it has them, for status entries."""
    if not isinstance(obj, dict):
        return "", ""
    ident, version = obj.get("id"), obj.get("modified", obj.get("created"))
    return (ident if isinstance(ident, str) else "", version if isinstance(version, str) else "")


def read_record(obj: Any) -> StixRecord:
    """Check the header fields of one decoded object and wrap it; InvalidObject says what is wrong."""
    if not isinstance(obj, dict):
        raise InvalidObject(f"not a JSON object but {type(obj).__name__}")
    obj_type = obj.get("type")
    obj_id = obj.get("id")
    # What _ID.fullmatch(obj_id) with group 1 == obj_type checks, in three cheap steps: _ID itself backtracks
    # through the UUID (its type group also takes hex digits and hyphens), the costliest step of this function.
    if not (type(obj_type) is str and type(obj_id) is str and obj_id.startswith(obj_type)
            and obj_id[len(obj_type):len(obj_type) + 2] == "--" and _is_type(obj_type)
            and _UUID.fullmatch(obj_id, len(obj_type) + 2) is not None):
        raise _header_error(obj_type, obj_id)
    spec_version = obj.get("spec_version", "2.1" if obj_type in SCO_TYPES else None)
    if spec_version is None and "created" in obj:
        # STIX 2.0 puts spec_version on the bundle only, and 2.1 made it required on SDOs and SROs (section 3.2):
        # an SDO/SRO without it is a 2.0 object, as TAXII 2.1 servers serve them (medallion decides the same).
        spec_version = "2.0"
    if spec_version is None:
        raise InvalidObject("missing required property 'spec_version'")
    if not isinstance(spec_version, str) or spec_version not in SUPPORTED_SPEC_VERSIONS:
        raise InvalidObject(f"unsupported 'spec_version' {spec_version!r}: expected 2.1 or 2.0")
    created = timestamp_property(obj, "created")
    modified = timestamp_property(obj, "modified")
    version = modified if modified is not None else created if created is not None else UNVERSIONED
    revoked = obj.get("revoked", False)
    if type(revoked) is not bool:
        raise InvalidObject(f"invalid 'revoked' {revoked!r}: expected true or false")
    try:
        body = orjson.dumps(obj)
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits from a decoder other than orjson's
        raise InvalidObject(f"not serializable as JSON: {exc}") from None
    # Positional: a struct built with keywords costs several times more, once per object.
    return StixRecord(obj_id, obj_type, spec_version, version, revoked, hashlib.sha256(body).digest()[:16], body)


def timestamp_property(obj: dict[str, Any], prop: str) -> int | None:
    """An optional timestamp property in microseconds; InvalidObject naming the property when it is not one."""
    value = obj.get(prop)
    if value is None:
        return None
    try:
        return parse_timestamp_text(value) if type(value) is str else parse_timestamp(value)
    except ValueError as exc:
        raise InvalidObject(f"invalid '{prop}': {exc}") from None


@lru_cache(maxsize=512)  # a feed uses a handful of types
def _is_type(text: str) -> bool:
    return STIX_TYPE.fullmatch(text) is not None


def _header_error(obj_type: Any, obj_id: Any) -> InvalidObject:
    """What is wrong with an object's type and id, the type first."""
    if not isinstance(obj_type, str) or not obj_type:
        return InvalidObject("missing required property 'type'")
    if not STIX_TYPE.fullmatch(obj_type):
        return InvalidObject(f"invalid 'type' {obj_type!r}: 3-250 characters of a-z, 0-9 and '-'")
    if not isinstance(obj_id, str) or not obj_id:
        return InvalidObject("missing required property 'id'")
    if _ID.fullmatch(obj_id) is None:
        return InvalidObject(f"invalid 'id' {obj_id!r}: expected '<type>--<UUID>'")
    return InvalidObject(f"'id' {obj_id!r} does not start with its type {obj_type!r}")
