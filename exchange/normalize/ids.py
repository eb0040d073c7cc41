"""Normalize stage: deterministic ids, so that hubs seeing the same thing converge on the same id.

Indicators: UUIDv5 of the canonical pattern under the project namespace. SCOs: STIX 2.1 section 2.9 ids.
"""

import hashlib
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal

from exchange.errors import InvalidObject
from exchange.normalize.values import HASH_NAMES, ValueKind, canonical

# The project's own namespace, generated once for this project and fixed forever: changing it changes every
# indicator id in a federation. It must not be the OASIS SCO namespace below, which STIX 2.1 section 2.9
# reserves for SCO ids; SDO ids made from it could collide with SCO ids and would claim a meaning they lack.
NAMESPACE = uuid.UUID("5160cc98-7ba5-490d-91dd-b922adf134c3")
SCO_NAMESPACE = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
_NAMESPACE_BYTES = NAMESPACE.bytes

# "ID Contributing Properties" of each SCO type with a deterministic id (STIX 2.1 sections 6.1-6.18). process
# has none: section 2.9 gives it a UUIDv4, which cannot be computed, so it is absent here.
_ID_CONTRIBUTING: dict[str, tuple[str, ...]] = {
    "artifact": ("hashes", "payload_bin"),
    "autonomous-system": ("number",),
    "directory": ("path",),
    "domain-name": ("value",),
    "email-addr": ("value",),
    "email-message": ("from_ref", "subject", "body"),
    "file": ("hashes", "name", "extensions", "parent_directory_ref"),
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
# Section 2.9: of a hashes dictionary only one hash contributes, the first present in this order.
_HASH_PREFERENCE = ("MD5", "SHA-1", "SHA-256", "SHA-512")
_SCO_TYPES = {
    ValueKind.IPV4: "ipv4-addr",
    ValueKind.IPV4_CIDR: "ipv4-addr",
    ValueKind.IPV6: "ipv6-addr",
    ValueKind.IPV6_CIDR: "ipv6-addr",
    ValueKind.DOMAIN: "domain-name",
    ValueKind.URL: "url",
    ValueKind.EMAIL: "email-addr",
}


def indicator_id(canonical_pattern: str) -> str:
    """indicator--UUIDv5(NAMESPACE, pattern). The pattern must already be canonical (patterns.canonical_pattern);
    it is not canonicalized again here, so that a caller holding canonical text pays nothing twice."""
    return f"indicator--{uuid5_text(_NAMESPACE_BYTES, canonical_pattern)}"


def uuid5_text(namespace: bytes, name: str) -> str:
    """str(uuid.uuid5(UUID(bytes=namespace), name)), without the two UUID objects and the int round trip that
    make uuid.uuid5 the costliest step of an indicator id (RFC 9562 section 5.5: SHA-1, then version and variant),
    edited in the hex text: the version nibble becomes 5 and the variant nibble's top bits 10."""
    h = hashlib.sha1(namespace + name.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def sco_id(sco_type: str, properties: Mapping[str, object]) -> str:
    """The STIX 2.1 deterministic id of an SCO: UUIDv5 under the OASIS namespace over the RFC 8785 (JCS)
    serialization of its ID contributing properties (section 2.9). Values are used as given: normalize first."""
    keys = _ID_CONTRIBUTING.get(sco_type)
    if keys is None:
        raise InvalidObject(f"SCO type {sco_type!r} has no deterministic id (STIX 2.1 section 2.9)")
    contributing = {key: properties[key] for key in keys if key in properties}
    if "hashes" in contributing:
        contributing["hashes"] = _one_hash(sco_type, contributing["hashes"])
    if not contributing:
        raise InvalidObject(f"{sco_type} has none of its ID contributing properties {', '.join(keys)}")
    return f"{sco_type}--{uuid.uuid5(SCO_NAMESPACE, _jcs(contributing))}"


def sco_for(kind: ValueKind, value: str) -> tuple[str, dict[str, object]]:
    """The SCO type and properties that carry a value: ("file", {"hashes": {"SHA-256": ...}}), ...; the value is
    normalized, so sco_id(*sco_for(kind, value)) is the same for every spelling of it."""
    kind, value = canonical(kind, value)
    if kind in HASH_NAMES:
        return "file", {"hashes": {HASH_NAMES[kind]: value}}
    return _SCO_TYPES[kind], {"value": value}


def _one_hash(sco_type: str, hashes: object) -> dict[str, object]:
    if not isinstance(hashes, Mapping) or not hashes:
        raise InvalidObject(f"{sco_type} hashes must be a non-empty dictionary")
    for name in _HASH_PREFERENCE:
        if name in hashes:
            return {name: hashes[name]}
    # No preferred hash: the stix2 library takes the first key as sent, which depends on the sender's key order;
    # the smallest name is the same for every ordering of the same dictionary.
    name = min(hashes)
    return {name: hashes[name]}


def _jcs(value: object) -> str:
    """RFC 8785 JSON Canonicalization Scheme: keys sorted by UTF-16 code units, no white space, ECMAScript
    number text, strings escaped as JSON.stringify does (which json.dumps with ensure_ascii=False matches)."""
    match value:
        case bool() | None:
            return json.dumps(value)
        case int():
            return str(value)
        case float():
            return _es_number(value)
        case str():
            return json.dumps(value, ensure_ascii=False)
        case Mapping():
            items = sorted(value.items(), key=lambda item: str(item[0]).encode("utf-16-be"))
            return "{" + ",".join(f"{_jcs(str(k))}:{_jcs(v)}" for k, v in items) + "}"
        case list() | tuple():
            return "[" + ",".join(_jcs(v) for v in value) + "]"
    raise InvalidObject(f"a {type(value).__name__} cannot be part of a deterministic SCO id")


def _es_number(number: float) -> str:
    # ECMAScript Number::toString (ECMA-262 section 7.1.12.1), which RFC 8785 section 3.2.2.3 prescribes.
    # repr() already yields the shortest round-tripping digits; only their layout differs from JavaScript's.
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidObject("NaN and infinity have no JSON form")
    if number == 0:
        return "0"
    _sign, digit_tuple, exponent = Decimal(repr(abs(number))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    point = len(digit_tuple) + int(exponent)  # the decimal point sits after this many digits
    prefix = "-" if number < 0 else ""
    if len(digits) <= point <= 21:
        return f"{prefix}{digits}{'0' * (point - len(digits))}"
    if 0 < point <= 21:
        return f"{prefix}{digits[:point]}.{digits[point:]}"
    if -6 < point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    exp = point - 1
    mantissa = digits if len(digits) == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{prefix}{mantissa}e{'+' if exp > 0 else '-'}{abs(exp)}"
