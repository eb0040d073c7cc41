"""Screening of library-made STIX 2.1 (stix2-elevator, misp-stix) through stix2-validator (normalize stage).

Those converters do not promise valid output (schemeless `url` values, missing `target_ref`, elevator
placeholders in patterns, ids that are not RFC 4122 UUIDs), so each object they make is checked against
the STIX 2.1 MUSTs and rejected alone when it fails. Slow (~5 ms an object: the validator reloads its
schemas per call), which is why the STIX 2.x hot path does not use it; callers run this in worker threads.
"""

import functools
import re
from typing import Any

from exchange.normalize.formats.result import ReadResult, Reject, locate


def keep_conforming(objects: list[dict[str, Any]], name: str, origin: str) -> ReadResult:
    """Objects that pass stix2-validator's MUST checks; the others as rejects naming `origin`'s output index."""
    kept: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for index, obj in enumerate(objects):
        problem = nonconformity(obj)
        if problem is None:
            kept.append(obj)
        else:
            rejects.append(Reject(locate(name, f"{origin}[{index}]"), problem))
    return ReadResult(kept, rejects)


def nonconformity(obj: dict[str, Any]) -> str | None:
    """What stix2-validator finds wrong with an object at MUST level (its message starts with the object's id),
    or None when it conforms."""
    from stix2validator import validate_instance  # lazy: heavy import, slow paths only

    try:
        results = validate_instance(obj, _options())
    except Exception as exc:  # the validator raises on some malformed input instead of reporting it
        return f"{obj.get('id', '?')}: stix2-validator failed: {exc!r}"
    return None if results.is_valid else _said(str(results.errors[0]))


@functools.cache
def _options() -> Any:
    from stix2validator import ValidationOptions

    # strict=False: SHOULD-level findings (vocabularies, kill-chain naming) are the producer's business
    # and no reason to drop intelligence; only MUST violations make an object unusable.
    return ValidationOptions(version="2.1", strict=False)


# "<id>: {<the whole object>} is not valid under any of the given schemas: {<the whole schema>}": both are noise.
_NO_SCHEMA = re.compile(r"([^\s:]+): \{.*?\} is not valid under any of the given schemas", re.DOTALL)


def _said(message: str) -> str:
    """The validator's message (it starts with the object id), without reprs of the object and the schema."""
    found = _NO_SCHEMA.match(message)
    if found is None:
        return message
    return f"{found[1]}: matches none of the STIX 2.1 schemas of its type (a required property missing or invalid)"
