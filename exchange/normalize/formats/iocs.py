"""CSV and plain-text IOC lists, defanged or not, as one STIX 2.1 indicator per value (normalize stage)."""

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from exchange.errors import InvalidObject
from exchange.model.timestamps import format_timestamp, now_micros
from exchange.normalize.formats.result import ReadResult, Reject, locate, strip_bom
from exchange.normalize.values import ValueKind, canonical, infer_kind, quoted

_COMMENT_PREFIXES = ("#", "//", ";")  # ';' is how Spamhaus DROP and other zone-style lists comment
_DELIMITERS = (",", "\t", ";", "|")
_BULLET = re.compile(r"^[-*\u2022>]+\s+")  # "- value" and "* value" in hand-written lists
# A token is a URL up to the next white space ("," and ";" are legal inside one: "http://example,com/" must not be
# read as http://example/), or else a run of characters up to white space or a list separator.
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*[^\s,;|]|[^\s,;|]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_CONTEXT_TRIM = " \t,;|-"
# No IOC is this long, and csv raises on a field over its field_size_limit (131,072) rather than rejecting a row.
_MAX_LINE = 65_536
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# "198.51.100.7:443", "[2001:db8::1]:443", "c2.example:8080": trails (maltrail) and C2 lists name endpoints.
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\[\]/]+):(\d{1,5})$")
# ioc-fanger reads the "::/" of an IPv6 CIDR ("2a06:e480::/29") as a defanged "://"; shielded while it runs.
_IPV6_CIDR_GAP = re.compile(r"(?<=[0-9A-Fa-f:])::/(?=\d{1,3}\b)")
_SHIELD = "\ue000"  # a private-use character: never in an IOC

# CSV header names, compared after _column() folds case, spaces and hyphens.
_VALUE_COLUMNS = ("indicator", "ioc", "value", "observable", "indicator_value", "ioc_value", "artifact", "data")
_TYPE_COLUMNS = ("type", "ioc_type", "indicator_type", "observable_type", "attribute_type", "kind")
_LABEL_COLUMNS = ("classification", "name", "category", "threat", "threat_type", "malware", "malware_family",
                  "family", "campaign", "tag", "tags", "label", "labels")
_DESCRIPTION_COLUMNS = ("description", "comment", "comments", "note", "notes", "context")
_DATE_COLUMNS = ("detected_date", "first_seen", "firstseen", "date_added", "dateadded", "date", "timestamp",
                 "valid_from")

_IP = frozenset({ValueKind.IPV4, ValueKind.IPV6, ValueKind.IPV4_CIDR, ValueKind.IPV6_CIDR})
_HASH = frozenset({ValueKind.MD5, ValueKind.SHA1, ValueKind.SHA256, ValueKind.SHA512})
_HOSTS = _IP | {ValueKind.DOMAIN}
# What a feed's type column (or a column named after a type) says, folded like _hint(): MISP attribute
# types, STIX SCO names, OTX "FileHash-SHA256", and the plain words people use.
_HINTS: dict[str, frozenset[ValueKind]] = {
    **dict.fromkeys(("ip", "ipv4", "ipv6", "ip-address", "ip-dst", "ip-src", "ipv4-addr", "ipv6-addr", "address",
                     "cidr", "network", "subnet", "netblock"), _IP),
    **dict.fromkeys(("domain", "domain-name", "hostname", "host", "fqdn"), frozenset({ValueKind.DOMAIN})),
    **dict.fromkeys(("url", "uri", "link"), frozenset({ValueKind.URL})),
    **dict.fromkeys(("email", "e-mail", "email-addr", "email-address", "email-src", "email-dst"),
                    frozenset({ValueKind.EMAIL})),
    **dict.fromkeys(("hash", "filehash", "file-hash", "checksum"), _HASH),
    **dict.fromkeys(("md5", "filehash-md5"), frozenset({ValueKind.MD5})),
    **dict.fromkeys(("sha1", "sha-1", "filehash-sha1"), frozenset({ValueKind.SHA1})),
    **dict.fromkeys(("sha256", "sha-256", "filehash-sha256"), frozenset({ValueKind.SHA256})),
    **dict.fromkeys(("sha512", "sha-512", "filehash-sha512"), frozenset({ValueKind.SHA512})),
}
_KIND_COLUMNS = tuple(name.replace("-", "_") for name in _HINTS)  # a column named "domain" holds domains


@dataclass(frozen=True, slots=True)
class _Entry:
    """One value from a list, with what its line or row says about it."""

    where: str
    raw: str
    hint: str | None = None
    labels: tuple[str, ...] = ()
    description: str | None = None
    valid_from: str | None = None


@dataclass(slots=True)
class _Collector:
    """Indicators by canonical pattern: a value listed twice is one indicator with both lines' labels."""

    source: str
    now: str
    indicators: dict[str, dict[str, Any]] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)

    def add(self, entry: _Entry) -> None:
        try:
            kind, value, entry = _typed_entry(entry)
            indicator = _indicator(kind, value, entry, self.source, self.now)
        except InvalidObject as exc:
            self.rejects.append(Reject(entry.where, str(exc)))
            return
        known = self.indicators.setdefault(indicator["pattern"], indicator)
        if known is not indicator and entry.labels:
            known["labels"] = list(dict.fromkeys([*known.get("labels", ()), *entry.labels]))

    def result(self) -> ReadResult:
        return ReadResult(list(self.indicators.values()), self.rejects)


