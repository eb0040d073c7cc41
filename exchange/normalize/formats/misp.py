"""MISP JSON (an event, a bare event, a list of events, a REST collection) converted by misp-stix (normalize stage).

Blocking and slow (misp-stix builds `stix2` objects, then every object is validated): run off the loop.
"""

import logging
from typing import Any

import orjson

from exchange.normalize.formats.conform import keep_conforming
from exchange.normalize.formats.result import ReadResult, Reject, load_json, locate


def read_misp(data: bytes, name: str = "") -> ReadResult:
    """The STIX 2.1 objects misp-stix makes of MISP JSON; what misp-stix skipped becomes rejects too."""
    document, error = load_json(data, name)
    if error is not None:
        return ReadResult([], [error])
    # Lazy: misp-stix pulls in pymisp and stix2 (~2.5 s); only MISP input pays for it.
    from misp_stix_converter import MISPtoSTIX21Parser

    # pymisp logs each attribute it skips, and misp-stix reports the same message (read below): without this,
    # every skipped attribute would be said twice, once outside the reader's report.
    logging.getLogger("pymisp").setLevel(logging.CRITICAL)
    parser = MISPtoSTIX21Parser()
    try:
        parser.parse_json_content(document)
        objects: list[dict[str, Any]] = orjson.loads(parser.bundle.serialize()).get("objects", [])
    except Exception as exc:  # InvalidMISPInputError, and whatever malformed events make the converter raise
        return ReadResult([], [Reject(locate(name, 1), f"misp-stix could not convert it: {exc}")])
    rejects, notes = _report(parser.errors, parser.warnings, name)
    screened = keep_conforming(objects, name, "objects")
    return ReadResult(screened.objects, rejects + screened.rejects, notes)


# misp-stix's report, keyed by the event uuid or the kind of collection. Its errors are records it skipped, except
# a missing creator organization (the event converts, without an author). Its warnings are notes, except pymisp's
# validation failures, which misp-stix files as warnings although the attribute is skipped.
_CONVERTED_ANYWAY = ("Missing Orgc field", "Error with the Orgc field")
_SKIPPED = ("Failed validation for ",)


def _report(errors: dict[str, list[str]], warnings: dict[str, list[str]],
            name: str) -> tuple[list[Reject], list[Reject]]:
    rejects: list[Reject] = []
    notes: list[Reject] = []
    for kind, messages_by_record in (("error", errors), ("warning", warnings)):
        for identifier, messages in messages_by_record.items():
            for message in messages:
                skipped = (not message.startswith(_CONVERTED_ANYWAY) if kind == "error"
                           else message.startswith(_SKIPPED))
                (rejects if skipped else notes).append(Reject(locate(name, identifier), " ".join(message.split())))
    return rejects, notes
