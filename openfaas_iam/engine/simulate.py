"""An offline explanation of a decision: which Roles match, which statements apply, and why.

Pure: takes a configuration and claims, returns a structured explanation that the CLI
prints as text or JSON. Mirrors exactly what iam-token and iam-authz do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openfaas_iam.engine.policy import Decision, policy_index, split_resource, substitute
from openfaas_iam.engine.roles import compile_role
from openfaas_iam.model.actions import canonical_action
from openfaas_iam.model.claims import lookup
from openfaas_iam.model.objects import IamConfig, Role
from openfaas_iam.model.protected import Protection
from openfaas_iam.model.resources import VARIABLE


@dataclass
class RoleResult:
    name: str
    matched: bool
    policies: list[str]
    why_not: list[str] = field(default_factory=list)


@dataclass
class StatementResult:
    policy: str
    sid: str
    effect: str
    action_matches: bool
    resource_matches: bool
    condition_holds: bool
    failing_conditions: list[str]
    notes: list[str] = field(default_factory=list)  # fail-closed rules that decided this statement

    @property
    def applies(self) -> bool:
        return self.action_matches and self.resource_matches and self.condition_holds


@dataclass
class Simulation:
    roles: list[RoleResult]
    policies: list[str]
    decision: Decision
    statements: list[StatementResult]
    from_token: bool

    def to_json(self) -> dict[str, Any]:
        return {
            **self.decision.to_json(),
            "policies": self.policies,
            "roles": [r.__dict__ for r in self.roles],
            "statements": [{**s.__dict__, "applies": s.applies} for s in self.statements],
        }


def _why_role_fails(role: Role, claims: Mapping[str, Any]) -> list[str]:
    reasons = []
    for key, values in role.principal.items():
        got = lookup(claims, key)
        if not got or not any(v in values for v in got):
            reasons.append(f"principal {key} is {list(got) if got else 'missing'}, expected one of {list(values)}")
    if role.condition is not None:
        for clause in role.condition.failing(claims):
            got = lookup(claims, clause.key)
            seen = list(got) if got else "missing"
            expected = f"{clause.operator} {clause.key} {list(clause.values)}"
            reasons.append(f"condition {expected} does not hold (claim: {seen})")
    return reasons


def simulate(config: IamConfig, claims: Mapping[str, Any], action: str, resource: str) -> Simulation:
    from_token = isinstance(claims.get("policy"), list) and "fed:iss" in claims
    roles: list[RoleResult] = []
    if from_token:
        policies = [p for p in claims["policy"] if isinstance(p, str)]
    else:
        seen: dict[str, None] = {}
        for role in config.roles:
            matched = compile_role(role).test(claims)
            roles.append(
                RoleResult(role.name, matched, list(role.policies), [] if matched else _why_role_fails(role, claims))
            )
            if matched:
                for p in role.policies:
                    seen.setdefault(p, None)
        policies = list(seen)
    index = policy_index(config)
    canon_action = canonical_action(action) or action
    exact_only = Protection().protects(canon_action, resource)
    decision = index.decide(policies, action, resource, claims, exact_only=exact_only)
    statements: list[StatementResult] = []
    canon = canonical_action(action)
    try:
        ns, fn = split_resource(resource)
    except ValueError:
        ns, fn = None, None
    for name in policies:
        for cs in index.statements.get(name, []):
            condition = cs.statement.condition
            failing = condition.failing(claims, ambiguous=cs.deny) if condition else []
            notes = []
            for clause in condition.ambiguous_clauses(claims) if condition else []:
                outcome = "applies (a Deny fails closed)" if cs.deny else "does not match (write ForAnyValue:)"
                notes.append(
                    f"{clause.operator} on {clause.key}: the token has several values, so the single-valued "
                    f"operator is ambiguous and {outcome}"
                )
            for text in cs.statement.resources:
                for var in VARIABLE.findall(text):
                    if substitute("${" + var + "}", claims) is None:
                        outcome = "the Deny applies to every resource (fail closed)" if cs.deny else "it covers nothing"
                        notes.append(f"${{{var}}} in {text} has no single plain value in the token, so {outcome}")
            if exact_only and not cs.deny and ns is not None and not cs.covers_exactly(ns, fn or ""):
                notes.append(
                    f"{resource} belongs to openfaas-iam itself: only a statement naming it exactly can allow {canon}"
                )
            statements.append(
                StatementResult(
                    policy=name,
                    sid=cs.statement.sid,
                    effect=cs.statement.effect,
                    action_matches=canon in cs.actions if canon else False,
                    resource_matches=ns is not None
                    and (
                        cs.covers_exactly(ns, fn or "")
                        if exact_only and not cs.deny
                        else cs.covers(ns, fn or "", claims)
                    ),
                    condition_holds=not failing,
                    failing_conditions=[f"{c.operator} {c.key} {list(c.values)}" for c in failing],
                    notes=notes,
                )
            )
    return Simulation(roles, policies, decision, statements, from_token)