def read_text(data: bytes, name: str = "", *, now: str | None = None) -> ReadResult:
    """Every IOC on a line, one indicator each; the line's other words are their context (description), and a
    line with no IOC at all is rejected. '#' comments skipped."""
    text = _decode(data, name)
    if isinstance(text, Reject):
        return ReadResult([], [text])
    collector = _Collector(name, now or format_timestamp(now_micros()))
    for lineno, line in _lines(text):
        where = locate(name, lineno)
        if len(line) > _MAX_LINE:
            collector.rejects.append(_overlong(where, line))
            continue
        # Refang the whole line first: some styles put spaces inside a value ("evil [.] com").
        fanged = _BULLET.sub("", _fang(line))
        tokens = list(_TOKEN.finditer(fanged))
        iocs = [token for token in tokens if _ioc_shaped(token.group())]
        if not iocs:
            # The first word's complaint, as when a line held one value: "cannot tell what kind of ... 'not'".
            collector.add(_Entry(where, tokens[0].group() if tokens else ""))
            continue
        cuts = [0, *(i for token in iocs for i in token.span()), len(fanged)]
        prose = (fanged[start:end].strip(_CONTEXT_TRIM) for start, end in zip(cuts[::2], cuts[1::2], strict=True))
        context = " ".join(words for words in prose if words) or None
        for token in iocs:
            collector.add(_Entry(where, token.group(), description=context))
    return collector.result()


def read_csv(data: bytes, name: str = "", *, now: str | None = None) -> ReadResult:
    """Rows under a header naming an indicator column; a type column, when there is one, types the values."""
    text = _decode(data, name)
    if isinstance(text, Reject):
        return ReadResult([], [text])
    collector = _Collector(name, now or format_timestamp(now_micros()))
    lines = _lines(text)
    header = next(lines, None)
    if header is not None and len(header[1]) > _MAX_LINE:
        return ReadResult([], [_overlong(locate(name, header[0]), header[1])])
    layout = _layout(header[1]) if header is not None else None
    if header is None or layout is None:
        where = locate(name, header[0] if header is not None else 1)
        return ReadResult([], [Reject(where, "no CSV header naming an indicator column (" +
                                      ", ".join(_VALUE_COLUMNS[:4]) + ", or a type such as domain, url, ip)")])
    delimiter, columns = layout
    for lineno, line in lines:
        where = locate(name, lineno)
        if len(line) > _MAX_LINE:
            collector.rejects.append(_overlong(where, line))
            continue
        row = [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter))]
        if len(row) <= columns.value:
            collector.rejects.append(Reject(where, f"{len(row)} fields, but the indicator is field "
                                                   f"{columns.value + 1}"))
            continue
        collector.add(_Entry(where, _fang(row[columns.value]), hint=_cell(row, columns.type) or columns.hint,
                             labels=tuple(label for i in columns.labels if (label := _cell(row, i))),
                             description=" ".join(d for i in columns.descriptions if (d := _cell(row, i))) or None,
                             valid_from=_timestamp(_cell(row, columns.date))))
    return collector.result()


def looks_like_csv(text: bytes) -> bool:
    """Whether the first line that is not a comment is a CSV header read_csv understands."""
    decoded = _decode(text, "")
    first = next(_lines(decoded), None) if isinstance(decoded, str) else None
    return first is not None and len(first[1]) <= _MAX_LINE and _layout(first[1]) is not None


@dataclass(frozen=True, slots=True)
class _Columns:
    value: int
    hint: str | None  # from the value column's own name ("domain") when there is no type column
    type: int | None
    labels: tuple[int, ...]
    descriptions: tuple[int, ...]
    date: int | None


def _layout(header: str) -> tuple[str, _Columns] | None:
    for delimiter in _DELIMITERS:
        names = [_column(cell) for cell in next(csv.reader([header], delimiter=delimiter))]
        if len(names) < 2:
            continue
        value = _first(names, _VALUE_COLUMNS)
        hint = None
        if value is None and (value := _first(names, _KIND_COLUMNS)) is not None:
            hint = names[value]
        if value is None:
            continue
        return delimiter, _Columns(
            value=value, hint=hint, type=_first(names, _TYPE_COLUMNS),
            labels=tuple(i for i, n in enumerate(names) if n in _LABEL_COLUMNS and i != value),
            descriptions=tuple(i for i, n in enumerate(names) if n in _DESCRIPTION_COLUMNS),
            date=_first(names, _DATE_COLUMNS),
        )
    return None


