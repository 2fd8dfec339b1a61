"""Role matching: which Roles, and so which Policies, a verified subject token earns.

`principal` keys must all match, each against any of its values (exact); `condition`
uses the shared condition operators; both must hold when both are given. Every
matching Role contributes: the token's `policy` claim is the union, in the order the
Roles and their policy lists are written (stable tokens, stable tests).
Compiled once per configuration object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .claims import lookup
from .objects import IamConfig, Role

Claims = Mapping[str, Any]


@dataclass(frozen=True)
class CompiledRole:
    role: Role
    test: Callable[[Claims], bool]


def _principal_test(principal: Mapping[str, tuple[str, ...]]) -> Callable[[Claims], bool]:
    items = [(key, frozenset(values)) for key, values in principal.items()]

    def test(claims: Claims) -> bool:
        for key, allowed in items:
            got = lookup(claims, key)
            if not got or not any(v in allowed for v in got):
                return False
        return True

    return test


def compile_role(role: Role) -> CompiledRole:
    tests: list[Callable[[Claims], bool]] = []
    if role.principal:
        tests.append(_principal_test(role.principal))
    if role.condition is not None:
        tests.append(role.condition.compile())
    if len(tests) == 1:
        return CompiledRole(role, tests[0])
    return CompiledRole(role, lambda claims: all(t(claims) for t in tests))


class RoleMatcher:
    def __init__(self, config: IamConfig) -> None:
        self.roles = [compile_role(r) for r in config.roles]

    def matching(self, claims: Claims) -> list[Role]:
        return [c.role for c in self.roles if c.test(claims)]

    def policies(self, claims: Claims) -> list[str]:
        seen: dict[str, None] = {}
        for role in self.matching(claims):
            for name in role.policies:
                seen.setdefault(name, None)
        return list(seen)


def role_matcher(config: IamConfig) -> RoleMatcher:
    """The compiled matcher for this configuration (compiled once, dropped with the config)."""
    return config.derived("roles", RoleMatcher)
