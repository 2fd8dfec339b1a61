"""Policy evaluation: may this token perform this action on this resource?

Semantics: OpenFaaS IAM's (actions with wildcards and legacy names, anchored resources
`*`, `ns:*`, `ns:fn`, `*:fn`, statement conditions on the token's claims), plus AWS's
explicit Deny (any matching Deny wins over every Allow; no match is an implicit deny)
and policy variables in resources (`dev-${jwt:preferred_username}:*`).

Policies are compiled and indexed once per configuration: by policy name (the token
names its policies) and then by concrete action. A decision looks only at statements
of the token's own policies for that one action, so its cost does not grow with the
number of policies that cannot apply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from openfaas_iam.model.actions import ACTIONS, canonical_action, expand_actions
from openfaas_iam.model.claims import lookup
from openfaas_iam.model.conditions import Test, glob_regex
from openfaas_iam.model.objects import IamConfig, Statement
from openfaas_iam.model.resources import VARIABLE, parse_resource

Claims = Mapping[str, Any]
# A variable's value must be a plain name: a claim can never smuggle in a wildcard or a ':'.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Matched:
    policy: str
    sid: str
    effect: str

    def to_json(self) -> dict[str, str]:
        return {"policy": self.policy, "sid": self.sid, "effect": self.effect}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    action: str
    resource: str
    matched: Matched | None
    reason: str
    # Report-only: the call proceeds, and this says what would have denied it once enforced.
    would_deny: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "allowed": self.allowed,
            "action": self.action,
            "resource": self.resource,
            "matched": self.matched.to_json() if self.matched else None,
            "reason": self.reason,
        }
        if self.would_deny:
            out["would_deny"] = self.would_deny
        return out


@dataclass(frozen=True, slots=True, eq=False)
class _Part:
    """One side of `ns:fn`: any, exact, a glob, or a template with variables.

    Immutable, so one is shared by every statement of a configuration that writes the same
    text (`*`, `prod-*`, a team's namespace): see `_compile_resources`.
    """

    text: str
    kind: str  # any | exact | glob | template
    regex: re.Pattern[str] | None

    @classmethod
    def parse(cls, text: str) -> _Part:
        if text == "*":
            return cls(text, "any", None)
        if "${" in text:
            return cls(text, "template", None)
        if "*" in text or "?" in text:
            return cls(text, "glob", glob_regex(text))
        return cls(text, "exact", None)

    def match(self, value: str, claims: Claims, unresolved: bool = False) -> bool:
        """`unresolved` answers for a template whose variables have no single plain value."""
        kind = self.kind
        if kind == "any":
            return True
        if kind == "exact":
            return value == self.text
        if kind == "glob":
            return self.regex.fullmatch(value) is not None  # type: ignore[union-attr]
        pattern = substitute(self.text, claims)
        if pattern is None:
            return unresolved
        return glob_regex(pattern).fullmatch(value) is not None

    def render(self, claims: Claims) -> str | None:
        return substitute(self.text, claims) if self.kind == "template" else self.text


def substitute(text: str, claims: Claims) -> str | None:
    """Replace `${jwt:claim}` with the claim's single plain value; None when it has none."""
    failed = False

    def repl(m: re.Match[str]) -> str:
        nonlocal failed
        values = lookup(claims, m.group(1))
        if not values or len(values) != 1 or not _SAFE_VALUE.fullmatch(values[0]):
            failed = True
            return ""
        # Escape glob characters: the value is a literal (the safe pattern excludes them anyway).
        return values[0]

    out = VARIABLE.sub(repl, text)
    return None if failed else out


@dataclass(frozen=True, slots=True)
class CompiledStatement:
    policy: str
    statement: Statement
    actions: frozenset[str]
    resources: tuple[tuple[_Part, _Part] | None, ...]  # None: the whole-cluster `*`
    condition: Test | None
    deny: bool = False  # a Deny fails closed: unresolvable variables and ambiguous conditions make it apply

    @property
    def matched(self) -> Matched:
        return Matched(self.policy, self.statement.sid, self.statement.effect)

    def covers(self, ns: str, fn: str, claims: Claims) -> bool:
        deny = self.deny
        for res in self.resources:
            if res is None or (res[0].match(ns, claims, deny) and res[1].match(fn, claims, deny)):
                return True
        return False

    def covers_exactly(self, ns: str, fn: str) -> bool:
        """Whether a resource names `ns:fn` literally (no wildcard, no variable): for protected targets."""
        for res in self.resources:
            if res is None or res[0].kind != "exact" or res[0].text != ns or res[1].text != fn:
                continue
            # `ns:*` is the exact name of a whole namespace (Namespace:* actions), never of a function.
            if res[1].kind == "exact" or (fn == "*" and res[1].kind == "any"):
                return True
        return False

    def applies(self, ns: str, fn: str, claims: Claims, exact_only: bool = False) -> bool:
        if self.condition is not None and not self.condition(claims):
            return False
        if exact_only and not self.deny:
            return self.covers_exactly(ns, fn)
        return self.covers(ns, fn, claims)

    def rendered_resources(self, claims: Claims) -> list[str]:
        out = []
        for res in self.resources:
            if res is None:
                out.append("*")
                continue
            ns, fn = res[0].render(claims), res[1].render(claims)
            if ns is not None and fn is not None:
                out.append(f"{ns}:{fn}")
        return out


Resources = tuple[tuple[_Part, _Part] | None, ...]


def _compile_resources(texts: tuple[str, ...], parts: dict[str, _Part]) -> Resources:
    """A statement's resources as parts, each text parsed once per configuration (`parts`)."""
    out: list[tuple[_Part, _Part] | None] = []
    for text in texts:
        if text == "*":
            out.append(None)
            continue
        parsed = parse_resource(text)
        ns = parts.get(parsed.namespace) or parts.setdefault(parsed.namespace, _Part.parse(parsed.namespace))
        fn = parts.get(parsed.function) or parts.setdefault(parsed.function, _Part.parse(parsed.function))
        out.append((ns, fn))
    return tuple(out)


def compile_statement(policy: str, st: Statement, parts: dict[str, _Part] | None = None) -> CompiledStatement:
    """`parts`: the parts already made for this configuration, shared (a new table when None).

    The action set is shared too (`expand_actions` caches one frozenset per distinct list)."""
    resources = _compile_resources(st.resources, {} if parts is None else parts)
    deny = st.effect == "Deny"
    condition = st.condition.compile(ambiguous=deny) if st.condition else None
    return CompiledStatement(policy, st, expand_actions(st.actions), resources, condition, deny)


def split_resource(resource: str) -> tuple[str, str]:
    """A request's resource: `*`, `ns:*` or `ns:fn`; ValueError for anything else."""
    if resource == "*":
        return "*", "*"
    parts = resource.split(":")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError(f"malformed resource {resource!r}: expected '*', 'namespace:*' or 'namespace:function'")
    return parts[0], parts[1]


# Which statements of a Policy (by position) apply to each concrete action. Policies written
# alike (the same action lists in the same order) share one, so a configuration holds one per
# distinct shape rather than a dict of lists per Policy.
ActionShape = Mapping[str, tuple[int, ...]]
_NO_POSITIONS: tuple[int, ...] = ()


def _action_shape(statements: tuple[CompiledStatement, ...]) -> dict[str, tuple[int, ...]]:
    positions: dict[str, list[int]] = {}
    for i, cs in enumerate(statements):
        for action in ACTIONS:  # written order, whatever the set's iteration order
            if action in cs.actions:
                positions.setdefault(action, []).append(i)
    return {action: tuple(p) for action, p in positions.items()}


class PolicyIndex:
    def __init__(self, config: IamConfig) -> None:
        # Policies tried in report-only mode: never enforced, decided in the shadow (see authz.py).
        self.report_only = frozenset(p.name for p in config.policies if p.report_only)
        # policy name -> its compiled statements (in order), and which of them each action reaches
        self.statements: dict[str, tuple[CompiledStatement, ...]] = {}
        self._shapes: dict[str, ActionShape] = {}
        parts: dict[str, _Part] = {}
        shapes: dict[tuple[frozenset[str], ...], ActionShape] = {}
        for policy in config.policies:
            compiled = tuple(compile_statement(policy.name, st, parts) for st in policy.statements)
            self.statements[policy.name] = compiled
            key = tuple(cs.actions for cs in compiled)
            shape = shapes.get(key)
            if shape is None:
                shape = shapes[key] = MappingProxyType(_action_shape(compiled))
            self._shapes[policy.name] = shape

    def enforced(self, policies: Sequence[str]) -> list[str]:
        """The policies that grant and deny for real: a report-only Policy is only ever decided
        in the shadow, so its Allows grant nothing and its Denies refuse nothing, whether for a
        call, a minted function token, the namespaces shown, or the permissions reported."""
        if not self.report_only:
            return list(policies)
        return [p for p in policies if p not in self.report_only]

    def for_action(self, policy: str, action: str) -> list[CompiledStatement]:
        """The statements of `policy` whose actions include the concrete `action`, in written order."""
        shape = self._shapes.get(policy)
        if shape is None:
            return []
        statements = self.statements[policy]
        return [statements[i] for i in shape.get(action, _NO_POSITIONS)]

    def decide(
        self, policies: list[str], action: str, resource: str, claims: Claims, exact_only: bool = False
    ) -> Decision:
        """Deny first, then Allow. With `exact_only` (a target the bundle protects), only an Allow
        whose resource names the target literally counts: no wildcard grant reaches it."""
        canon = canonical_action(action)
        if canon is None:
            return Decision(False, action, resource, None, f"unknown action {action!r}")
        try:
            ns, fn = split_resource(resource)
        except ValueError as e:
            return Decision(False, canon, resource, None, str(e))
        allow: CompiledStatement | None = None
        shapes, statements = self._shapes, self.statements
        for name in policies:
            shape = shapes.get(name)
            if shape is None:
                continue
            compiled = statements[name]
            for i in shape.get(canon, _NO_POSITIONS):
                cs = compiled[i]
                if cs.applies(ns, fn, claims, exact_only):
                    if cs.deny:
                        return Decision(
                            False,
                            canon,
                            resource,
                            cs.matched,
                            f"explicitly denied by policy {name}, statement {cs.statement.sid}",
                        )
                    if allow is None:
                        allow = cs
        if allow is not None:
            return Decision(
                True,
                canon,
                resource,
                allow.matched,
                f"allowed by policy {allow.policy}, statement {allow.statement.sid}",
            )
        named = ", ".join(policies) if policies else "none"
        if exact_only:
            return Decision(
                False,
                canon,
                resource,
                None,
                f"{resource} belongs to openfaas-iam itself: only the gateway admin or a statement naming "
                f"{resource} exactly may {canon} it (no statement of the token's policies ({named}) does)",
            )
        return Decision(
            False, canon, resource, None, f"no statement of the token's policies ({named}) allows {canon} on {resource}"
        )

    def effective(self, policies: list[str], claims: Claims) -> list[dict[str, Any]]:
        """What the token may do, statement by statement, with variables filled in."""
        out = []
        for name in policies:
            for cs in self.statements.get(name, []):
                if cs.condition is not None and not cs.condition(claims):
                    continue
                resources = cs.rendered_resources(claims)
                if not resources:
                    continue
                out.append(
                    {
                        "policy": name,
                        "sid": cs.statement.sid,
                        "effect": cs.statement.effect,
                        "actions": [a for a in ACTIONS if a in cs.actions],
                        "resources": resources,
                    }
                )
        return out

    def namespaces_visible(self, policies: list[str], namespaces: list[str], claims: Claims) -> list[str]:
        """The namespaces in which the token may do anything at all (for filtering lists)."""
        visible = []
        for ns in namespaces:
            for name in policies:
                if any(
                    cs.statement.effect == "Allow"
                    and (cs.condition is None or cs.condition(claims))
                    and any(r is None or r[0].match(ns, claims) for r in cs.resources)
                    for cs in self.statements.get(name, [])
                ):
                    visible.append(ns)
                    break
        return visible

    def invoke_resources(self, policies: list[str], claims: Claims) -> tuple[list[str], list[str]]:
        """Resources the token may and may not `Function:Invoke`, for function tokens."""
        allow: dict[str, None] = {}
        deny: dict[str, None] = {}
        for name in policies:
            for cs in self.for_action(name, "Function:Invoke"):
                if cs.condition is not None and not cs.condition(claims):
                    continue
                target = deny if cs.deny else allow
                rendered = cs.rendered_resources(claims)
                if cs.deny and len(rendered) < len(cs.resources):
                    # A Deny whose variable has no single value applies everywhere (fail closed).
                    rendered = ["*"]
                for r in rendered:
                    target.setdefault(r, None)
        return list(allow), list(deny)


def policy_index(config: IamConfig) -> PolicyIndex:
    return config.derived("policies", PolicyIndex)


def globs_intersect(a: str, b: str) -> bool:
    """Whether some name matches both `*`/`?` globs: a Deny that overlaps an Allow at all."""
    seen: dict[tuple[int, int], bool] = {}

    def f(i: int, j: int) -> bool:
        key = (i, j)
        if key in seen:
            return seen[key]
        seen[key] = False  # no cycles: every step consumes from a or b
        if i == len(a) and j == len(b):
            out = True
        elif i < len(a) and a[i] == "*":
            out = f(i + 1, j) or (j < len(b) and f(i, j + 1))
        elif j < len(b) and b[j] == "*":
            out = f(i, j + 1) or (i < len(a) and f(i + 1, j))
        elif i == len(a) or j == len(b):
            out = False
        else:
            out = (a[i] == b[j] or a[i] == "?" or b[j] == "?") and f(i + 1, j + 1)
        seen[key] = out
        return out

    return f(0, 0)


def patterns_overlap(a: str, b: str) -> bool:
    """Whether two rendered resource patterns (`*`, `ns:fn` with globs) cover a common `ns:fn`."""
    if a == "*" or b == "*":
        return True
    try:
        ans, afn = split_resource(a)
        bns, bfn = split_resource(b)
    except ValueError:
        return True  # unreadable: assume the worst
    return globs_intersect(ans, bns) and globs_intersect(afn, bfn)


def safe_permissions(allow: list[str], deny: list[str]) -> list[str]:
    """The Allow patterns no Deny overlaps: what a function token may list for a verifier that ignores `deny`."""
    return [p for p in allow if not any(patterns_overlap(p, d) for d in deny)]


def resource_matches(pattern: str, resource: str) -> bool:
    """Whether a rendered permission (`ns:*`, `*:fn`, `*`) covers a concrete `ns:fn`."""
    if pattern == "*":
        return True
    try:
        pns, pfn = split_resource(pattern)
        ns, fn = split_resource(resource)
    except ValueError:
        return False
    return _part_matches(pns, ns) and _part_matches(pfn, fn)


def _part_matches(pattern: str, value: str) -> bool:
    """A literal part is a string comparison; only a glob needs a regular expression."""
    if "*" not in pattern and "?" not in pattern:
        return pattern == value
    return glob_regex(pattern).fullmatch(value) is not None
