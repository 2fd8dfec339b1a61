"""The decision table: wildcards, legacy names, anchoring, `*:fn`, Deny over Allow, conditions, variables."""

from __future__ import annotations

import pytest

from openfaas_iam.engine.policy import policy_index, resource_matches
from openfaas_iam.model.loading import load_texts

CONFIG = """
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: staging-ro}
spec:
  statement:
    - {sid: ro, effect: Allow, action: ["Function:List", "Function:Get", "Function:Logs"], resource: ["staging:*"]}
---
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: fn-all-dev}
spec:
  statement:
    - {sid: all, effect: Allow, action: ["Function:*"], resource: ["dev:*"]}
---
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: everything}
spec:
  statement:
    - {sid: star, effect: Allow, action: ["*"], resource: ["*"]}
---
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: legacy}
spec:
  statement:
    - {sid: read, effect: Allow, action: ["Function:Read", "Secret:Read"], resource: ["legacy:*"]}
    - {sid: admin, effect: Allow, action: ["Function:Admin"], resource: ["legacy-admin:*"]}
---
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: one-function}
spec:
  statement:
    - {sid: env, effect: Allow, action: ["Function:Get", "Function:Invoke"], resource: ["dev:env"]}
    - {sid: any-ns-env, effect: Allow, action: ["Function:Get"], resource: ["*:env"]}
---
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: globs}
spec:
  statement:
    - {sid: team, effect: Allow, action: ["Function:Get*", "Secret:*"], resource: ["team-*:*", "prod:api-?"]}
---
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: deny-prod-delete}
spec:
  statement:
    - {sid: no-delete, effect: Deny, action: ["Function:Delete", "Secret:Delete"], resource: ["prod:*"]}
    - {sid: no-billing, effect: Deny, action: ["*"], resource: ["*:billing"]}
---
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: conditional}
spec:
  statement:
    - sid: ops-only
      effect: Allow
      action: ["Function:Scale"]
      resource: ["prod:*"]
      condition:
        ForAnyValue:StringEquals: {"jwt:groups": ["ops"]}
    - sid: verified-email
      effect: Allow
      action: ["Secret:List"]
      resource: ["prod:*"]
      condition:
        StringEquals: {"jwt:email_verified": ["true"]}
        StringLike: {"jwt:email": ["*@example.com"]}
    - sid: not-contractors
      effect: Deny
      action: ["Function:Logs"]
      resource: ["staging:*"]
      condition:
        ForAnyValue:StringEquals: {"jwt:groups": ["contractors"]}
---
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: own-namespace}
spec:
  statement:
    - {sid: mine, effect: Allow, action: ["Function:*", "Namespace:Get"], resource: ["dev-${jwt:preferred_username}:*"]}
    - {sid: my-fn, effect: Allow, action: ["Function:Invoke"], resource: ["shared:${jwt:preferred_username}-*"]}
---
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: system}
spec:
  statement:
    - {sid: info, effect: Allow, action: ["System:Info", "Namespace:List"], resource: ["*"]}
---
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: ns-scoped-info}
spec:
  statement:
    - {sid: info-in-ns, effect: Allow, action: ["System:Info"], resource: ["staging:*"]}
"""

INDEX = policy_index(load_texts([("t", CONFIG)]))
ALICE = {
    "sub": "alice",
    "preferred_username": "alice",
    "groups": ["dev"],
    "email": "alice@example.com",
    "email_verified": True,
}
OPS = {"sub": "olga", "groups": ["ops"], "preferred_username": "olga"}
CONTRACTOR = {"sub": "carl", "groups": ["dev", "contractors"]}
EVIL = {"sub": "eve", "preferred_username": "*"}
COLON = {"sub": "eve", "preferred_username": "x:y"}
NONE: dict = {"sub": "nobody"}

