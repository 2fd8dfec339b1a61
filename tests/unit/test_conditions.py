"""Condition operators: OpenFaaS's own plus the AWS ones users rely on."""

from __future__ import annotations

import pytest

from openfaas_iam.model.claims import lookup
from openfaas_iam.model.conditions import Clause, Condition, compile_clause

CLAIMS = {
    "iss": "https://idp.example.com",
    "sub": "user-1",
    "email": "Ada@Example.com",
    "groups": ["dev", "ops"],
    "single_group": "dev",
    "empty": [],
    "verified": True,
    "kubernetes.io": {"namespace": "tools", "serviceaccount": {"name": "release-bot"}},
    "https://idp.example.com#sub-id": "abc",
    "a/b": {"c~d": "x"},
}


def check(op: str, key: str, *values: str) -> bool:
    return compile_clause(Clause(op, key, values))(CLAIMS)


@pytest.mark.parametrize(
    ("op", "key", "values", "expected"),
    [
        ("StringEqual", "jwt:sub", ("user-1",), True),
        ("StringEquals", "jwt:sub", ("other", "user-1"), True),
        ("StringEquals", "jwt:sub", ("User-1",), False),
        ("StringEquals", "jwt:missing", ("x",), False),
        ("StringEqualIgnoreCase", "jwt:email", ("ada@example.com",), True),
        ("StringNotEquals", "jwt:sub", ("a", "b"), True),
        ("StringNotEquals", "jwt:sub", ("a", "user-1"), False),
        ("StringNotEquals", "jwt:missing", ("x",), True),
        ("StringNotEqualsIgnoreCase", "jwt:email", ("ADA@example.COM",), False),
        ("StringLike", "jwt:email", ("*@Example.com",), True),
        ("StringLike", "jwt:email", ("*@example.com",), False),
        ("StringLike", "jwt:sub", ("user-?",), True),
        ("StringLike", "jwt:sub", ("user-[0-9]",), False),
        ("StringNotLike", "jwt:sub", ("admin-*",), True),
        ("StringNotLike", "jwt:sub", ("user-*",), False),
        ("StringEqualsIfExists", "jwt:missing", ("x",), True),
        ("StringEqualsIfExists", "jwt:sub", ("x",), False),
        ("Null", "jwt:missing", ("true",), True),
        ("Null", "jwt:sub", ("true",), False),
        ("Null", "jwt:sub", ("false",), True),
        ("ForAnyValue:StringEqual", "jwt:groups", ("ops",), True),
        ("ForAnyValue:StringEqual", "jwt:groups", ("admin",), False),
        ("ForAnyValue:StringEqual", "jwt:single_group", ("dev",), True),
        ("ForAnyValue:StringEqual", "jwt:missing", ("dev",), False),
        ("ForAnyValue:StringEqual", "jwt:empty", ("dev",), False),
        ("ForAllValues:StringEquals", "jwt:groups", ("dev", "ops", "qa"), True),
        ("ForAllValues:StringEquals", "jwt:groups", ("dev",), False),
        ("ForAllValues:StringEquals", "jwt:missing", ("dev",), True),
        ("ForAllValues:StringEquals", "jwt:empty", ("dev",), True),
        ("ForAnyValue:StringNotEquals", "jwt:groups", ("dev",), True),
        ("ForAllValues:StringNotLike", "jwt:groups", ("adm*",), True),
        # A single-valued operator on a claim with several values is ambiguous: it never grants.
        ("StringEquals", "jwt:groups", ("ops",), False),
        ("StringEquals", "jwt:groups", ("dev", "ops"), False),
        ("StringLike", "jwt:groups", ("*",), False),
        ("StringNotEquals", "jwt:groups", ("ops",), False),
        ("StringNotEquals", "jwt:groups", ("admin",), False),
        ("StringEquals", "jwt:single_group", ("dev",), True),
        ("StringEquals", "jwt:verified", ("true",), True),
        ("StringEquals", "jwt:/kubernetes.io/namespace", ("tools",), True),
        ("StringEquals", "jwt:/kubernetes.io/serviceaccount/name", ("release-bot",), True),
        ("StringEquals", "jwt:/kubernetes.io/nope/name", ("x",), False),
        ("StringEquals", "jwt:https://idp.example.com#sub-id", ("abc",), True),
        ("StringEquals", "jwt:/a~1b/c~0d", ("x",), True),
        ("StringEquals", "jwt:/groups/1", ("ops",), True),
        ("StringEquals", "jwt:kubernetes.io", ("tools",), False),
    ],
)
def test_operator(op: str, key: str, values: tuple[str, ...], expected: bool) -> None:
    assert check(op, key, *values) is expected


def test_all_operators_and_all_keys_must_hold() -> None:
    cond = Condition(
        (
            Clause("StringEqual", "jwt:iss", ("https://idp.example.com",)),
            Clause("ForAnyValue:StringEqual", "jwt:groups", ("ops",)),
        )
    ).compile()
    assert cond(CLAIMS)
    assert not cond({**CLAIMS, "groups": ["dev"]})
    assert not cond({**CLAIMS, "iss": "https://evil.example.com"})


def test_lookup_normalises_values() -> None:
    assert lookup(CLAIMS, "jwt:single_group") == ("dev",)
    assert lookup(CLAIMS, "jwt:missing") is None
    assert lookup({"n": 3}, "jwt:n") == ("3",)


def test_ambiguous_single_valued_operator_fails_closed_both_ways() -> None:
    """In an Allow or a Role it does not match; in a Deny (ambiguous=True) it does."""
    clause = Clause("StringEquals", "jwt:groups", ("contractors",))
    assert compile_clause(clause, ambiguous=False)(CLAIMS) is False
    assert compile_clause(clause, ambiguous=True)(CLAIMS) is True
    assert Condition((clause,)).ambiguous_clauses(CLAIMS) == [clause]
    # One value is not ambiguous, whichever way the result is wanted.
    assert compile_clause(Clause("StringEquals", "jwt:sub", ("user-1",)), ambiguous=True)(CLAIMS) is True
    assert compile_clause(Clause("StringEquals", "jwt:sub", ("x",)), ambiguous=True)(CLAIMS) is False


@pytest.mark.parametrize("value", ["evil\n@example.com", "evil@example.com\n", "\n"])
def test_like_never_matches_across_a_newline(value: str) -> None:
    clause = Clause("StringLike", "jwt:email", ("*@example.com",))
    assert compile_clause(clause)({"email": value}) is False
    assert compile_clause(Clause("StringLike", "jwt:email", ("*",)))({"email": value}) is False
    assert compile_clause(clause)({"email": "ada@example.com"}) is True
