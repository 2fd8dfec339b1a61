"""Condition operators shared by Role matching and Policy statements.

Semantics follow OpenFaaS IAM where it defines them and AWS IAM where it does not:
- every operator must hold (AND); every key under one operator must hold (AND);
  the values listed for one key are alternatives (OR), except for negated
  operators, where a claim value must differ from all of them;
- a missing claim fails positive operators and satisfies negated ones;
  `...IfExists` makes a missing claim satisfy any operator; `Null` tests presence;
- `ForAnyValue:` needs one claim value to satisfy the operator (missing: false);
  `ForAllValues:` needs every value to (missing or empty: true);
- a single-valued operator (no set prefix) on a claim with several values is ambiguous
  and fails closed: it does not match in an Allow or a Role, and it does match in a Deny
  (write `ForAnyValue:`/`ForAllValues:` for list claims such as `groups`, as AWS does);
- `*` and `?` in `StringLike` never match a newline, so `*@example.com` cannot be
  satisfied by `evil\n@example.com`.
Conditions are compiled once, when the configuration loads.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from openfaas_iam.model.claims import lookup, valid_key

# Operator names accepted in documents -> (base operator, negated).
_BASES: dict[str, tuple[str, bool]] = {
    "StringEquals": ("equals", False),
    "StringEqual": ("equals", False),
    "StringNotEquals": ("equals", True),
    "StringNotEqual": ("equals", True),
    "StringEqualsIgnoreCase": ("equals_ci", False),
    "StringEqualIgnoreCase": ("equals_ci", False),
    "StringNotEqualsIgnoreCase": ("equals_ci", True),
    "StringNotEqualIgnoreCase": ("equals_ci", True),
    "StringLike": ("like", False),
    "StringNotLike": ("like", True),
}
SET_PREFIXES = ("ForAnyValue:", "ForAllValues:")
IF_EXISTS = "IfExists"


@dataclass(frozen=True, slots=True)
class Operator:
    """A parsed operator name such as `ForAnyValue:StringLikeIfExists`."""

    name: str
    base: str  # equals | equals_ci | like | null
    negated: bool
    quantifier: str | None  # any | all | None
    if_exists: bool


def suggest_operator(name: str) -> str | None:
    """The closest valid operator to a misspelt one (`StringEqualss` -> `StringEquals`,
    `ForAllValue:StringLike` -> `ForAllValues:StringLike`), for lint's did-you-mean."""
    every = ["Null", *(f"{p}{b}{x}" for p in ("", *SET_PREFIXES) for b in _BASES for x in ("", IF_EXISTS))]
    close = difflib.get_close_matches(name, every, n=1, cutoff=0.75)
    return close[0] if close else None


def parse_operator(name: str) -> Operator:
    """Parse an operator name; ValueError names what is accepted."""
    if not isinstance(name, str):
        raise ValueError("operator names are strings")
    if name == "Null":
        return Operator(name, "null", False, None, False)
    rest = name
    quantifier = None
    for prefix in SET_PREFIXES:
        if rest.startswith(prefix):
            quantifier = "any" if prefix == "ForAnyValue:" else "all"
            rest = rest[len(prefix) :]
            break
    if_exists = rest.endswith(IF_EXISTS)
    if if_exists:
        rest = rest[: -len(IF_EXISTS)]
    if rest not in _BASES:
        known = ", ".join([*_BASES, "Null"])
        hint = suggest_operator(name)
        raise ValueError(
            f"unknown condition operator {name!r}"
            + (f" (did you mean {hint!r}?)" if hint else "")
            + f"; expected one of {known}, "
            "optionally prefixed with ForAnyValue: or ForAllValues: and suffixed with IfExists"
        )
    base, negated = _BASES[rest]
    return Operator(name, base, negated, quantifier, if_exists)