def _typed_entry(entry: _Entry) -> tuple[ValueKind, str, _Entry]:
    """_typed(), and for a host:port the host, with the port kept in the description (a single-value
    indicator has no place for it; the host is what other peers' indicators for the same server name)."""
    try:
        return (*_typed(entry.raw, entry.hint), entry)
    except InvalidObject as whole:
        match = _HOST_PORT.fullmatch(entry.raw.strip())
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise
        try:
            kind, value = _typed(match.group(1).strip("[]"), entry.hint)
        except InvalidObject:
            raise whole from None  # the complaint about the value as written is the useful one
        if kind not in _HOSTS:
            raise whole from None
    context = f"port {match.group(2)}" + (f"; {entry.description}" if entry.description else "")
    return kind, value, replace(entry, description=context)


def _typed(raw: str, hint: str | None) -> tuple[ValueKind, str]:
    """(kind, canonical value): inferred from the value's shape, and when the list says a type, held to it."""
    value = raw.strip()
    if not value:
        raise InvalidObject("empty indicator value")
    inferred = infer_kind(value)
    if hint is None:
        if inferred is None:
            raise InvalidObject(f"cannot tell what kind of indicator {quoted(value)} is")
        return canonical(inferred, value)
    kinds = _HINTS.get(_hint(hint))
    if kinds is None:
        raise InvalidObject(f"indicator type {quoted(hint)} is not one the hub handles (IPs, CIDRs, domains, URLs, "
                            "e-mail addresses, MD5/SHA-1/SHA-256/SHA-512 hashes)")
    if inferred in kinds:
        return canonical(inferred, value)
    if len(kinds) == 1 and inferred not in _IP | _HASH:
        # The list's word decides where shape is ambiguous: "invoice.zip" typed as a domain is one, and a
        # URL without a scheme gets canonical()'s precise complaint rather than a vague guess.
        return canonical(next(iter(kinds)), value)
    shape = f"looks like {inferred}" if inferred is not None else "has no recognizable shape"
    raise InvalidObject(f"{quoted(value)} is listed as {quoted(hint)} but {shape}")


def _indicator(kind: ValueKind, value: str, entry: _Entry, source: str, now: str) -> dict[str, Any]:
    from exchange.normalize.patterns import pattern_for  # stix2-patterns' ANTLR parser loads on first use

    pattern = pattern_for(kind, value)
    listed = f"{kind} listed in {source}" if source else f"{kind} from an IOC list"
    indicator: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": _indicator_id(pattern),
        "created": now,
        "modified": now,
        "name": value,
        "description": f"{listed}: {entry.description}" if entry.description else listed,
        "pattern": pattern,
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": entry.valid_from or now,
    }
    if entry.labels:
        indicator["labels"] = list(dict.fromkeys(entry.labels))
    return indicator


def _indicator_id(pattern: str) -> str:
    from exchange.normalize.ids import indicator_id

    return indicator_id(pattern)  # pattern_for's output is already canonical


def _ioc_shaped(token: str) -> bool:
    """Whether a word of a text line is meant as an IOC: one by its shape, a host:port, or anything with a scheme
    (an invalid URL is rejected, not taken for prose)."""
    if infer_kind(token) is not None or _SCHEME.match(token):
        return True
    match = _HOST_PORT.fullmatch(token)
    return match is not None and infer_kind(match.group(1).strip("[]")) in _HOSTS


def _overlong(where: str, line: str) -> Reject:
    return Reject(where, f"line of {len(line):,} characters, longer than the {_MAX_LINE:,} an IOC list line may "
                         f"have: {quoted(line)}")


def _decode(data: bytes, name: str) -> str | Reject:
    """The text of a list: UTF-8 (with or without BOM), or UTF-16 when its byte order mark says so. Anything else is
    refused whole, in one reject: decoded line by line it only makes one garbage reject per line."""
    if data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            return Reject(locate(name, 1), f"not UTF-16 text despite its byte order mark: {exc.reason}")
    data = strip_bom(data)
    if (nul := data.find(b"\x00")) >= 0:
        return Reject(locate(name, data.count(b"\n", 0, nul) + 1),
                      "not UTF-8 text: it holds NUL bytes (UTF-16 without a byte order mark?); save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Reject(locate(name, data.count(b"\n", 0, exc.start) + 1),
                      f"not UTF-8 text: byte 0x{data[exc.start]:02x} ({exc.reason}); save it as UTF-8")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the lines that are neither blank nor comments."""
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped and not stripped.startswith(_COMMENT_PREFIXES):
            yield lineno, stripped


def _fang(text: str) -> str:
    from ioc_fanger import fang  # ~100 regexes compiled on import; only lists need them

    return fang(_IPV6_CIDR_GAP.sub(_SHIELD, text)).replace(_SHIELD, "::/")


def _column(name: str) -> str:
    return "_".join(name.strip().strip('"').lower().replace("-", " ").split())


def _hint(word: str) -> str:
    return "-".join(word.strip().lower().replace("_", " ").split())


def _first(names: list[str], wanted: tuple[str, ...]) -> int | None:
    for candidate in wanted:
        if candidate in names:
            return names.index(candidate)
    return None


def _cell(row: list[str], index: int | None) -> str | None:
    return (row[index] or None) if index is not None and index < len(row) else None


def _timestamp(text: str | None) -> str | None:
    """A feed's date as a STIX timestamp (UTC assumed when no offset is given); None when it is not a date."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
