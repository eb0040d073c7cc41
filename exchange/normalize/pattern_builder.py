"""Normalize stage: the visitor that turns a stix2-patterns (ANTLR) parse tree into canonical pattern nodes.

Here are the rules that make one text of many spellings: operands flattened, deduplicated where that keeps the
meaning and sorted, literals and values in one spelling each; and `collapse`, which turns misp-stix's network-traffic
spelling of an address into the address. patterns.py calls them for every pattern its fast path declines.
"""

import re
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from antlr4 import ParserRuleContext
from antlr4.tree.Tree import ParseTree, TerminalNode
from stix2patterns.v21.grammars.STIXPatternParser import STIXPatternParser as P
from stix2patterns.v21.grammars.STIXPatternVisitor import STIXPatternVisitor

from exchange.errors import InvalidObject
from exchange.normalize.pattern_nodes import (
    Comparison,
    FollowedBy,
    Index,
    Junction,
    Literal,
    Node,
    ObjectPath,
    Observation,
    Qualified,
    quote,
    unescape,
)
from exchange.normalize.values import ValueKind, canonical, canonical_hash_name, normalize_hash, normalize_value

_FLOAT = re.compile(r"([+-]?)(\d*)\.(\d+)")
# SCO types whose value property holds one kind of value: _value_rule normalizes it as that kind (and so does the
# fast path in patterns.py, which reads only these types and file hashes).
VALUE_KINDS = {
    "ipv4-addr": ValueKind.IPV4,
    "ipv6-addr": ValueKind.IPV6,
    "domain-name": ValueKind.DOMAIN,
    "url": ValueKind.URL,
    "email-addr": ValueKind.EMAIL,
}
# STIX 2.1 section 6.6: these email-message references MUST point to email-addr objects.
_EMAIL_REFS = frozenset({"from_ref", "sender_ref", "to_refs", "cc_refs", "bcc_refs"})


class Builder(STIXPatternVisitor):
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
    return Literal(quote(value), value)


def _value_rule(path: ObjectPath) -> Callable[[str], str] | None:
    """How a string compared with this path is normalized, when the path says what the value is."""
    steps = path.steps
    if steps == ("value",) and path.sco_type in VALUE_KINDS:
        return partial(normalize_value, VALUE_KINDS[path.sco_type])
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


def collapse(node: Node) -> tuple[Node, str | None]:
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
        value = unescape(text[1:-1])
        return Literal(quote(value), value)
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
    return unescape(text[1:-1]) if text.startswith("'") else text