@lru_cache(maxsize=8192)  # the same few patterns recur across statements, Roles and tools
def glob_regex(pattern: str) -> re.Pattern[str]:
    """`*` and `?` wildcards only, anchored at both ends (AWS StringLike)."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


@dataclass(frozen=True, slots=True)
class Clause:
    """One `operator: {key: [values]}` entry, as written in the document."""

    operator: str
    key: str
    values: tuple[str, ...]


Test = Callable[[Mapping[str, Any]], bool]


# The compiled forms below are small immutable objects with a `__call__` rather than closures:
# a closure costs a function object plus a cell per captured variable (about 1 KiB for one
# clause), and a large configuration holds one per clause for as long as it is in force.


@dataclass(frozen=True, slots=True, eq=False)
class _FoldedIn:
    """StringEqualsIgnoreCase: whether a claim value equals a listed one after case-folding."""

    folded: frozenset[str]

    def __call__(self, value: str) -> bool:
        return value.casefold() in self.folded


@dataclass(frozen=True, slots=True, eq=False)
class _AnyGlob:
    """StringLike: whether a claim value matches a listed glob."""

    regexes: tuple[re.Pattern[str], ...]

    def __call__(self, value: str) -> bool:
        return any(r.fullmatch(value) for r in self.regexes)


def _value_predicate(op: Operator, values: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether one claim value matches any listed value (before negation)."""
    if op.base == "equals":
        return frozenset(values).__contains__
    if op.base == "equals_ci":
        return _FoldedIn(frozenset(v.casefold() for v in values))
    return _AnyGlob(tuple(glob_regex(v) for v in values))


@dataclass(frozen=True, slots=True, eq=False)
class _NullTest:
    """`Null`: whether the claim's presence is as required."""

    key: str
    want_absent: bool

    def __call__(self, claims: Mapping[str, Any]) -> bool:
        return (lookup(claims, self.key) is None) == self.want_absent


@dataclass(frozen=True, slots=True, eq=False)
class _ClauseTest:
    """Any other operator over one claim; see the module's docstring for the semantics."""

    key: str
    hit: Callable[[str], bool]
    negated: bool
    quantifier: str | None
    if_exists: bool
    ambiguous: bool

    def __call__(self, claims: Mapping[str, Any]) -> bool:
        got = lookup(claims, self.key)
        negated = self.negated
        quantifier = self.quantifier
        if got is None:
            if self.if_exists:
                return True
            return quantifier == "all" or (quantifier is None and negated)
        hit = self.hit
        if quantifier == "all":
            return all(hit(v) != negated for v in got)
        if quantifier == "any":
            return any(hit(v) != negated for v in got)
        if not got:
            return negated
        if len(got) > 1:
            return self.ambiguous
        return hit(got[0]) != negated


@dataclass(frozen=True, slots=True, eq=False)
class AllOf:
    """True when every test holds (in order, stopping at the first that fails)."""

    tests: tuple[Test, ...]

    def __call__(self, claims: Mapping[str, Any]) -> bool:
        return all(t(claims) for t in self.tests)


def _always(claims: Mapping[str, Any]) -> bool:
    return True


def compile_clause(clause: Clause, ambiguous: bool = False) -> Test:
    """A fast predicate over claims for one clause.

    `ambiguous` is the answer when a single-valued operator meets a claim with several
    values: False where a match grants (Allow, Role), True where it takes away (Deny).
    """
    op = parse_operator(clause.operator)
    if op.base == "null":
        return _NullTest(clause.key, clause.values[0].lower() == "true")
    hit = _value_predicate(op, clause.values)
    return _ClauseTest(clause.key, hit, op.negated, op.quantifier, op.if_exists, ambiguous)


@dataclass(frozen=True, slots=True)
class Condition:
    """A whole `condition:` block; true when every clause holds."""

    clauses: tuple[Clause, ...]

    def compile(self, ambiguous: bool = False) -> Test:
        tests = tuple(compile_clause(c, ambiguous) for c in self.clauses)
        if not tests:
            return _always
        if len(tests) == 1:
            return tests[0]
        return AllOf(tests)

    def failing(self, claims: Mapping[str, Any], ambiguous: bool = False) -> list[Clause]:
        """The clauses that do not hold, for explanations in the simulator and audit."""
        return [c for c in self.clauses if not compile_clause(c, ambiguous)(claims)]

    def ambiguous_clauses(self, claims: Mapping[str, Any]) -> list[Clause]:
        """Clauses whose single-valued operator met a claim with several values (decided fail-closed)."""
        out = []
        for c in self.clauses:
            op = parse_operator(c.operator)
            got = lookup(claims, c.key)
            if op.base != "null" and op.quantifier is None and got is not None and len(got) > 1:
                out.append(c)
        return out


def validate_clause_key(key: str) -> str | None:
    if not isinstance(key, str) or not valid_key(key):
        return "condition keys are claims written as 'jwt:<claim>' or 'jwt:/json/pointer'"
    return None
