"""What every format reader returns (normalize stage): the STIX 2.1 objects it made and what it rejected."""

from dataclasses import dataclass, field
from typing import Any

import orjson

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Reject:
    """One thing a reader could not turn into STIX 2.1; `where` is 'file:line' or 'file:objects[i]'."""

    where: str
    message: str


@dataclass(frozen=True, slots=True)
class ReadResult:
    objects: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    # Converted, with a caveat the sender should hear of (a MISP event without its creator organization): the
    # same shape as a reject, but nothing was lost, so a run with only notes still succeeds.
    notes: list[Reject] = field(default_factory=list)


def locate(name: str, place: str | int) -> str:
    """'name:place', or just the place when the input has no name (bytes from a TAXII push)."""
    return f"{name}:{place}" if name else str(place)


def strip_bom(data: bytes) -> bytes:
    return data[len(_BOM):] if data.startswith(_BOM) else data


def load_json(data: bytes, name: str) -> tuple[Any, Reject | None]:
    """Decode JSON with orjson (the hot path); a syntax error becomes a reject at its line."""
    try:
        return orjson.loads(strip_bom(data)), None
    except orjson.JSONDecodeError as exc:
        return None, Reject(locate(name, exc.lineno), f"not valid JSON: {exc.msg} (column {exc.colno})")
