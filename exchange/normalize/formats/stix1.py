"""STIX 1.x XML packages elevated to STIX 2.1 with stix2-elevator (normalize stage; blocking, run off the loop)."""

import contextlib
import functools
import io
import logging
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import orjson

from exchange.normalize.formats.conform import keep_conforming
from exchange.normalize.formats.result import ReadResult, Reject, locate, strip_bom

STIX1_NAMESPACE = "http://stix.mitre.org/stix-1"
_PACKAGE_TAG = f"{{{STIX1_NAMESPACE}}}STIX_Package"
_HEADER_TAG = f"{{{STIX1_NAMESPACE}}}STIX_Header"
_RELATED = f"{{{STIX1_NAMESPACE}}}Related_Packages"
_RELATED_ONE = f"{{{STIX1_NAMESPACE}}}Related_Package"
_NESTED_TAG = f"{{{STIX1_NAMESPACE}}}Package"

# stix2-elevator keeps its options and id mappings in module globals and clears them per document, and stixmarx
# gathers parsed entities through a global signal, so two threads at once would mix their packages: one
# document at a time, process-wide.
_ELEVATOR_LOCK = threading.Lock()

_ELEVATOR_OPTIONS: dict[str, Any] = {
    "spec_version": "2.1",
    "silent": False,  # its messages are collected by _Messages (notes and rejects), never printed
    "log_level": "WARN",
    "validator_args": "--silent",  # elevate() always validates its output; at least let it not print
    "missing_policy": "add-to-description",  # STIX 1.x content with no 2.1 home lands in descriptions,
    #                                          not in custom properties our validator gate would flag
    "policy": "no_policy",  # return the bundle even when the elevator had something to say
    "incidents": True,
    "infrastructure": True,
}


def read_stix1(data: bytes, name: str = "", *, now: str | None = None) -> ReadResult:
    """A STIX 1.x package as the STIX 2.1 objects stix2-elevator makes of it, invalid ones rejected.

    `now` (a STIX timestamp) stands in for the times the package does not give; the elevator's default is the
    current time, which makes every conversion of such a package a new version of its objects."""
    elevator, stixmarx, mixbox_xml = _libraries()
    try:
        # Parsed here, not by elevate(bytes): that would treat input naming an existing local file as a path,
        # and here a syntax error keeps its line. mixbox's parser resolves no entities and no network.
        tree = mixbox_xml.get_etree(io.BytesIO(strip_bom(data)))
    except Exception as exc:  # lxml.etree.XMLSyntaxError and friends
        return ReadResult([], [Reject(locate(name, getattr(exc, "lineno", 1) or 1), f"not well-formed XML: {exc}")])
    root = tree.getroot()
    if root.tag != _PACKAGE_TAG:
        return ReadResult([], [Reject(locate(name, root.sourceline or 1),
                                      f"root element is {root.tag}, not a STIX 1.x STIX_Package")])
    results = [_read_package(elevator, stixmarx, package, name, line, now) for package, line in _packages(root)]
    return ReadResult([o for r in results for o in r.objects], [j for r in results for j in r.rejects],
                      [n for r in results for n in r.notes])


def _packages(root: Any) -> Iterator[tuple[Any, int]]:
    """Each package of a document, as an element tree of its own, with the line it starts on.

    stix2-elevator converts a package's own content only, never the packages under its Related_Packages
    (deprecated since STIX 1.2, but how MISP exports events: an outer package that only wraps one package per
    event). Those become documents of their own, with the outer package's namespace declarations; the outer
    package is converted too when it says more than its header."""
    from lxml import etree

    nested = root.findall(f"{_RELATED}/{_RELATED_ONE}/{_NESTED_TAG}")
    for holder in root.findall(_RELATED):
        root.remove(holder)
    if not nested or any(child.tag not in (_HEADER_TAG, etree.Comment) for child in root):
        yield etree.ElementTree(root), root.sourceline or 1
    for package in nested:
        document = etree.Element(_PACKAGE_TAG, attrib=dict(package.attrib), nsmap=root.nsmap)
        document.extend(package)  # moved, not copied: the outer tree is not used again
        yield from _packages(document) if document.find(_RELATED) is not None else [
            (etree.ElementTree(document), package.sourceline or 1)]


