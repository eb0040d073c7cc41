"""Normalize stage: canonical STIX 2.1 patterns, parsed with stix2-patterns and re-rendered one way.

The canonical text is what an indicator's id hashes (ids.indicator_id), so every spelling of one pattern must
render the same and the rendering must be a fixed point of itself (canonicalizing canonical text changes nothing).

This module holds the public API and a regex fast path for one-comparison patterns. Everything else goes through
the parser: pattern_builder turns its parse tree into the canonical tree of pattern_nodes.
"""

import re
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

from stix2patterns.exceptions import ParseException
from stix2patterns.v21.pattern import Pattern

from exchange.errors import InvalidObject
from exchange.normalize.pattern_builder import VALUE_KINDS, Builder, collapse
from exchange.normalize.pattern_nodes import (
    KEYWORDS,
    Comparison,
    Literal,
    Node,
    ObjectPath,
    Observation,
    path_key,
    quote,
    unescape,
)
from exchange.normalize.values import (
    HASH_NAMES,
    ValueKind,
    canonical,
    canonical_hash_name,
    hash_kind,
    hash_normalizer,
    value_normalizer,
)

# [type:value = '…'] or [file:hashes.NAME = '…'] with plain blanks: the shape _fast_parts handles.
_FAST_SINGLE = re.compile(
    r"[ \t]*\[[ \t]*(?P<type>ipv4-addr|ipv6-addr|domain-name|url|email-addr|(?=file:hashes)file):"
    r"(?:value|hashes\.(?P<key>[A-Za-z_][A-Za-z0-9_]*|'[A-Za-z0-9_-]+'))"
    r"[ \t]*=[ \t]*'(?P<value>[^'\\]*(?:\\['\\][^'\\]*)*)'[ \t]*\][ \t]*"  # (?:[^'\\]|\\['\\])*, unrolled
)

_KIND_PATHS = {kind: f"{sco_type}:value" for sco_type, kind in VALUE_KINDS.items()}
_KIND_PATHS[ValueKind.IPV4_CIDR] = "ipv4-addr:value"
_KIND_PATHS[ValueKind.IPV6_CIDR] = "ipv6-addr:value"


def canonical_pattern(pattern: str) -> str:
    """The canonical text of a STIX 2.1 pattern; InvalidObject with the parser's message if it does not parse."""
    return canonical_pattern_with_role(pattern)[0]


def canonical_pattern_with_role(pattern: str) -> tuple[str, str | None]:
    """Canonical text plus the network role ("dst" or "src") when a misp-stix network-traffic pattern was
    collapsed to the address it names; the caller keeps the role as a label on its claim."""
    fast = _fast_parts(pattern)
    if fast is not None:
        rule, value = fast
        # quote(value) without its two replace() calls for the usual value that has nothing to escape
        return (f"{rule.prefix}'{value}']" if "'" not in value and "\\" not in value
                else f"{rule.prefix}{quote(value)}]"), None
    node, role = _canonical_parsed(pattern)
    return node.text, role


def pattern_for(kind: ValueKind, value: str) -> str:
    """The canonical one-comparison pattern for a value, e.g. [file:hashes.'SHA-256' = '…']."""
    kind, value = canonical(kind, value)
    path = f"file:hashes.{path_key(HASH_NAMES[kind])}" if kind in HASH_NAMES else _KIND_PATHS[kind]
    return f"[{path} = {quote(value)}]"


def single_value(pattern: str) -> tuple[ValueKind, str] | None:
    """(kind, value) when the pattern canonically says "this one value", as pattern_for builds it; else None."""
    fast = _fast_parts(pattern)
    if fast is not None:
        return _single_value(fast[0].path, fast[1])
    node, _ = _canonical_parsed(pattern)
    if not isinstance(node, Observation) or not isinstance(node.expr, Comparison):
        return None
    comparison = node.expr
    if comparison.op != "=" or comparison.negated or not isinstance(comparison.value, Literal):
        return None
    value, path = comparison.value.string, comparison.path
    if value is None:
        return None
    return _single_value(path, value)


def _single_value(path: ObjectPath, value: str) -> tuple[ValueKind, str] | None:
    if path.steps == ("value",) and path.sco_type in VALUE_KINDS:
        return canonical(VALUE_KINDS[path.sco_type], value)
    if path.sco_type == "file" and len(path.steps) == 2 and path.steps[0] == "hashes":
        kind = hash_kind(path.steps[1]) if isinstance(path.steps[1], str) else None
        return (kind, value) if kind is not None else None
    return None


def parse_pattern(pattern: str) -> Node:
    """The canonical tree of a pattern, before the network-traffic collapse."""
    try:
        return Pattern(pattern).visit(Builder())
    except ParseException as exc:
        raise InvalidObject(f"STIX pattern does not parse: {exc}") from None
    except RecursionError:
        raise InvalidObject("STIX pattern is nested too deeply") from None


@lru_cache(maxsize=4096)
def _canonical_parsed(pattern: str) -> tuple[Node, str | None]:
    # Pure, so cacheable: repeated complex patterns (the same MISP attribute from ten peers) parse once.
    return collapse(parse_pattern(pattern))


def _fast_parts(pattern: str) -> tuple["_FastRule", str] | None:
    """(the rule of its path, normalized value) of a one-comparison pattern, else None.

    Most indicators are one comparison of a typed value; recognizing them with a regex instead of the ANTLR
    parser is 10-20x faster. Anything the regex does not fully match takes the parser, and the tests check that
    both paths agree, so the fast path may only decline, never differ. What it does is what pattern_builder's
    _comparison does for `path = 'value'`, inlined: every path here has a value rule, always strict (_value_rule,
    _apply); the tree would be Observation(Comparison(path, "=", False, Literal(quote(value), value), ...))."""
    match = _FAST_SINGLE.fullmatch(pattern)
    if match is None or (rule := _fast_rule(*match.group("type", "key"))) is None:
        return None
    return rule, _fast_value(rule, match.group("value"))


class _FastRule(NamedTuple):
    path: ObjectPath
    prefix: str  # the canonical pattern up to its value: "[path = "
    normalize: Callable[[str], str]  # the path's value rule


@lru_cache(maxsize=128)  # keyed by the regex's type and hash key as spelled: a feed uses a handful
def _fast_rule(sco_type: str, key: str | None) -> _FastRule | None:
    if key is None:
        path, rule = ObjectPath(sco_type, ("value",)), value_normalizer(VALUE_KINDS[sco_type])
    elif key.startswith("'") or key not in KEYWORDS:
        hash_name = canonical_hash_name(key.strip("'"))
        path, rule = ObjectPath(sco_type, ("hashes", hash_name)), hash_normalizer(hash_name)
    else:
        return None  # hashes.AND does not lex; let the parser say so
    return _FastRule(path, f"[{path.text} = ", rule)


def _fast_value(rule: _FastRule, raw: str) -> str:
    try:
        return rule.normalize(unescape(raw) if "\\" in raw else raw)
    except InvalidObject as exc:
        raise InvalidObject(f"{rule.path.text}: {exc}") from None