# (policies, claims, action, resource, allowed, matched sid or None)
CASES = [
    # plain actions and namespace wildcards
    (["staging-ro"], NONE, "Function:Get", "staging:env", True, "ro"),
    (["staging-ro"], NONE, "Function:List", "staging:*", True, "ro"),
    (["staging-ro"], NONE, "Function:Logs", "staging:env", True, "ro"),
    (["staging-ro"], NONE, "Function:Delete", "staging:env", False, None),
    (["staging-ro"], NONE, "Function:Get", "prod:env", False, None),
    (["staging-ro"], NONE, "Function:Get", "staging-2:env", False, None),
    (["staging-ro"], NONE, "Secret:List", "staging:*", False, None),
    # anchoring: '*' never crosses ':'
    (["fn-all-dev"], NONE, "Function:Create", "dev:new", True, "all"),
    (["fn-all-dev"], NONE, "Function:Invoke", "dev:new", True, "all"),
    (["fn-all-dev"], NONE, "Function:Get", "devx:new", False, None),
    (["fn-all-dev"], NONE, "Function:Get", "x-dev:new", False, None),
    (["fn-all-dev"], NONE, "Secret:List", "dev:*", False, None),
    (["globs"], NONE, "Function:Get", "team-a:fn", True, "team"),
    (["globs"], NONE, "Function:Get", "team-:fn", True, "team"),
    (["globs"], NONE, "Function:Get", "team:fn", False, None),
    (["globs"], NONE, "Function:Get", "prod:api-1", True, "team"),
    (["globs"], NONE, "Function:Get", "prod:api-10", False, None),
    (["globs"], NONE, "Function:List", "team-a:*", False, None),  # Function:Get* is Get only
    (["globs"], NONE, "Secret:Update", "team-b:db", True, "team"),
    # '*' everything
    (["everything"], NONE, "System:Info", "*", True, "star"),
    (["everything"], NONE, "Namespace:Delete", "anything:*", True, "star"),
    (["everything"], NONE, "Function:Invoke", "x:y", True, "star"),
    # legacy names
    (["legacy"], NONE, "Function:List", "legacy:*", True, "read"),
    (["legacy"], NONE, "Function:Get", "legacy:fn", True, "read"),
    (["legacy"], NONE, "Function:Logs", "legacy:fn", True, "read"),
    (["legacy"], NONE, "Function:Create", "legacy:fn", False, None),
    (["legacy"], NONE, "Secret:List", "legacy:*", True, "read"),
    (["legacy"], NONE, "Secret:Create", "legacy:s", False, None),
    (["legacy"], NONE, "Function:Delete", "legacy-admin:fn", True, "admin"),
    (["legacy"], NONE, "Secret:Delete", "legacy-admin:s", False, None),
    # one function, '*:fn'
    (["one-function"], NONE, "Function:Get", "dev:env", True, "env"),
    (["one-function"], NONE, "Function:Invoke", "dev:env", True, "env"),
    (["one-function"], NONE, "Function:Invoke", "dev:other", False, None),
    (["one-function"], NONE, "Function:Get", "prod:env", True, "any-ns-env"),
    (["one-function"], NONE, "Function:Invoke", "prod:env", False, None),
    (["one-function"], NONE, "Function:List", "dev:*", False, None),
    # Deny over Allow, whatever the order of policies
    (["everything", "deny-prod-delete"], NONE, "Function:Delete", "prod:api", False, "no-delete"),
    (["deny-prod-delete", "everything"], NONE, "Function:Delete", "prod:api", False, "no-delete"),
    (["everything", "deny-prod-delete"], NONE, "Function:Update", "prod:api", True, "star"),
    (["everything", "deny-prod-delete"], NONE, "Secret:Delete", "prod:db", False, "no-delete"),
    (["everything", "deny-prod-delete"], NONE, "Function:Get", "staging:billing", False, "no-billing"),
    (["everything", "deny-prod-delete"], NONE, "Function:Get", "staging:billing-2", True, "star"),
    (["deny-prod-delete"], NONE, "Function:Get", "prod:api", False, None),
    # conditions on the token's claims, including missing claims
    (["conditional"], OPS, "Function:Scale", "prod:api", True, "ops-only"),
    (["conditional"], ALICE, "Function:Scale", "prod:api", False, None),
    (["conditional"], NONE, "Function:Scale", "prod:api", False, None),
    (["conditional"], ALICE, "Secret:List", "prod:*", True, "verified-email"),
    (["conditional"], {**ALICE, "email": "alice@evil.com"}, "Secret:List", "prod:*", False, None),
    (["conditional"], {**ALICE, "email_verified": False}, "Secret:List", "prod:*", False, None),
    (["conditional"], {"sub": "x", "email": "x@example.com"}, "Secret:List", "prod:*", False, None),
    (["staging-ro", "conditional"], ALICE, "Function:Logs", "staging:fn", True, "ro"),
    (["staging-ro", "conditional"], CONTRACTOR, "Function:Logs", "staging:fn", False, "not-contractors"),
    (["staging-ro", "conditional"], NONE, "Function:Logs", "staging:fn", True, "ro"),
    # policy variables
    (["own-namespace"], ALICE, "Function:Create", "dev-alice:fn", True, "mine"),
    (["own-namespace"], ALICE, "Namespace:Get", "dev-alice:*", True, "mine"),
    (["own-namespace"], ALICE, "Function:Create", "dev-bob:fn", False, None),
    (["own-namespace"], OPS, "Function:Create", "dev-olga:fn", True, "mine"),
    (["own-namespace"], NONE, "Function:Create", "dev-:fn", False, None),
    (["own-namespace"], NONE, "Function:Create", "dev-${jwt:preferred_username}:fn", False, None),
    (["own-namespace"], EVIL, "Function:Create", "dev-anything:fn", False, None),
    (["own-namespace"], EVIL, "Function:Create", "dev-*:fn", False, None),
    (["own-namespace"], COLON, "Function:Create", "dev-x:y", False, None),
    (["own-namespace"], ALICE, "Function:Invoke", "shared:alice-report", True, "my-fn"),
    (["own-namespace"], ALICE, "Function:Invoke", "shared:bob-report", False, None),
    # cluster-wide resources
    (["system"], NONE, "System:Info", "*", True, "info"),
    (["ns-scoped-info"], NONE, "System:Info", "*", False, None),
    (["system"], NONE, "Namespace:List", "*", True, "info"),
    # names are case-insensitive, unknown actions and malformed resources are denials
    (["staging-ro"], NONE, "function:get", "staging:env", True, "ro"),
    (["staging-ro"], NONE, "FUNCTION:LIST", "staging:*", True, "ro"),
    (["everything"], NONE, "Function:Fly", "dev:fn", False, None),
    (["everything"], NONE, "Secret:Get", "dev:s", False, None),
    (["everything"], NONE, "Function:Get", "dev", False, None),
    (["everything"], NONE, "Function:Get", "a:b:c", False, None),
    # no policies, unknown policy names
    ([], NONE, "Function:Get", "dev:fn", False, None),
    (["deleted-policy"], NONE, "Function:Get", "dev:fn", False, None),
]


