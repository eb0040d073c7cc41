"""Which format a peer's bytes are in, from their content, and the reader for it (normalize stage)."""

from enum import StrEnum
from pathlib import Path
from typing import Any

from exchange.model.timestamps import format_timestamp
from exchange.normalize.formats.result import ReadResult, load_json, strip_bom


class Format(StrEnum):
    AUTO = "auto"
    STIX21 = "stix21"
    STIX20 = "stix20"
    STIX1 = "stix1"
    MISP = "misp"
    CSV = "csv"
    TEXT = "text"


_STIX1_NAMESPACE = b"http://stix.mitre.org/stix-1"
_MISP_EVENT_KEYS = frozenset({"Attribute", "Object", "Orgc", "uuid", "threat_level_id", "analysis"})


def detect(data: bytes, name: str = "") -> Format:
    """The format of `data` judged by its content. `name` (a file name) decides only one thing: a file that starts
    like JSON but does not parse is a broken JSON document when named *.json, and an IOC list otherwise."""
    text = strip_bom(data).lstrip()
    if text.startswith(b"<"):
        # Namespaces sit on the root element, whose start tag can hold dozens of xmlns declarations.
        return Format.STIX1 if _STIX1_NAMESPACE in text else Format.TEXT
    if text.startswith((b"{", b"[")):
        document, error = load_json(text, name)
        if error is None:
            return _json_format(document)
        if name.lower().endswith(".json"):
            # Broken JSON still goes to a JSON reader, whose reject names the line; MISP if it says so.
            return Format.MISP if b'"Event"' in text[:4096] else Format.STIX21
        # Only the first character said JSON, and IOC lists start with "[" too: STIX patterns, "[2001:db8::1]:443",
        # "{evil.com}". Read as JSON, the whole list would be one reject.
    from exchange.normalize.formats.iocs import looks_like_csv  # the CSV reader owns its header rules

    return Format.CSV if looks_like_csv(text) else Format.TEXT


def read(data: bytes, fmt: Format | str = Format.AUTO, name: str = "", *, now: str | None = None) -> ReadResult:
    """Convert `data` to STIX 2.1 with the reader for `fmt` (detected when AUTO).

    `now` stamps the objects the CSV and text readers author, and what stix2-elevator finds no time for in a
    STIX 1.x package (default: the current time): with the file's own time, converting it again changes nothing.
    Blocking; heavy libraries (stix2-elevator, misp-stix, stix2-validator) load on first use of their format.
    """
    fmt = Format(fmt)  # the CLI hands over its --format word
    if fmt is Format.AUTO:
        fmt = detect(data, name)
    match fmt:
        case Format.STIX21 | Format.STIX20:
            # One reader: the version is decided per object, since TAXII 2.1 envelopes and 2.1 bundles
            # may carry 2.0 objects (no spec_version) next to 2.1 ones.
            from exchange.normalize.formats.stix2x import read_stix2

            return read_stix2(data, name)
        case Format.STIX1:
            from exchange.normalize.formats.stix1 import read_stix1

            return read_stix1(data, name, now=now)
        case Format.MISP:
            from exchange.normalize.formats.misp import read_misp

            return read_misp(data, name)
        case Format.CSV:
            from exchange.normalize.formats.iocs import read_csv

            return read_csv(data, name, now=now)
        case Format.TEXT:
            from exchange.normalize.formats.iocs import read_text

            return read_text(data, name, now=now)
    raise AssertionError(f"no reader for {fmt}")  # unreachable: every Format but AUTO has a case


def read_file(name: str, fmt: Format | str = Format.AUTO) -> ReadResult:
    """read() of a file, named by `name` in rejects and dated by its modification time: the time stands in for
    what the file does not date (CSV and text rows, a STIX 1.x package without timestamps), so an unchanged file
    converts to the same objects every time and posting it again is an exact re-send. OSError if unreadable."""
    path = Path(name)
    return read(path.read_bytes(), fmt, name, now=format_timestamp(int(path.stat().st_mtime * 1_000_000)))


def _json_format(document: Any) -> Format:
    if isinstance(document, dict):
        if "Event" in document or "response" in document:
            return Format.MISP  # {"Event": {...}} or a REST search result {"response": [...]}
        if "info" in document and _MISP_EVENT_KEYS & document.keys():
            return Format.MISP  # a bare event, as MISP feeds and exports write them
        if document.get("type") == "bundle" or ("type" not in document and "objects" in document):
            if document.get("spec_version") == "2.0":
                return Format.STIX20
            return _stix_version(document.get("objects"))
        return _stix_version([document])
    if isinstance(document, list) and document and all(isinstance(item, dict) for item in document):
        if all("Event" in item or "Object" in item or "Attribute" in item or "info" in item for item in document):
            return Format.MISP
        return _stix_version(document)
    return Format.STIX21  # not STIX either: the STIX reader says what is wrong with it


def _stix_version(objects: Any) -> Format:
    if not isinstance(objects, list):
        return Format.STIX21
    dicts = [obj for obj in objects if isinstance(obj, dict)]
    if any(obj.get("spec_version") == "2.1" for obj in dicts):
        return Format.STIX21
    # 2.0 objects have no spec_version; neither may 2.1 SCOs, but only SDOs/SROs have `created`.
    if any(obj.get("spec_version", "2.0") == "2.0" and "created" in obj for obj in dicts):
        return Format.STIX20
    return Format.STIX21
