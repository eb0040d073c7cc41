"""Normalize stage: the canonical pattern tree, the nodes pattern_builder makes and patterns reads.

Each node carries its canonical text, rendered once when the node is built. The quoting rules that text follows
live here too, as the fast path in patterns renders single comparisons with them without building a tree.
"""

import re
from dataclasses import dataclass

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keywords lex before identifiers in the grammar, so a key spelled like one must stay quoted.
KEYWORDS = frozenset({
    "AND", "OR", "NOT", "FOLLOWEDBY", "LIKE", "MATCHES", "ISSUPERSET", "ISSUBSET", "EXISTS", "LAST", "IN",
    "START", "STOP", "SECONDS", "true", "false", "WITHIN", "REPEATS", "TIMES",
})  # fmt: skip
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


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
        steps = "".join(f".{path_key(s)}" if isinstance(s, str) else f"[{s.text}]" for s in self.steps)
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


def path_key(name: str) -> str:
    """A property key as a path step spells it: bare when the grammar reads it back as a name, else quoted."""
    return name if _IDENTIFIER.fullmatch(name) and name not in KEYWORDS else quote(name)


def quote(value: str) -> str:
    """A string as a pattern's string literal (or quoted key) spells it."""
    # The grammar knows two escapes in string literals, \\ and \' (STIX 2.1 section 9.2).
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unescape(text: str) -> str:
    """The inside of a quoted string literal or key with each backslash escape undone, as the grammar reads it."""
    return _ESCAPE.sub(r"\1", text)