def _read_package(elevator: ModuleType, stixmarx: ModuleType, tree: Any, name: str, line: int,
                  now: str | None) -> ReadResult:
    messages = _Messages()
    try:
        output = _elevate(elevator, stixmarx, tree, messages, now)
    except Exception as exc:  # the elevator has no error contract; any failure rejects the document
        return ReadResult([], [Reject(locate(name, line), f"stix2-elevator failed: {exc!r}")])
    objects = orjson.loads(output).get("objects") if output is not None else None
    where = locate(name, "stix2-elevator")
    if not objects:  # the elevator's own errors say why (e.g. [208], an empty bundle)
        return ReadResult([], [Reject(locate(name, line), "stix2-elevator made no STIX 2.1 objects of it"),
                               *(Reject(where, m) for m in messages.errors)],
                          [Reject(where, m) for m in messages.warnings])
    screened = keep_conforming(objects, name, "objects")
    return ReadResult(screened.objects, [Reject(where, m) for m in messages.errors] + screened.rejects,
                      [Reject(where, m) for m in messages.warnings])


class _Messages(logging.Handler):
    """What the elevator says while it converts, by its own level: an error is content it could not convert
    (a TTP that became no STIX 2.1 object, a reference to it), a warning is a conversion with a caveat (no
    package timestamp, so the current time stands in)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"[{getattr(record, 'ecode', '?')}] {record.getMessage()}"
        said = self.errors if record.levelno >= logging.ERROR else self.warnings
        if text not in said:  # the elevator says some things twice (a dangling reference, once per pass)
            said.append(text)


def _elevate(elevator: ModuleType, stixmarx: ModuleType, tree: Any, messages: _Messages,
             now: str | None) -> str | None:
    with _ELEVATOR_LOCK, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), \
            _collected(elevator.options.log, messages):
        # redirect: elevate() prints a "not for production" banner on stdout, which must not end up in
        # `exchange normalize`'s bundle. The lock keeps the swap of sys.stdout short and exclusive.
        # python-stix warns about each deprecated field it meets and mixbox about distutils; the elevator
        # maps those fields anyway, so the warnings say nothing to the hub's operator.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"stix\.utils\.deprecated")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mixbox\.")
        # initialize_options takes effect once per process (it keeps the first options it is given); what changes
        # per document is set after it.
        elevator.options.initialize_options(options=dict(_ELEVATOR_OPTIONS))
        elevator.options.set_option_value("default_timestamp", now)
        try:
            # stixmarx collects parsed entities through a process-wide mixbox signal: parse under the lock too.
            return elevator.elevate(stixmarx.parse(tree))
        except KeyError as exc:
            if exc.args == ("objects",):  # stix2-elevator 4.1.7 crashes instead of returning an empty bundle
                return None
            raise


@contextlib.contextmanager
def _collected(log: logging.Logger, messages: _Messages) -> Iterator[None]:
    # The elevator's logger prints to stderr through its own handler; while one document converts (under
    # _ELEVATOR_LOCK, so no other document's messages mix in) it reports to `messages` instead.
    printing = list(log.handlers)
    for handler in printing:
        log.removeHandler(handler)
    log.addHandler(messages)
    try:
        yield
    finally:
        log.removeHandler(messages)
        for handler in printing:
            log.addHandler(handler)


@functools.cache
def _libraries() -> tuple[ModuleType, ModuleType, ModuleType]:
    """Import stix2-elevator (~2 s) on first use, with the lxml workaround stixmarx needs today."""
    import lxml.etree

    if not hasattr(lxml.etree, "_ElementStringResult"):
        # stixmarx 1.0.8 tests isinstance(node, etree._ElementStringResult), a name lxml removed in 5.1.1
        # (oasis-open/cti-stix-elevator#295, open). Since then every XPath string result is an
        # _ElementUnicodeResult, so the alias keeps the check's meaning.
        lxml.etree._ElementStringResult = lxml.etree._ElementUnicodeResult  # type: ignore[attr-defined]
    with _ELEVATOR_LOCK, contextlib.redirect_stdout(io.StringIO()):  # maec's import can print a numpy notice
        import mixbox.xml
        import stix2elevator
        import stix2elevator.options
        import stixmarx

    return stix2elevator, stixmarx, mixbox.xml
