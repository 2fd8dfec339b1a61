"""Role matching: which Roles, and so which Policies, a verified subject token earns.

`principal` keys must all match, each against any of its values (exact); `condition`
uses the shared condition operators; both must hold when both are given. Every
matching Role contributes: the token's `policy` claim is the union, in the order the
Roles and their policy lists are written (stable tokens, stable tests).
Compiled once per configuration object.

Indexed so an exchange costs the same with 10 Roles or 10,000: each Role is filed under
one claim it cannot match without (an "anchor": a `principal` key, preferably
`jwt:sub`, or an exact positive `StringEquals` condition such as `jwt:iss`), by that
claim's values. A token is tested only against the Roles filed under its own values
of the anchor keys, plus the Roles that have no anchor (conditions only): those cost
what their conditions cost, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from openfaas_iam.model.claims import lookup
from openfaas_iam.model.conditions import AllOf, parse_operator
from openfaas_iam.model.objects import IamConfig, Role

Claims = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CompiledRole:
    role: Role
    test: Callable[[Claims], bool]


@dataclass(frozen=True, slots=True, eq=False)
class _PrincipalTest:
    """Every principal key present with one of its values. An immutable object rather than a
    closure: one per Role, held as long as the configuration, and a closure's cells cost more."""

    items: tuple[tuple[str, frozenset[str]], ...]

    def __call__(self, claims: Claims) -> bool:
        for key, allowed in self.items:
            got = lookup(claims, key)
            if not got or not any(v in allowed for v in got):
                return False
        return True


def compile_role(role: Role) -> CompiledRole:
    tests: list[Callable[[Claims], bool]] = []
    if role.principal:
        tests.append(_PrincipalTest(tuple((key, frozenset(values)) for key, values in role.principal.items())))
    if role.condition is not None:
        tests.append(role.condition.compile())
    if len(tests) == 1:
        return CompiledRole(role, tests[0])
    return CompiledRole(role, AllOf(tuple(tests)))


def _anchor_score(key: str, principal: bool) -> int:
    """Lower is more selective: `sub` names one user, `iss` is shared by every user of an IdP."""
    return (0 if key == "jwt:sub" else 2 if key == "jwt:iss" else 1) + (0 if principal else 3)


def anchor(role: Role) -> tuple[str, frozenset[str]] | None:
    """(claim key, values) the token must carry one of for `role` to match; None if there is none.

    Principal keys always qualify (exact, all must hold). A condition clause qualifies
    only when a missing claim fails it and a match needs a listed value exactly:
    `StringEquals` or `ForAnyValue:StringEquals`, not negated, not `IfExists`
    (`ForAllValues:` holds on a missing claim, so it cannot anchor).
    """
    options: list[tuple[int, str, frozenset[str]]] = []
    for key, values in role.principal.items():
        options.append((_anchor_score(key, True), key, frozenset(values)))
    if role.condition is not None:
        for clause in role.condition.clauses:
            op = parse_operator(clause.operator)
            if op.base == "equals" and not op.negated and not op.if_exists and op.quantifier in (None, "any"):
                options.append((_anchor_score(clause.key, False), clause.key, frozenset(clause.values)))
    if not options:
        return None
    _, best_key, best_values = min(options, key=lambda o: (o[0], len(o[2])))
    return best_key, best_values


class RoleMatcher:
    def __init__(self, config: IamConfig) -> None:
        self.roles = [compile_role(r) for r in config.roles]
        # anchor key -> claim value -> positions of the Roles filed there (ascending).
        index: dict[str, dict[str, list[int]]] = {}
        self._unanchored: list[int] = []
        for pos, role in enumerate(config.roles):
            found = anchor(role)
            if found is None:
                self._unanchored.append(pos)
                continue
            key, values = found
            by_value = index.setdefault(key, {})
            for value in values:
                by_value.setdefault(value, []).append(pos)
        # Most values file one Role: a tuple holds its positions in less than a list.
        self._index: dict[str, dict[str, tuple[int, ...]]] = {
            key: {value: tuple(positions) for value, positions in by_value.items()} for key, by_value in index.items()
        }

    def candidates(self, claims: Claims) -> list[int]:
        """Positions of the Roles that may match (written order): a superset, each still tested."""
        found: set[int] = set(self._unanchored)
        for key, by_value in self._index.items():
            got = lookup(claims, key)
            if got:
                for value in got:
                    hits = by_value.get(value)
                    if hits:
                        found.update(hits)
        return sorted(found)

    def matching(self, claims: Claims) -> list[Role]:
        roles = self.roles
        return [roles[i].role for i in self.candidates(claims) if roles[i].test(claims)]

    def policies(self, claims: Claims) -> list[str]:
        seen: dict[str, None] = {}
        for role in self.matching(claims):
            for name in role.policies:
                seen.setdefault(name, None)
        return list(seen)


def role_matcher(config: IamConfig) -> RoleMatcher:
    """The compiled matcher for this configuration (compiled once, dropped with the config)."""
    return config.derived("roles", RoleMatcher)
