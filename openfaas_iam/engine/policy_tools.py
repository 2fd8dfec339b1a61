"""Reviewing a configuration before it ships: who can do what, what a change changes, tests as data.

Pure functions over an IamConfig, answering from the configuration alone (no token, no
IdP). They read statements the way the decision engine (`policy.py`) does, with the same
compiled statements, so their answers agree with it (a property test checks this):

- `who_can(config, action, resource)`: per Role, the Allow statements that grant it and the
  Deny statements that cut it back, with the claims under which each applies;
- `diff_configs(old, new)`: per Role, grants and denials that appear or go, and issuers and
  Roles added or removed; exact for statements without conditions or variables, and
  marked approximate where a free-form claim decides;
- `run_tests(config, cases)`: policy tests as data (identities by claims, expectations on
  Roles and decisions), reported like a test runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openfaas_iam.engine.policy import (
    CompiledStatement,
    patterns_overlap,
    policy_index,
    resource_matches,
    split_resource,
)
from openfaas_iam.engine.roles import role_matcher
from openfaas_iam.engine.simulate import simulate
from openfaas_iam.model.actions import ACTIONS, canonical_action, expand_action
from openfaas_iam.model.conditions import Condition
from openfaas_iam.model.objects import IamConfig, Role, Statement
from openfaas_iam.model.protected import Protection
from openfaas_iam.model.resources import VARIABLE


def describe_condition(condition: Condition | None) -> str:
    if condition is None:
        return ""
    return "; ".join(f"{c.operator} {c.key} {list(c.values)}" for c in condition.clauses)


def describe_role(role: Role) -> str:
    """The claims a token needs to earn the Role, in words."""
    parts = [f"{k} in {list(v)}" for k, v in role.principal.items()]
    if role.condition is not None:
        parts.append(describe_condition(role.condition))
    return ", ".join(parts) or "any token"


@dataclass(frozen=True)
class Grant:
    policy: str
    sid: str
    effect: str
    resources: tuple[str, ...]
    condition: str
    depends_on_claims: bool  # a variable or a condition: true only for some tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "sid": self.sid,
            "effect": self.effect,
            "resources": list(self.resources),
            "condition": self.condition,
            "depends_on_claims": self.depends_on_claims,
        }


@dataclass(frozen=True)
class RoleAccess:
    role: str
    matches: str  # which tokens earn the Role
    allows: tuple[Grant, ...]
    denies: tuple[Grant, ...]

    @property
    def verdict(self) -> str:
        """`yes`, `no` or `depends` (on the token's claims: conditions, variables, Denies that may apply)."""
        if not self.allows:
            return "no"
        unconditional_allow = any(not g.depends_on_claims for g in self.allows)
        unconditional_deny = any(not g.depends_on_claims for g in self.denies)
        if unconditional_deny:
            return "no"
        if unconditional_allow and not self.denies:
            return "yes"
        return "depends"

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "matches": self.matches,
            "verdict": self.verdict,
            "allows": [g.to_json() for g in self.allows],
            "denies": [g.to_json() for g in self.denies],
        }


def _statement_resources(cs: CompiledStatement, resource: str, exact: bool) -> tuple[str, ...]:
    """The statement's resources that cover `resource` (a concrete one) or overlap it (a pattern).

    A resource with a variable can be anything a claim holds, so it counts when its shape
    overlaps, and the grant is marked as depending on the token's claims.
    """
    out = []
    for text in cs.statement.resources:
        if "${" in text:
            hit = patterns_overlap(VARIABLE.sub("*", text), resource)
        elif exact:
            hit = resource_matches(text, resource)
        else:
            hit = patterns_overlap(text, resource)
        if hit:
            out.append(text)
    return tuple(out)


def _grant(policy: str, cs: CompiledStatement, resources: tuple[str, ...]) -> Grant:
    st: Statement = cs.statement
    variable = any("${" in r for r in resources)
    return Grant(
        policy,
        st.sid,
        st.effect,
        resources,
        describe_condition(st.condition),
        variable or st.condition is not None,
    )


def _concrete(resource: str) -> bool:
    return resource != "*" and "*" not in resource and "?" not in resource


