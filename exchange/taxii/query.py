"""TAXII 2.1 URL parameters (section 3.4), parsed once into a typed ObjectQuery; pure functions."""

import hashlib
import re
from collections.abc import Mapping
from enum import StrEnum

import msgpack

from exchange.errors import InvalidRequest
from exchange.model.stix import STIX_TYPE, SUPPORTED_SPEC_VERSIONS
from exchange.model.timestamps import parse_timestamp
from exchange.store.base import ObjectQuery, VersionMatch

_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,248}[a-z0-9]--[0-9a-fA-F-]{36}")
_LIMIT = re.compile(r"[0-9]{1,9}")  # ASCII digits: str.isdigit() also accepts '²', which int() refuses


class Endpoint(StrEnum):
    OBJECTS = "objects"
    MANIFEST = "manifest"
    OBJECT = "object"
    OBJECT_DELETE = "object-delete"
    VERSIONS = "versions"


_PAGED = {"added_after", "limit", "next"}
ALLOWED: dict[Endpoint, frozenset[str]] = {
    Endpoint.OBJECTS: frozenset(_PAGED | {"match[id]", "match[type]", "match[version]", "match[spec_version]"}),
    Endpoint.MANIFEST: frozenset(_PAGED | {"match[id]", "match[type]", "match[version]", "match[spec_version]"}),
    Endpoint.OBJECT: frozenset(_PAGED | {"match[version]", "match[spec_version]"}),
    Endpoint.OBJECT_DELETE: frozenset({"match[version]", "match[spec_version]"}),
    Endpoint.VERSIONS: frozenset(_PAGED | {"match[spec_version]"}),
}


def _values(params: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = params.get(name)
    if raw is None:
        return ()
    values = tuple(v.strip() for v in raw.split(","))
    if not all(values):
        raise InvalidRequest(f"'{name}' has an empty value: {raw!r}")
    return tuple(dict.fromkeys(values))  # comma-separated values OR together; duplicates are noise


def _limit(params: Mapping[str, str], default: int, maximum: int) -> int:
    raw = params.get("limit")
    if raw is None:
        return default
    if not _LIMIT.fullmatch(raw) or int(raw) < 1:
        raise InvalidRequest(f"'limit' must be a positive integer, not {raw!r}")
    return min(int(raw), maximum)


def _versions(params: Mapping[str, str], endpoint: Endpoint) -> tuple[tuple[VersionMatch, ...], tuple[int, ...]]:
    if endpoint is Endpoint.VERSIONS:
        return (VersionMatch.ALL,), ()
    raw = _values(params, "match[version]")
    if not raw:  # the spec's defaults: 'last' for reads, every version for delete
        return ((VersionMatch.ALL,) if endpoint is Endpoint.OBJECT_DELETE else (VersionMatch.LAST,)), ()
    matches, times = [], []
    for value in raw:
        if value in VersionMatch.__members__.values():
            matches.append(VersionMatch(value))
            continue
        try:
            times.append(parse_timestamp(value))
        except ValueError:
            raise InvalidRequest(f"'match[version]' takes first, last, all or a STIX timestamp, not {value!r}") \
                from None
    return tuple(matches), tuple(times)


def parse_query(params: Mapping[str, str], endpoint: Endpoint, *, collection_id: str, object_id: str | None = None,
                default_limit: int = 1000, max_limit: int = 1000) -> ObjectQuery:
    unknown = sorted(set(params) - ALLOWED[endpoint])
    if unknown:
        raise InvalidRequest(f"unsupported URL parameter(s) for this endpoint: {', '.join(unknown)}; "
                             f"supported: {', '.join(sorted(ALLOWED[endpoint]))}")
    types = _values(params, "match[type]")
    for value in types:
        if not STIX_TYPE.fullmatch(value):
            raise InvalidRequest(f"'match[type]' value {value!r} is not a STIX type name")
    ids = (object_id,) if object_id else _values(params, "match[id]")
    for value in ids:
        if not _ID.fullmatch(value):
            raise InvalidRequest(f"{value!r} is not a STIX identifier ('<type>--<UUID>')")
    spec_versions = _values(params, "match[spec_version]")
    for value in spec_versions:
        if value not in SUPPORTED_SPEC_VERSIONS:
            raise InvalidRequest(f"'match[spec_version]' value {value!r} is not one of 2.0, 2.1")
    added_after = None
    if "added_after" in params:
        try:
            added_after = parse_timestamp(params["added_after"])
        except ValueError as exc:
            raise InvalidRequest(f"'added_after': {exc}") from None
    matches, times = _versions(params, endpoint)
    return ObjectQuery(collection_id=collection_id, limit=_limit(params, default_limit, max_limit),
                       added_after=added_after, ids=ids, types=types, spec_versions=spec_versions,
                       version_matches=matches, version_times=times)


def fingerprint(query: ObjectQuery, endpoint: Endpoint) -> bytes:
    """What a `next` token is bound to: the endpoint and every filter, but not `limit` or the position."""
    key = [endpoint.value, query.collection_id, query.added_after, list(query.ids), list(query.types),
           list(query.spec_versions), [m.value for m in query.version_matches], list(query.version_times)]
    return hashlib.sha256(msgpack.packb(key)).digest()[:12]