@pytest.mark.parametrize(("policies", "claims", "action", "resource", "allowed", "sid"), CASES)
def test_decision(
    policies: list[str], claims: dict, action: str, resource: str, allowed: bool, sid: str | None
) -> None:
    d = INDEX.decide(policies, action, resource, claims)
    assert d.allowed is allowed, d.reason
    assert (d.matched.sid if d.matched else None) == sid


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 60


def test_reasons_explain_the_decision() -> None:
    assert INDEX.decide(["everything", "deny-prod-delete"], "Function:Delete", "prod:api", NONE).reason == (
        "explicitly denied by policy deny-prod-delete, statement no-delete"
    )
    assert (
        INDEX.decide(["staging-ro"], "Function:Get", "staging:x", NONE).reason
        == "allowed by policy staging-ro, statement ro"
    )
    assert INDEX.decide(["staging-ro"], "Function:Delete", "staging:x", NONE).reason == (
        "no statement of the token's policies (staging-ro) allows Function:Delete on staging:x"
    )
    assert INDEX.decide([], "Function:Fly", "a:b", NONE).reason == "unknown action 'Function:Fly'"


def test_effective_permissions_fill_in_variables() -> None:
    eff = INDEX.effective(["own-namespace", "conditional"], ALICE)
    assert eff[0] == {
        "policy": "own-namespace",
        "sid": "mine",
        "effect": "Allow",
        "actions": [
            "Function:List",
            "Function:Get",
            "Function:Create",
            "Function:Update",
            "Function:Delete",
            "Function:Logs",
            "Function:Scale",
            "Function:Invoke",
            "Namespace:Get",
        ],
        "resources": ["dev-alice:*"],
    }
    assert [e["sid"] for e in eff] == ["mine", "my-fn", "verified-email"], (
        "statements whose conditions fail are left out"
    )


def test_namespace_visibility_and_invoke_resources() -> None:
    namespaces = ["openfaas-fn", "staging", "dev", "dev-alice", "team-x"]
    assert INDEX.namespaces_visible(["staging-ro", "own-namespace"], namespaces, ALICE) == ["staging", "dev-alice"]
    assert INDEX.namespaces_visible(["everything"], namespaces, NONE) == namespaces
    assert INDEX.invoke_resources(["own-namespace", "one-function"], ALICE) == (
        ["dev-alice:*", "shared:alice-*", "dev:env"],
        [],
    )
    assert INDEX.invoke_resources(["everything", "deny-prod-delete"], NONE) == (["*"], ["*:billing"])


@pytest.mark.parametrize(
    ("pattern", "resource", "ok"),
    [("*", "a:b", True), ("a:*", "a:b", True), ("*:b", "z:b", True), ("a:*", "ab:c", False), ("a-*:x", "a-1:x", True)],
)
def test_resource_matches(pattern: str, resource: str, ok: bool) -> None:
    assert resource_matches(pattern, resource) is ok