def who_can(config: IamConfig, action: str, resource: str, protection: Protection | None = None) -> list[RoleAccess]:
    """Every Role with a statement that may allow `action` (a pattern: `Function:*`) on `resource`.

    `resource` is `*`, `ns:*`, `ns:fn` or a glob; ValueError for a malformed one. For the
    bundle's own objects only an Allow naming the object exactly counts, as in the proxy.
    """
    protection = protection or Protection()
    if resource != "*":
        split_resource(resource)
    actions = expand_action(action)
    if not actions:
        raise ValueError(f"unknown action {action!r}")
    index = policy_index(config)
    exact = _concrete(resource)
    protected = exact and any(protection.protects(a, resource) for a in actions)
    per_policy: dict[str, tuple[list[Grant], list[Grant]]] = {}  # Roles share Policies: each is read once

    def grants(name: str) -> tuple[list[Grant], list[Grant]]:
        if name not in per_policy:
            allows: list[Grant] = []
            denies: list[Grant] = []
            for cs in index.statements.get(name, []):
                if not cs.actions & actions:
                    continue
                covered = _statement_resources(cs, resource, exact)
                if covered and not cs.deny and protected:
                    covered = tuple(r for r in covered if r == resource)  # wildcards stop at the bundle
                if not covered and cs.deny and any("${" in r for r in cs.statement.resources):
                    covered = tuple(cs.statement.resources)  # a Deny fails closed when its variable is unresolved
                if covered:
                    (denies if cs.deny else allows).append(_grant(name, cs, covered))
            per_policy[name] = (allows, denies)
        return per_policy[name]

    out: list[RoleAccess] = []
    for role in config.roles:
        role_allows: list[Grant] = []
        role_denies: list[Grant] = []
        for name in role.policies:
            a, d = grants(name)
            role_allows += a
            role_denies += d
        if role_allows:
            out.append(RoleAccess(role.name, describe_role(role), tuple(role_allows), tuple(role_denies)))
    return out


# -- diff -------------------------------------------------------------------------------------


@dataclass
class RoleChange:
    role: str
    now_allowed: list[str] = field(default_factory=list)
    no_longer_allowed: list[str] = field(default_factory=list)
    now_denied: list[str] = field(default_factory=list)
    no_longer_denied: list[str] = field(default_factory=list)
    matches_changed: str | None = None
    approximate: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.now_allowed
            or self.no_longer_allowed
            or self.now_denied
            or self.no_longer_denied
            or self.matches_changed
        )

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v}


@dataclass
class ConfigDiff:
    issuers_added: list[str] = field(default_factory=list)
    issuers_removed: list[str] = field(default_factory=list)
    issuers_changed: list[str] = field(default_factory=list)
    roles_added: list[str] = field(default_factory=list)
    roles_removed: list[str] = field(default_factory=list)
    roles: list[RoleChange] = field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.issuers_added
            or self.issuers_removed
            or self.issuers_changed
            or self.roles_added
            or self.roles_removed
            or self.roles
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v for k, v in self.__dict__.items() if v and k != "roles"}
        out["roles"] = [r.to_json() for r in self.roles]
        return out


Line = tuple[str, str, str]  # (action, resource, condition)


PolicyLines = tuple[frozenset[Line], frozenset[Line], tuple[str, ...]]


def _policy_lines(config: IamConfig) -> dict[str, PolicyLines]:
    """Each Policy's (action, resource, condition) lines, Allow and Deny, and what is approximate; once."""

    def build(cfg: IamConfig) -> dict[str, PolicyLines]:
        out: dict[str, PolicyLines] = {}
        for policy in cfg.policies:
            allow: set[Line] = set()
            deny: set[Line] = set()
            approx: list[str] = []
            for st in policy.statements:
                actions: set[str] = set()
                for a in st.actions:
                    actions |= expand_action(a)
                when = describe_condition(st.condition)
                target = deny if st.effect == "Deny" else allow
                target.update((action, res, when) for action in actions for res in st.resources)
                if st.condition is not None or any("${" in r for r in st.resources):
                    approx.append(f"{policy.name}/{st.sid} depends on the token's claims")
            out[policy.name] = (frozenset(allow), frozenset(deny), tuple(approx))
        return out

    return config.derived("policy-lines", build)


def _grants(config: IamConfig, role: Role) -> tuple[set[Line], set[Line], list[str]]:
    """The Role's lines: the union of its Policies'."""
    lines = _policy_lines(config)
    allow: set[Line] = set()
    deny: set[Line] = set()
    approx: list[str] = []
    for name in role.policies:
        if name in lines:
            a, d, x = lines[name]
            allow |= a
            deny |= d
            approx += x
    return allow, deny, approx


def _group(lines: set[Line]) -> list[str]:
    """`Function:Create, Function:Delete on prod:* when ...`: one line per resource and condition."""
    by: dict[tuple[str, str], list[str]] = {}
    for action, res, when in lines:
        by.setdefault((res, when), []).append(action)
    out = []
    for (res, when), actions in sorted(by.items()):
        names = ", ".join(sorted(actions, key=ACTIONS.index))
        out.append(f"{names} on {res}" + (f" when {when}" if when else ""))
    return out


