"""Normalize stage: canonical STIX 2.1 patterns, parsed with stix2-patterns and re-rendered one way.

The canonical text is what an indicator's id hashes (ids.indicator_id), so every spelling of one pattern must
render the same and the rendering must be a fixed point of itself (canonicalizing canonical text changes nothing).
"""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from antlr4 import ParserRuleContext
from antlr4.tree.Tree import ParseTree, TerminalNode
from stix2patterns.exceptions import ParseException
from stix2patterns.v21.grammars.STIXPatternParser import STIXPatternParser as P
from stix2patterns.v21.grammars.STIXPatternVisitor import STIXPatternVisitor
from stix2patterns.v21.pattern import Pattern

from exchange.errors import InvalidObject
from exchange.normalize.values import (
    HASH_NAMES,
    ValueKind,
    canonical,
    canonical_hash_name,
    hash_kind,
    normalize_hash,
    normalize_value,
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keywords lex before identifiers in the grammar, so a key spelled like one must stay quoted.
_KEYWORDS = frozenset({
    "AND", "OR", "NOT", "FOLLOWEDBY", "LIKE", "MATCHES", "ISSUPERSET", "ISSUBSET", "EXISTS", "LAST", "IN",
    "START", "STOP", "SECONDS", "true", "false", "WITHIN", "REPEATS", "TIMES",
})  # fmt: skip
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_FLOAT = re.compile(r"([+-]?)(\d*)\.(\d+)")
# [type:value = '…'] or [file:hashes.NAME = '…'] with plain blanks: the shape _fast_single handles.
_FAST_SINGLE = re.compile(
    r"[ \t]*\[[ \t]*(?P<type>ipv4-addr|ipv6-addr|domain-name|url|email-addr|(?=file:hashes)file):"
    r"(?:value|hashes\.(?P<key>[A-Za-z_][A-Za-z0-9_]*|'[A-Za-z0-9_-]+'))"
    r"[ \t]*=[ \t]*'(?P<value>[^'\\]*(?:\\['\\][^'\\]*)*)'[ \t]*\][ \t]*"  # (?:[^'\\]|\\['\\])*, unrolled
)

_VALUE_KINDS = {
    "ipv4-addr": ValueKind.IPV4,
    "ipv6-addr": ValueKind.IPV6,
    "domain-name": ValueKind.DOMAIN,
    "url": ValueKind.URL,
    "email-addr": ValueKind.EMAIL,
}
_KIND_PATHS = {kind: f"{sco_type}:value" for sco_type, kind in _VALUE_KINDS.items()}
_KIND_PATHS[ValueKind.IPV4_CIDR] = "ipv4-addr:value"
_KIND_PATHS[ValueKind.IPV6_CIDR] = "ipv6-addr:value"
# STIX 2.1 section 6.6: these email-message references MUST point to email-addr objects.
_EMAIL_REFS = frozenset({"from_ref", "sender_ref", "to_refs", "cc_refs", "bcc_refs"})


@dataclass(frozen=True, slots=True)
class Literal:
    text: str  # canonical rendering: 'it\'s', 5, 0.5, h'ff', b'AAAA', t'2016-01-01T00:00:00Z', true
    string: str | None  # the decoded value of a string literal, None for every other literal


@dataclass(frozen=True, slots=True)
class Index:
    text: str  # "*" or a canonical integer


@dataclass(frozen=True, slots=True)
class ObjectPath:
    sco_type: str
    steps: tuple[str | Index, ...]  # str: a property key; Index: a list step

    @property
    def text(self) -> str:
        # The grammar's first component is always a key, so the leading "." is cut off after joining.
        steps = "".join(f".{_key(s)}" if isinstance(s, str) else f"[{s.text}]" for s in self.steps)
        return f"{self.sco_type}:{steps[1:]}"


@dataclass(frozen=True, slots=True)
class Comparison:
    path: ObjectPath
    op: str  # = != < <= > >= IN LIKE MATCHES ISSUBSET ISSUPERSET EXISTS
    negated: bool
    value: Literal | tuple[Literal, ...] | None
    text: str


@dataclass(frozen=True, slots=True)
class Junction:
    op: str  # AND | OR
    operands: tuple["Node", ...]
    observation: bool  # joins observation expressions ([..] AND [..]) rather than comparisons inside one
    text: str


@dataclass(frozen=True, slots=True)
class Observation:
    expr: Comparison | Junction
    text: str


@dataclass(frozen=True, slots=True)
class FollowedBy:
    left: "Node"
    right: "Node"
    text: str


@dataclass(frozen=True, slots=True)
class Qualified:
    expr: "Node"
    qualifier: str  # WITHIN n SECONDS | REPEATS n TIMES | START t'..' STOP t'..'
    text: str


Node = Comparison | Junction | Observation | FollowedBy | Qualified


def canonical_pattern(pattern: str) -> str:
    """The canonical text of a STIX 2.1 pattern; InvalidObject with the parser's message if it does not parse."""
    return canonical_pattern_with_role(pattern)[0]


def canonical_pattern_with_role(pattern: str) -> tuple[str, str | None]:
    """Canonical text plus the network role ("dst" or "src") when a misp-stix network-traffic pattern was
    collapsed to the address it names; the caller keeps the role as a label on its claim."""
    fast = _fast_parts(pattern)
    if fast is not None:
        return f"[{fast[1]} = {_quote(fast[2])}]", None
    node, role = _canonical_parsed(pattern)
    return node.text, role


def pattern_for(kind: ValueKind, value: str) -> str:
    """The canonical one-comparison pattern for a value, e.g. [file:hashes.'SHA-256' = '…']."""
    kind, value = canonical(kind, value)
    path = f"file:hashes.{_key(HASH_NAMES[kind])}" if kind in HASH_NAMES else _KIND_PATHS[kind]
    return f"[{path} = {_quote(value)}]"


def single_value(pattern: str) -> tuple[ValueKind, str] | None:
    """(kind, value) when the pattern canonically says "this one value", as pattern_for builds it; else None."""
    fast = _fast_parts(pattern)
    if fast is not None:
        return _single_value(fast[0], fast[2])
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
    if path.steps == ("value",) and path.sco_type in _VALUE_KINDS:
        return canonical(_VALUE_KINDS[path.sco_type], value)
    if path.sco_type == "file" and len(path.steps) == 2 and path.steps[0] == "hashes":
        kind = hash_kind(path.steps[1]) if isinstance(path.steps[1], str) else None
        return (kind, value) if kind is not None else None
    return None


def parse_pattern(pattern: str) -> Node:
    """The canonical tree of a pattern, before the network-traffic collapse."""
    try:
        return Pattern(pattern).visit(_Builder())
    except ParseException as exc:
        raise InvalidObject(f"STIX pattern does not parse: {exc}") from None
    except RecursionError:
        raise InvalidObject("STIX pattern is nested too deeply") from None


@lru_cache(maxsize=4096)
def _canonical_parsed(pattern: str) -> tuple[Node, str | None]:
    # Pure, so cacheable: repeated complex patterns (the same MISP attribute from ten peers) parse once.
    return _collapse(parse_pattern(pattern))


def _fast_parts(pattern: str) -> tuple[ObjectPath, str, str] | None:
    """(path, its text, normalized value) of a one-comparison pattern, else None.

    Most indicators are one comparison of a typed value; recognizing them with a regex instead of the ANTLR
    parser is 10-20x faster. Anything the regex does not fully match takes the parser, and the tests check that
    both paths agree, so the fast path may only decline, never differ. What it does is what _comparison does for
    `path = 'value'`, inlined: every path here has a value rule, always strict (_value_rule, _apply); the tree
    would be Observation(Comparison(path, "=", False, Literal(_quote(value), value), ...))."""
    match = _FAST_SINGLE.fullmatch(pattern)
    if match is None:
        return None
    sco_type, key, raw = match.group("type", "key", "value")
    if key is None:
        path, path_text, normalize = _fast_path(sco_type, None)
    elif key.startswith("'") or key not in _KEYWORDS:
        path, path_text, normalize = _fast_path(sco_type, canonical_hash_name(key.strip("'")))
    else:
        return None  # hashes.AND does not lex; let the parser say so
    try:
        value = normalize(_ESCAPE.sub(r"\1", raw) if "\\" in raw else raw)
    except InvalidObject as exc:
        raise InvalidObject(f"{path_text}: {exc}") from None
    return path, path_text, value


_FastPath = tuple[ObjectPath, str, Callable[[str], str]]  # a path, its text, the rule for its values


@lru_cache(maxsize=128)
def _fast_path(sco_type: str, hash_name: str | None) -> _FastPath:
    if hash_name is None:
        path, rule = ObjectPath(sco_type, ("value",)), partial(normalize_value, _VALUE_KINDS[sco_type])
    else:
        path, rule = ObjectPath(sco_type, ("hashes", hash_name)), partial(normalize_hash, hash_name)
    return path, path.text, rule


class _Builder(STIXPatternVisitor):
    """Turns the stix2-patterns parse tree into canonical nodes, bottom up."""

    def visitPattern(self, ctx: P.PatternContext) -> Node:
        return self.visit(ctx.observationExpressions())

    def visitObservationExpressions(self, ctx: P.ObservationExpressionsContext) -> Node:
        if ctx.FOLLOWEDBY() is None:
            return self.visit(ctx.observationExpressionOr())
        left, right = (self.visit(c) for c in ctx.observationExpressions())
        # FOLLOWEDBY is ordered and kept as the binary tree the grammar builds (left-associative, section 9.5).
        return FollowedBy(left, right, f"{_wrap(left)} FOLLOWEDBY {_wrap(right)}")

    def visitObservationExpressionOr(self, ctx: P.ObservationExpressionOrContext) -> Node:
        if ctx.OR() is None:
            return self.visit(ctx.observationExpressionAnd())
        operands = _chain(ctx, lambda c: c.observationExpressionOr() if c.OR() is not None else None)
        return _junction("OR", (self.visit(c) for c in operands), observation=True, dedup=True)

    def visitObservationExpressionAnd(self, ctx: P.ObservationExpressionAndContext) -> Node:
        if ctx.AND() is None:
            return self.visit(ctx.observationExpression())
        # Duplicates stay: each observation expression binds its own observation, so [a] AND [a] asks for two
        # matching observations (the reference matcher's binding semantics), not one.
        operands = _chain(ctx, lambda c: c.observationExpressionAnd() if c.AND() is not None else None)
        return _junction("AND", (self.visit(c) for c in operands), observation=True, dedup=False)

    def visitObservationExpressionSimple(self, ctx: P.ObservationExpressionSimpleContext) -> Node:
        expr = self.visit(ctx.comparisonExpression())
        return Observation(expr, f"[{expr.text}]")

    def visitObservationExpressionCompound(self, ctx: P.ObservationExpressionCompoundContext) -> Node:
        return self.visit(ctx.observationExpressions())

    def visitObservationExpressionWithin(self, ctx: P.ObservationExpressionWithinContext) -> Node:
        return _qualified(self.visit(ctx.observationExpression()), self.visit(ctx.withinQualifier()))

    def visitObservationExpressionRepeated(self, ctx: P.ObservationExpressionRepeatedContext) -> Node:
        return _qualified(self.visit(ctx.observationExpression()), self.visit(ctx.repeatedQualifier()))

    def visitObservationExpressionStartStop(self, ctx: P.ObservationExpressionStartStopContext) -> Node:
        return _qualified(self.visit(ctx.observationExpression()), self.visit(ctx.startStopQualifier()))

    def visitWithinQualifier(self, ctx: P.WithinQualifierContext) -> str:
        # A duration, not a typed comparison value: WITHIN 300.0 SECONDS is WITHIN 300 SECONDS.
        return f"WITHIN {_literal(ctx.getChild(1)).text.removesuffix('.0')} SECONDS"

    def visitRepeatedQualifier(self, ctx: P.RepeatedQualifierContext) -> str:
        return f"REPEATS {_literal(ctx.IntPosLiteral()).text} TIMES"

    def visitStartStopQualifier(self, ctx: P.StartStopQualifierContext) -> str:
        return f"START {ctx.TimestampLiteral(0).getText()} STOP {ctx.TimestampLiteral(1).getText()}"

    def visitComparisonExpression(self, ctx: P.ComparisonExpressionContext) -> Node:
        if ctx.OR() is None:
            return self.visit(ctx.comparisonExpressionAnd())
        operands = _chain(ctx, lambda c: c.comparisonExpression() if c.OR() is not None else None)
        return _junction("OR", (self.visit(c) for c in operands), observation=False, dedup=True)

    def visitComparisonExpressionAnd(self, ctx: P.ComparisonExpressionAndContext) -> Node:
        if ctx.AND() is None:
            return self.visit(ctx.propTest())
        # Within one observation each comparison is tested on its own, so AND/OR are plain commutative,
        # idempotent boolean operators here (section 9.3) and duplicates can go.
        operands = _chain(ctx, lambda c: c.comparisonExpressionAnd() if c.AND() is not None else None)
        return _junction("AND", (self.visit(c) for c in operands), observation=False, dedup=True)

    def visitPropTestParen(self, ctx: P.PropTestParenContext) -> Node:
        return self.visit(ctx.comparisonExpression())

    def visitPropTestEqual(self, ctx: P.PropTestEqualContext) -> Node:
        op = "=" if ctx.EQ() is not None else "!="  # the grammar also lexes == and <> (section 9.6)
        literal = _literal(ctx.primitiveLiteral())
        return _comparison(self.visit(ctx.objectPath()), op, _negated(ctx), literal)

    def visitPropTestOrder(self, ctx: P.PropTestOrderContext) -> Node:
        op = (ctx.GT() or ctx.LT() or ctx.GE() or ctx.LE()).getText()
        literal = _literal(ctx.orderableLiteral())
        return _comparison(self.visit(ctx.objectPath()), op, _negated(ctx), literal)

    def visitPropTestSet(self, ctx: P.PropTestSetContext) -> Node:
        items = tuple(_literal(c) for c in ctx.setLiteral().primitiveLiteral())
        return _comparison(self.visit(ctx.objectPath()), "IN", _negated(ctx), items)

    def visitPropTestLike(self, ctx: P.PropTestLikeContext) -> Node:
        return _comparison(self.visit(ctx.objectPath()), "LIKE", _negated(ctx), _literal(ctx.StringLiteral()))

    def visitPropTestRegex(self, ctx: P.PropTestRegexContext) -> Node:
        return _comparison(self.visit(ctx.objectPath()), "MATCHES", _negated(ctx), _literal(ctx.StringLiteral()))

    def visitPropTestIsSubset(self, ctx: P.PropTestIsSubsetContext) -> Node:
        return _comparison(self.visit(ctx.objectPath()), "ISSUBSET", _negated(ctx), _literal(ctx.StringLiteral()))

    def visitPropTestIsSuperset(self, ctx: P.PropTestIsSupersetContext) -> Node:
        return _comparison(self.visit(ctx.objectPath()), "ISSUPERSET", _negated(ctx), _literal(ctx.StringLiteral()))

    def visitPropTestExists(self, ctx: P.PropTestExistsContext) -> Node:
        return _comparison(self.visit(ctx.objectPath()), "EXISTS", _negated(ctx), None)

    def visitObjectPath(self, ctx: P.ObjectPathContext) -> ObjectPath:
        first = ctx.firstPathComponent().getChild(0)
        steps: list[str | Index] = [_name(first)]
        if ctx.objectPathComponent() is not None:
            steps += self.visit(ctx.objectPathComponent())
        for i, step in enumerate(steps[1:], start=1):
            # Hash names are dictionary keys with many spellings (sha256, 'SHA-256', SHA256): STIX 2.1 section 10.7.
            if steps[i - 1] == "hashes" and isinstance(step, str):
                steps[i] = canonical_hash_name(step)
        return ObjectPath(ctx.objectType().getText(), tuple(steps))

    def visitPathStep(self, ctx: P.PathStepContext) -> list[str | Index]:
        return [step for c in ctx.objectPathComponent() for step in self.visit(c)]

    def visitKeyPathStep(self, ctx: P.KeyPathStepContext) -> list[str | Index]:
        return [_name(ctx.getChild(1))]

    def visitIndexPathStep(self, ctx: P.IndexPathStepContext) -> list[str | Index]:
        token = ctx.getChild(1)
        return [Index("*" if ctx.ASTERISK() is not None else str(int(token.getText())))]


def _chain(ctx: ParserRuleContext, split: Callable[[Any], list[ParserRuleContext] | None]) -> list[ParserRuleContext]:
    """The operands of a OP b OP c, which the grammar nests left-deep ((a OP b) OP c). Walked with a loop, so that
    an OR of a few hundred values (a whole report's URLs in one pattern) stays clear of Python's recursion limit."""
    operands, node = [], ctx
    while (pair := split(node)) is not None:
        node, right = pair
        operands.append(right)
    operands.append(node)
    return operands[::-1]


def _negated(ctx: P.PropTestContext) -> bool:
    return ctx.NOT() is not None  # type: ignore[attr-defined]


def _wrap(node: Node) -> str:
    # Operands that are AND/OR/FOLLOWEDBY expressions themselves are always parenthesized, although the grammar's
    # precedence (AND over OR over FOLLOWEDBY) would allow fewer: people and peers' pattern engines read this text,
    # and explicit grouping leaves neither any room to misread it.
    return f"({node.text})" if isinstance(node, Junction | FollowedBy) else node.text


def _junction(op: str, children: Iterable[Node], *, observation: bool, dedup: bool) -> Node:
    operands: list[Node] = []
    for child in children:  # AND and OR are associative: (a AND b) AND c is one three-way AND
        if isinstance(child, Junction) and child.op == op and child.observation == observation:
            operands.extend(child.operands)
        else:
            operands.append(child)
    if dedup:
        operands = list({o.text: o for o in operands}.values())
    # Commutative: order by canonical text, which is deterministic and independent of input order.
    operands.sort(key=lambda o: o.text)
    if len(operands) == 1:
        return operands[0]
    return Junction(op, tuple(operands), observation, f" {op} ".join(_wrap(o) for o in operands))


def _qualified(expr: Node, qualifier: str) -> Qualified:
    return Qualified(expr, qualifier, f"{_wrap(expr)} {qualifier}")


def _comparison(
    path: ObjectPath, op: str, negated: bool, value: Literal | tuple[Literal, ...] | None
) -> Comparison:
    value = _normalized_operand(path, op, value)
    neg = "NOT " if negated else ""
    if value is None:
        return Comparison(path, op, negated, None, f"{neg}EXISTS {path.text}")
    rendered = f"({', '.join(v.text for v in value)})" if isinstance(value, tuple) else value.text
    return Comparison(path, op, negated, value, f"{path.text} {neg}{op} {rendered}")


def _normalized_operand(
    path: ObjectPath, op: str, value: Literal | tuple[Literal, ...] | None
) -> Literal | tuple[Literal, ...] | None:
    if op in ("ISSUBSET", "ISSUPERSET") and isinstance(value, Literal) and value.string is not None:
        return _apply(_network_text, path, value, strict=_is_ip_path(path))
    rule = _value_rule(path) if op in ("=", "!=", "IN") else None
    # LIKE/MATCHES operands are patterns, order comparisons are meant as written: only equality is normalized.
    if rule is not None:
        strict = rule is not _ip_if_ip
        if isinstance(value, tuple):
            value = tuple(_apply(rule, path, v, strict=strict) for v in value)
        elif value is not None:
            value = _apply(rule, path, value, strict=strict)
    if isinstance(value, tuple):  # a set (STIX 2.1 section 9.6): order and repeats carry no meaning
        items = {item.text: item for item in value}
        return tuple(items[text] for text in sorted(items))
    return value


def _apply(rule: Callable[[str], str], path: ObjectPath, literal: Literal, *, strict: bool) -> Literal:
    if literal.string is None:
        return literal
    try:
        value = rule(literal.string)
    except InvalidObject as exc:
        if not strict:
            return literal
        raise InvalidObject(f"{path.text}: {exc}") from None
    return Literal(_quote(value), value)


def _value_rule(path: ObjectPath) -> Callable[[str], str] | None:
    """How a string compared with this path is normalized, when the path says what the value is."""
    steps = path.steps
    if steps == ("value",) and path.sco_type in _VALUE_KINDS:
        return partial(normalize_value, _VALUE_KINDS[path.sco_type])
    if len(steps) >= 2 and steps[-2] == "hashes" and isinstance(steps[-1], str):
        return partial(normalize_hash, steps[-1])
    if steps[-1] == "value" and _ref_before_value(steps):
        if path.sco_type == "email-message" and steps[0] in _EMAIL_REFS and len(steps) <= 3:
            return partial(normalize_value, ValueKind.EMAIL)
        # A reference's type is not in the path (network-traffic:dst_ref may be an IPv4, IPv6, MAC or domain),
        # so only a value that parses as an IP is canonicalized and anything else is left alone.
        return _ip_if_ip
    return None


def _ref_before_value(steps: tuple[str | Index, ...]) -> bool:
    before = [s for s in steps[:-1] if isinstance(s, str)]
    return bool(before) and before[-1].endswith(("_ref", "_refs"))


def _is_ip_path(path: ObjectPath) -> bool:
    return path.steps == ("value",) and path.sco_type in ("ipv4-addr", "ipv6-addr")


def _ip_if_ip(value: str) -> str:
    kind = ValueKind.IPV6 if ":" in value else ValueKind.IPV4
    return normalize_value(kind, value)


def _network_text(value: str) -> str:
    # ISSUBSET/ISSUPERSET operands are subnets (section 9.6), so /32 and /128 keep their prefix here.
    kind, text = canonical(ValueKind.IPV6_CIDR if ":" in value else ValueKind.IPV4_CIDR, value)
    if kind in (ValueKind.IPV4, ValueKind.IPV6):
        return f"{text}/{32 if kind is ValueKind.IPV4 else 128}"
    return text


def _collapse(node: Node) -> tuple[Node, str | None]:
    """misp-stix writes a MISP ip-dst as [network-traffic:dst_ref.type = 'ipv4-addr' AND
    network-traffic:dst_ref.value = '198.51.100.7']; as a whole, unqualified pattern it names the same indicator
    as [ipv4-addr:value = '198.51.100.7'], so it becomes that, and the role (dst/src) is returned for a label."""
    if not isinstance(node, Observation) or not isinstance(node.expr, Junction) or node.expr.op != "AND":
        return node, None
    if len(node.expr.operands) != 2:
        return node, None
    kind_test, value_test = node.expr.operands  # sorted by text: "..._ref.type" comes before "..._ref.value"
    if not (isinstance(kind_test, Comparison) and isinstance(value_test, Comparison)):
        return node, None
    if any(c.op != "=" or c.negated or c.path.sco_type != "network-traffic" for c in (kind_test, value_test)):
        return node, None
    ref = kind_test.path.steps[0]
    if ref not in ("dst_ref", "src_ref") or kind_test.path.steps != (ref, "type"):
        return node, None
    sco_type = kind_test.value.string if isinstance(kind_test.value, Literal) else None
    if value_test.path.steps != (ref, "value") or sco_type not in ("ipv4-addr", "ipv6-addr", "domain-name"):
        return node, None
    path = ObjectPath(sco_type, ("value",))
    comparison = _comparison(path, "=", False, value_test.value)
    return Observation(comparison, f"[{comparison.text}]"), ref.removesuffix("_ref")


def _literal(tree: ParseTree) -> Literal:
    while not isinstance(tree, TerminalNode):  # primitiveLiteral -> orderableLiteral -> the token
        tree = tree.getChild(0)
    token_type, text = tree.symbol.type, tree.getText()
    if token_type == P.StringLiteral:
        value = _ESCAPE.sub(r"\1", text[1:-1])
        return Literal(_quote(value), value)
    if token_type in (P.IntPosLiteral, P.IntNegLiteral):
        return Literal(str(int(text)), None)  # drops "+" and turns -0 into 0
    if token_type in (P.FloatPosLiteral, P.FloatNegLiteral):
        return Literal(_float_text(text), None)
    if token_type == P.HexLiteral:
        return Literal(text.lower(), None)
    return Literal(text, None)  # binary, timestamp, bool: one spelling each that matters, kept


def _float_text(text: str) -> str:
    # String surgery rather than float(): exact, and never an exponent, which the grammar cannot read back.
    match = _FLOAT.fullmatch(text)
    if match is None:
        return text
    sign, whole, fraction = match.groups()
    whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0") or "0"
    sign = "-" if sign == "-" and (whole, fraction) != ("0", "0") else ""
    return f"{sign}{whole}.{fraction}"


def _name(terminal: TerminalNode) -> str:
    text = terminal.getText()
    return _ESCAPE.sub(r"\1", text[1:-1]) if text.startswith("'") else text


def _key(name: str) -> str:
    return name if _IDENTIFIER.fullmatch(name) and name not in _KEYWORDS else _quote(name)


def _quote(value: str) -> str:
    # The grammar knows two escapes in string literals, \\ and \' (STIX 2.1 section 9.2).
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
