"""Normalize stage: flag canonical indicator values that are on the MISP warninglists (known false positives).

The lists are indexed once (the two loaders are the only file reads, made at startup); `match` is pure and cheap.
The two structures that are more than a dict, for networks and for substrings, are in warninglist_index.
"""

import contextlib
import functools
import importlib.util
import ipaddress
import operator
import re
import socket
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from exchange.errors import ConfigError, InvalidObject
from exchange.normalize.values import ValueKind, canonical, normalize_domain
from exchange.normalize.warninglist_index import RangeIndex, SubstringIndex

K = ValueKind
_IPV4 = frozenset({K.IPV4, K.IPV4_CIDR})
_IPV6 = frozenset({K.IPV6, K.IPV6_CIDR})
_IP = _IPV4 | _IPV6
_HASHES = frozenset({K.MD5, K.SHA1, K.SHA256, K.SHA512})
_HOSTS = frozenset({K.DOMAIN, K.URL, K.EMAIL})  # kinds that carry a host name (the value, URL host, mail domain)
_HASH_LENGTHS = frozenset({32, 40, 64, 128})
_HEX = re.compile(r"[0-9a-f]+")

# MISP attribute types -> the kinds the hub holds for them. MISP checks a composite type part by part, so
# "filename|md5" counts for MD5. "domain|ip" counts for its IP half only: every bundled list naming it also names
# "domain" or "hostname", except the disposable e-mail list, whose substring entries ("at.hm") would flag domains
# such as chat.hm.example and so silence real indicators; MISP does not apply that list to domains either. "uri"
# (a path without a host) and the x509, ssdeep and phone types have no kind here; a list that targets only such
# types is not indexed.
_KINDS_BY_ATTRIBUTE: dict[str, frozenset[ValueKind]] = {
    **dict.fromkeys(("ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "domain|ip"), _IP),
    **dict.fromkeys(("domain", "hostname", "hostname|port"), frozenset({K.DOMAIN})),
    "url": frozenset({K.URL}),
    **dict.fromkeys(("email", "email-src", "email-dst", "target-email", "whois-registrant-email", "dns-soa-email",
                     "email-reply-to"), frozenset({K.EMAIL})),
    **dict.fromkeys(("md5", "filename|md5"), frozenset({K.MD5})),
    **dict.fromkeys(("sha1", "filename|sha1"), frozenset({K.SHA1})),
    **dict.fromkeys(("sha256", "filename|sha256"), frozenset({K.SHA256})),
    **dict.fromkeys(("sha512", "filename|sha512"), frozenset({K.SHA512})),
}
# Characters a canonical value of the kind can hold: a substring entry outside them can never match, and leaving it
# out spares IP lookups the 4,941 disposable e-mail domains that "domain|ip" brings in.
_ALPHABETS: dict[ValueKind, frozenset[str]] = {
    **dict.fromkeys(_IPV4, frozenset("0123456789./")),
    **dict.fromkeys(_IPV6, frozenset("0123456789abcdef.:/")),
    **dict.fromkeys(_HASHES, frozenset("0123456789abcdef")),
}
_PCRE_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE, "u": 0, "g": 0}
_by_name = operator.attrgetter("list_name")  # hits are reported in list-name order
# The host of a canonical URL; the greedy userinfo part runs to the last "@" of the authority, as RFC 3986 reads it.
_URL_HOST = re.compile(r"[^:/?#]+://(?:[^/?#]*@)?([^\[\]:/?#]*)")


@dataclass(frozen=True, slots=True)
class WarningHit:
    """One warninglist a value is on: its MISP name and its match type (string, hostname, cidr, ...)."""

    list_name: str
    list_type: str


class _Plan(NamedTuple):
    """What one kind of value is checked against, fixed when the lists are indexed."""

    ids: Callable[[str], tuple[int, ...]]
    substrings: SubstringIndex | None
    regexes: tuple[tuple[re.Pattern[str], int], ...]
    lists: frozenset[int]  # ids of the lists that target the kind: shared structures hold the others too


class Warninglists:
    """All lists merged into one structure per key space (exact values, host names, name suffixes, networks), so a
    miss costs a few dict probes and a bisect however many lists there are. Keys map to tuples of list ids."""

    __slots__ = ("_exact", "_hits", "_names", "_plans", "_suffixes")

    def __init__(self, definitions: Iterable[Mapping[str, Any]], *, names: Collection[str] | None = None) -> None:
        """Index MISP warninglist definitions (name, type, list, matching_attributes); `names` keeps only those."""
        builder = _Builder()
        hits: list[WarningHit] = []
        kinds_by_id: list[frozenset[ValueKind]] = []
        seen: set[str] = set()
        for definition in definitions:
            name = _checked_name(definition, seen)
            kinds = _list_kinds(definition)
            if kinds and (names is None or name in names):
                builder.add_list(len(hits), definition, kinds)
                hits.append(WarningHit(name, _list_type(definition)))
                kinds_by_id.append(kinds)
        if names is not None and (unknown := set(names) - seen):
            raise ConfigError(f"warninglists: no list named {', '.join(map(repr, sorted(unknown)))}")
        self._hits = tuple(hits)
        self._exact, self._names, self._suffixes = builder.exact, builder.names, builder.suffixes
        networks = {version: RangeIndex(version, ranges, builder.interned)
                    for version, ranges in builder.ranges.items()}
        # A URL's host or a mail domain is walked only if some host list targets URLs or e-mail addresses.
        ids_by_kind: dict[ValueKind, Callable[[str], tuple[int, ...]]] = {
            **dict.fromkeys(_IPV4, networks[4].find_text), **dict.fromkeys(_IPV6, networks[6].find_text),
            **dict.fromkeys(_HASHES, self._exact_ids), K.DOMAIN: self._name_ids,
            K.URL: self._url_ids if K.URL in builder.host_kinds else self._exact_ids,
            K.EMAIL: self._email_ids if K.EMAIL in builder.host_kinds else self._exact_ids,
        }
        self._plans = {
            kind: _Plan(
                ids_by_kind[kind],
                SubstringIndex(builder.substrings[kind], fold_case=kind in (K.URL, K.EMAIL))
                if builder.substrings.get(kind) else None,
                tuple(builder.regexes.get(kind, ())),
                frozenset(list_id for list_id, kinds in enumerate(kinds_by_id) if kind in kinds),
            )
            for kind in ValueKind
        }

    @classmethod
    def from_directory(cls, path: Path | str, *, names: Collection[str] | None = None,
                       skip: Collection[str] = ()) -> "Warninglists":
        """Read a directory of MISP warninglist JSON files: the misp-warninglists repository's `lists/` folder
        (`<list>/list.json`) or flat `*.json` files; `skip` names folders (or file stems) not even read.
        Reads files: call it at startup, off the event loop."""
        root = Path(path)
        files = sorted(f for f in {*root.glob("*/list.json"), *root.glob("*.json")}
                       if (f.parent.name if f.name == "list.json" else f.stem) not in skip)
        if not files:
            raise ConfigError(f"warninglists: no *.json or */list.json files in {root}")
        return cls(_read_definitions(files), names=names)

    @classmethod
    def from_package(cls, *, names: Collection[str] | None = None, skip: Collection[str] = ()) -> "Warninglists":
        """The lists bundled with pymispwarninglists (its data/misp-warninglists/lists folder)."""
        # find_spec locates the package without running its code, which is not needed here.
        spec = importlib.util.find_spec("pymispwarninglists")
        if spec is None or spec.origin is None:
            raise ConfigError("warninglists: pymispwarninglists is not installed; install it, or load a checkout of "
                              "github.com/MISP/misp-warninglists (its lists/ folder) with from_directory")
        lists = Path(spec.origin).parent / "data" / "misp-warninglists" / "lists"
        if not any(lists.glob("*/list.json")):
            raise ConfigError(f"warninglists: pymispwarninglists ships no list data in {lists}; load a checkout of "
                              "github.com/MISP/misp-warninglists (its lists/ folder) with from_directory")
        return cls.from_directory(lists, names=names, skip=skip)

    @property
    def names(self) -> tuple[str, ...]:
        """The lists indexed (those that target at least one kind of value), by name."""
        return tuple(sorted(hit.list_name for hit in self._hits))

    def match(self, kind: ValueKind, value: str) -> tuple[WarningHit, ...]:
        """The lists a canonical value (exchange.normalize.values.canonical) is on, by list name; () for most.
        A value that is not canonical text of its kind matches nothing rather than raising."""
        # One lookup by kind: hashing a StrEnum member costs three times a plain str, so no `kind in ...` here.
        ids, substrings, regexes, applies = self._plans[kind]
        found = ids(value)
        if substrings is not None:
            found += substrings.find(value)
        for pattern, list_id in regexes:
            if pattern.search(value):
                found += (list_id,)
        if not found:
            return ()
        hits = self._hits
        return tuple(sorted({hits[i] for i in found if i in applies}, key=_by_name))

    def _exact_ids(self, value: str) -> tuple[int, ...]:
        return self._exact.get(value, ())

    def _url_ids(self, value: str) -> tuple[int, ...]:
        # Not urllib.parse.urlsplit: 3.3 us per distinct URL (its cache only helps repeats), against 0.4 us for
        # this match, which canonical URLs (scheme://[userinfo@]host[:port]...) make safe.
        host = _URL_HOST.match(value)
        return self._exact.get(value, ()) + self._name_ids(host[1] if host else "")

    def _email_ids(self, value: str) -> tuple[int, ...]:
        return self._exact.get(value, ()) + self._name_ids(value.rpartition("@")[2])

    def _name_ids(self, host: str) -> tuple[int, ...]:
        found = self._names.get(host, ())
        # Hostname lists match the name and every name under it; MISP walks the labels the same way.
        suffixes = self._suffixes
        while host:
            found += suffixes.get(host, ())
            host = host.partition(".")[2]
        return found


# The three largest lists (two top-1M site rankings, 200k benign file hashes) cost ~3 s and ~300 MB per process;
# the top-10k/20k rankings (tranco10k, cisco_top20k) still flag popular domains.
DEFAULT_SKIP = ("tranco", "google-chrome-crux-1million", "nioc-filehash")


@functools.cache
def default_warninglists(skip: tuple[str, ...] = DEFAULT_SKIP) -> Warninglists:
    """The pymispwarninglists lists (minus `skip` folders), indexed once per process: load it at startup, in a
    worker thread."""
    return Warninglists.from_package(skip=skip)


def _read_definitions(files: list[Path]) -> Iterator[Mapping[str, Any]]:
    # One file at a time, so each list's parsed JSON is freed once it is indexed.
    for file in files:
        try:
            yield orjson.loads(file.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError(f"warninglists: cannot read {file}: {exc}") from None


def _checked_name(definition: Mapping[str, Any], seen: set[str]) -> str:
    name = definition.get("name") if isinstance(definition, Mapping) else None
    if not isinstance(name, str) or not isinstance(definition.get("list"), list | dict):
        raise ConfigError(f"warninglists: a definition lacks a name or a list: {str(definition)[:80]}")
    if name in seen:
        raise ConfigError(f"warninglists: two lists are named {name!r}")
    seen.add(name)
    return name


def _list_type(definition: Mapping[str, Any]) -> str:
    # MISP's own loader defaults a missing type to "string" and takes the first of a list of types.
    list_type = definition.get("type", "string")
    return list_type[0] if isinstance(list_type, list) else list_type


def _list_kinds(definition: Mapping[str, Any]) -> frozenset[ValueKind]:
    attributes = definition.get("matching_attributes") or ["ALL"]  # MISP: no attributes means every type
    if "ALL" in attributes:
        return frozenset(ValueKind)
    return frozenset().union(*(_KINDS_BY_ATTRIBUTE.get(attribute, ()) for attribute in attributes))


class _Builder:
    """Collects entries per key space. The loops are bulk and call-free per entry: the bundled lists hold 2.5
    million entries. Tuples of list ids are interned, as millions of keys share a few hundred combinations."""

    def __init__(self) -> None:
        self.exact: dict[str, tuple[int, ...]] = {}  # hashes, URLs, e-mail addresses
        self.names: dict[str, tuple[int, ...]] = {}  # host names matched exactly
        self.suffixes: dict[str, tuple[int, ...]] = {}  # host names that also match every name under them
        self.ranges: dict[int, list[tuple[int, int, int]]] = {4: [], 6: []}
        self.substrings: dict[ValueKind, list[tuple[str, int]]] = {}
        self.regexes: dict[ValueKind, list[tuple[re.Pattern[str], int]]] = {}
        self.interned: dict[tuple[int, ...], tuple[int, ...]] = {}
        self.host_kinds: set[ValueKind] = set()  # kinds targeted by lists with host-name entries

    def add_list(self, list_id: int, definition: Mapping[str, Any], kinds: frozenset[ValueKind]) -> None:
        # A dict-shaped list is MISP's "value: comment" form; iterating it gives the values.
        entries = [text for entry in definition["list"] if isinstance(entry, str) and (text := entry.strip())]
        match _list_type(definition):
            case "cidr":
                for entry in entries:
                    self._add_network(entry, kinds, list_id)
            case "hostname":
                hosts = self._split_networks([entry.strip(".").lower() for entry in entries], kinds, list_id)
                if kinds & _HOSTS:
                    self._bulk(self.suffixes, _ascii_names(hosts), list_id)  # MISP: strtolower(trim($v, '.'))
                    self.host_kinds |= kinds & _HOSTS
            case "string":
                self._add_strings(entries, kinds, list_id)
            case "substring":
                # An address in a substring list means that host (the Office 365 attack simulator lists one); as a
                # substring it would also flag 152.168.52.134 for 52.168.52.134, as MISP does.
                entries = self._split_networks(entries, kinds, list_id)
                for kind in kinds:
                    alphabet = _ALPHABETS.get(kind)
                    self.substrings.setdefault(kind, []).extend(
                        (entry.lower(), list_id) for entry in entries
                        if alphabet is None or alphabet.issuperset(entry.lower()))
            case "regex":
                patterns = [pattern for entry in entries if (pattern := _compile_pcre(entry)) is not None]
                for kind in kinds:
                    self.regexes.setdefault(kind, []).extend((pattern, list_id) for pattern in patterns)
            case other:
                raise ConfigError(f"warninglists: list {definition['name']!r} has unknown type {other!r}")

    def _add_strings(self, entries: list[str], kinds: frozenset[ValueKind], list_id: int) -> None:
        hashes = bool(kinds & _HASHES)
        exact, names, suffixes = [], [], []
        for entry in entries:
            key = entry.lower()
            if hashes and len(key) in _HASH_LENGTHS and _HEX.fullmatch(key):
                exact.append(key)
            elif "://" in key or "@" in key:
                kind = K.URL if "://" in key else K.EMAIL
                if kind in kinds:
                    with contextlib.suppress(InvalidObject):  # not a value the hub could hold: nothing to match
                        exact.append(canonical(kind, entry)[1])
            elif key.startswith("."):
                # The authors' "and every name under it" (".google.ad" in the google list). MISP compares string
                # entries verbatim, so there these never match; here they act as the hostname entries they mean.
                suffixes.append(key.strip("."))
            else:
                names.append(key.rstrip("."))
        self._bulk(self.exact, exact, list_id)
        names = self._split_networks(names, kinds, list_id)
        if kinds & _HOSTS:
            self._bulk(self.names, _ascii_names(names), list_id)
            self._bulk(self.suffixes, _ascii_names(suffixes), list_id)
            self.host_kinds |= kinds & _HOSTS

    def _split_networks(self, keys: list[str], kinds: frozenset[ValueKind], list_id: int) -> list[str]:
        """Index the keys that are addresses or networks as such and return the others."""
        # Host names end in a letter (TLDs are alphabetic), so only keys ending in a digit or holding ":" are worth
        # a parse; a million-name list pays one comprehension, not a million parses.
        candidates = [key for key in keys if key[-1:].isdigit() or ":" in key]
        networks = {key for key in candidates if self._add_network(key, kinds, list_id)}
        return [key for key in keys if key not in networks] if networks else keys

    def _add_network(self, text: str, kinds: frozenset[ValueKind], list_id: int) -> bool:
        network = _parse_network(text)
        if network is None:
            return False
        version, first, last = network
        if kinds & (_IPV4 if version == 4 else _IPV6):
            self.ranges[version].append((first, last, list_id))
        return True

    def _bulk(self, index: dict[str, tuple[int, ...]], keys: Iterable[str], list_id: int) -> None:
        single: tuple[int, ...] = (list_id,)
        single = self.interned.setdefault(single, single)
        setdefault, interned = index.setdefault, self.interned
        for key in keys:
            ids = setdefault(key, single) if key else single
            if ids is not single and list_id not in ids:  # not a repeat such as "google.com" and ".google.com"
                ids += single
                index[key] = interned.setdefault(ids, ids)


def _ascii_names(names: list[str]) -> list[str]:
    # Canonical domains are A-labels; the rare Unicode entry is converted the same way, or dropped ("").
    if all(map(str.isascii, names)):
        return names
    converted = []
    for name in names:
        try:
            converted.append(name if name.isascii() else normalize_domain(name))
        except InvalidObject:
            converted.append("")
    return converted


def _parse_network(text: str) -> tuple[int, int, int] | None:
    """(IP version, first address, last address) of an address or CIDR, host bits masked as MISP does."""
    address, slash, prefix = text.partition("/")
    version, family, width = (6, socket.AF_INET6, 128) if ":" in address else (4, socket.AF_INET, 32)
    try:
        # inet_pton is a pure parse (no lookup), several times faster than ipaddress over 120,000 entries.
        number = int.from_bytes(socket.inet_pton(family, address), "big")
        length = int(prefix) if slash else width
    except (OSError, ValueError):
        try:  # the odd spelling inet_pton refuses, such as a netmask after the slash
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return None
        return network.version, int(network.network_address), int(network.broadcast_address)
    if not 0 <= length <= width:
        return None
    host_bits = (1 << (width - length)) - 1
    return version, number & ~host_bits, number | host_bits


def _compile_pcre(entry: str) -> re.Pattern[str] | None:
    """A PHP preg pattern ("/body/flags") as a Python pattern; None when Python's re cannot take it."""
    delimiter = entry[0]
    end = entry.rfind(delimiter)
    if end <= 0 or delimiter.isalnum() or delimiter.isspace():
        return None
    flags = 0
    for letter in entry[end + 1:]:
        if letter not in _PCRE_FLAGS:
            return None
        flags |= _PCRE_FLAGS[letter]
    try:
        return re.compile(entry[1:end], flags)
    except re.error:
        return None