def diff_configs(old: IamConfig, new: IamConfig) -> ConfigDiff:
    """What access changes between two configurations, Role by Role."""
    d = ConfigDiff()
    old_iss = {i.name: i for i in old.issuers}
    new_iss = {i.name: i for i in new.issuers}
    d.issuers_added = sorted(set(new_iss) - set(old_iss))
    d.issuers_removed = sorted(set(old_iss) - set(new_iss))
    d.issuers_changed = sorted(n for n in set(old_iss) & set(new_iss) if old_iss[n] != new_iss[n])
    old_roles = {r.name: r for r in old.roles}
    new_roles = {r.name: r for r in new.roles}
    d.roles_added = sorted(set(new_roles) - set(old_roles))
    d.roles_removed = sorted(set(old_roles) - set(new_roles))
    for name in sorted(set(old_roles) | set(new_roles)):
        before = old_roles.get(name)
        after = new_roles.get(name)
        a_old, d_old, _ = _grants(old, before) if before else (set(), set(), [])
        a_new, d_new, approx = _grants(new, after) if after else (set(), set(), [])
        change = RoleChange(
            name,
            now_allowed=_group(a_new - a_old),
            no_longer_allowed=_group(a_old - a_new),
            now_denied=_group(d_new - d_old),
            no_longer_denied=_group(d_old - d_new),
            approximate=approx,
        )
        if before and after and describe_role(before) != describe_role(after):
            change.matches_changed = f"{describe_role(before)} -> {describe_role(after)}"
        if not change.empty():
            change.approximate = sorted(set(change.approximate))
            d.roles.append(change)
    return d


# -- policy tests as data ------------------------------------------------------------------------


class TestFileError(ValueError):
    """A test file that cannot be run: the message names the case and field."""


@dataclass
class CaseResult:
    name: str
    passed: bool
    failures: list[str]
    explanation: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "failures": self.failures}


def _claims(case: Mapping[str, Any], where: str) -> dict[str, Any]:
    claims = case.get("claims")
    if not isinstance(claims, dict) or not claims:
        raise TestFileError(f"{where}.claims: expected a mapping of the token's claims (iss, sub, groups, ...)")
    return dict(claims)


def run_tests(config: IamConfig, cases: list[Any]) -> list[CaseResult]:
    """Run each case: `roles` (the exact list of matching Roles, optional) and `expect` decisions.

    A case: `{name, claims, roles?: [..], expect: [{action, resource, allowed, by?: policy/sid}]}`.
    """
    results = []
    matcher = role_matcher(config)
    index = policy_index(config)
    for i, case in enumerate(cases):
        where = f"tests[{i}]"
        if not isinstance(case, dict):
            raise TestFileError(f"{where}: expected a mapping with name, claims and expect")
        name = str(case.get("name") or where)
        claims = _claims(case, where)
        failures: list[str] = []
        explanation: list[str] = []
        roles = [r.name for r in matcher.matching(claims)]
        if "roles" in case:
            want = case["roles"]
            # Names only: anything else is a mistake in the test file (exit 2), not a failed case,
            # and a mixed list would make the comparison below raise.
            if not isinstance(want, list) or not all(isinstance(r, str) for r in want):
                raise TestFileError(f"{where}.roles: expected a list of Role names")
            if sorted(want) != sorted(roles):
                failures.append(f"roles: expected {sorted(want)}, got {sorted(roles)}")
        policies = matcher.policies(claims)
        expects = case.get("expect", [])
        if not isinstance(expects, list):
            raise TestFileError(f"{where}.expect: expected a list of {{action, resource, allowed}}")
        for j, e in enumerate(expects):
            ew = f"{where}.expect[{j}]"
            if not isinstance(e, dict) or not isinstance(e.get("allowed"), bool):
                raise TestFileError(f"{ew}: expected action, resource and allowed: true|false")
            action, resource = e.get("action"), e.get("resource")
            if not isinstance(action, str) or canonical_action(action) is None:
                raise TestFileError(f"{ew}.action: unknown action {action!r}")
            if not isinstance(resource, str):
                raise TestFileError(f"{ew}.resource: expected a resource such as openfaas-fn:api")
            decision = index.decide(policies, action, resource, claims)
            ok = decision.allowed == e["allowed"]
            by = e.get("by")
            if by is not None and not isinstance(by, str):
                raise TestFileError(f"{ew}.by: expected policy/sid, e.g. team-a-rw/read-write")
            if ok and by is not None:
                got = f"{decision.matched.policy}/{decision.matched.sid}" if decision.matched else None
                if got != by:
                    ok = False
                    failures.append(f"{action} on {resource}: decided by {got}, expected {by}")
            elif not ok:
                verdict = "ALLOW" if decision.allowed else "DENY"
                failures.append(f"{action} on {resource}: {verdict} ({decision.reason}), expected the opposite")
                sim = simulate(config, claims, action, resource)
                for s in sim.statements:
                    if s.applies or s.notes:
                        state = "APPLIES" if s.applies else "skip"
                        explanation.append(f"{state} {s.policy}/{s.sid} ({s.effect})")
                        explanation += [f"  note: {n}" for n in s.notes]
        results.append(CaseResult(name, not failures, failures, explanation))
    return results
