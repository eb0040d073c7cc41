"""MISP JSON (an event, a bare event, a list of events, a REST collection) converted by misp-stix (normalize stage).

Blocking and slow (misp-stix builds `stix2` objects, then every object is validated): run off the loop.
"""

from typing import Any

import orjson

from exchange.normalize.formats.conform import keep_conforming
from exchange.normalize.formats.result import ReadResult, Reject, load_json, locate


def read_misp(data: bytes, name: str = "") -> ReadResult:
    """The STIX 2.1 objects misp-stix makes of MISP JSON; misp-stix's own errors become rejects too."""
    document, error = load_json(data, name)
    if error is not None:
        return ReadResult([], [error])
    # Lazy: misp-stix pulls in pymisp and stix2 (~2.5 s); only MISP input pays for it.
    from misp_stix_converter import MISPtoSTIX21Parser

    parser = MISPtoSTIX21Parser()
    try:
        parser.parse_json_content(document)
        objects: list[dict[str, Any]] = orjson.loads(parser.bundle.serialize()).get("objects", [])
    except Exception as exc:  # InvalidMISPInputError, and whatever malformed events make the converter raise
        return ReadResult([], [Reject(locate(name, 1), f"misp-stix could not convert it: {exc}")])
    # misp-stix reports per event/attribute problems (invalid hash values, unloadable attributes) in
    # `errors`, keyed by the event uuid or the kind of collection, and skips those records.
    converter_rejects = [Reject(locate(name, identifier), message)
                         for identifier, messages in parser.errors.items() for message in messages]
    screened = keep_conforming(objects, name, "objects")
    return ReadResult(screened.objects, converter_rejects + screened.rejects)
