"""Role matching is indexed (issue 16): same answers as testing every Role, a bounded number tested."""

from __future__ import annotations

import random
from types import MappingProxyType

from openfaas_iam.engine.roles import CompiledRole, RoleMatcher, compile_role
from openfaas_iam.model.conditions import Clause, Condition
from openfaas_iam.model.objects import IamConfig, Role

OPERATORS = [
    "StringEquals",
    "ForAnyValue:StringEquals",
    "ForAllValues:StringEquals",
    "StringEqualsIfExists",
    "StringNotEquals",
    "StringLike",
    "StringEqualsIgnoreCase",
    "Null",
]
KEYS = ["jwt:sub", "jwt:iss", "jwt:groups", "jwt:email"]
VALUES = ["a", "b", "c", "A", "x*"]


def random_role(rng: random.Random, i: int) -> Role:
    principal = {}
    if rng.random() < 0.5:
        principal[rng.choice(KEYS)] = tuple(rng.sample(VALUES, rng.randint(1, 2)))
    clauses = []
    for _ in range(rng.randint(0 if principal else 1, 2)):
        op = rng.choice(OPERATORS)
        values = ("true",) if op == "Null" else tuple(rng.sample(VALUES, rng.randint(1, 2)))
        clauses.append(Clause(op, rng.choice(KEYS), values))
    return Role(
        f"r{i}",
        "openfaas",
        (f"p{i}",),
        principal=MappingProxyType(principal),
        condition=Condition(tuple(clauses)) if clauses else None,
    )


def random_claims(rng: random.Random) -> dict[str, object]:
    claims: dict[str, object] = {}
    for key in KEYS:
        r = rng.random()
        if r < 0.25:
            continue
        name = key[4:]
        claims[name] = rng.choice(VALUES) if r < 0.7 else rng.sample(VALUES, rng.randint(0, 3))
    return claims


def test_the_index_answers_what_testing_every_role_answers() -> None:
    rng = random.Random(16)
    for _ in range(200):
        roles = tuple(random_role(rng, i) for i in range(rng.randint(1, 30)))
        matcher = RoleMatcher(IamConfig(roles=roles))
        every = [compile_role(r) for r in roles]
        for _ in range(20):
            claims = random_claims(rng)
            assert matcher.matching(claims) == [c.role for c in every if c.test(claims)], (roles, claims)


def counting(matcher: RoleMatcher) -> list[int]:
    """Count the Role tests a matcher runs (a behavioural measure of cost, not a timing)."""
    tested = [0]

    def wrap(c: CompiledRole) -> CompiledRole:
        def test(claims, inner=c.test) -> bool:
            tested[0] += 1
            return inner(claims)

        return CompiledRole(c.role, test)

    matcher.roles = [wrap(c) for c in matcher.roles]
    return tested


def test_a_token_is_tested_against_its_own_roles_only_among_ten_thousand() -> None:
    issuers = [f"https://idp{i}.example" for i in range(1000)]
    roles = []
    for i in range(10_000):
        if i % 2:
            roles.append(Role(f"u{i}", "openfaas", ("p",), principal=MappingProxyType({"jwt:sub": (f"user{i}",)})))
        else:  # conditions only, anchored by the issuer's exact StringEquals
            cond = Condition(
                (
                    Clause("StringEquals", "jwt:iss", (issuers[i % 1000],)),
                    Clause("ForAnyValue:StringLike", "jwt:groups", (f"team-{i}*",)),
                )
            )
            roles.append(Role(f"g{i}", "openfaas", ("p",), condition=cond))
    roles.append(Role("wide", "openfaas", ("p",), condition=Condition((Clause("StringLike", "jwt:email", ("*",)),))))
    matcher = RoleMatcher(IamConfig(roles=tuple(roles)))
    tested = counting(matcher)
    claims = {"sub": "user7", "iss": issuers[4], "groups": ["team-4-dev"], "email": "u@example.com"}
    assert [r.name for r in matcher.matching(claims)] == ["g4", "u7", "wide"]
    # user7's Role, the 10 Roles of idp4, and the one Role with no anchor: 12 of 10,001.
    assert tested[0] == 12


def test_roles_a_missing_claim_satisfies_are_never_filed_under_it() -> None:
    """`IfExists`, `ForAllValues:` and negated operators hold without the claim: they cannot anchor."""
    for op in ("StringEqualsIfExists", "ForAllValues:StringEquals", "StringNotEquals"):
        role = Role("r", "openfaas", ("p",), condition=Condition((Clause(op, "jwt:iss", ("https://other",)),)))
        matcher = RoleMatcher(IamConfig(roles=(role,)))
        claims = {"sub": "alice"} if op != "StringNotEquals" else {"sub": "alice", "iss": "https://mine"}
        assert matcher.matching(claims) == [role], op
