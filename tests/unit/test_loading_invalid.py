"""A table of invalid IAM documents and the exact error each must give."""

from __future__ import annotations

import pytest
import yaml

from openfaas_iam.errors import ConfigError
from openfaas_iam.model.loading import load_texts

ISSUER = """
apiVersion: iam.openfaas.com/v1
kind: JwtIssuer
metadata: {name: idp}
spec: {iss: "https://idp.example.com", aud: [openfaas]}
"""
POLICY = """
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: ro}
spec:
  statement:
    - sid: read
      effect: Allow
      action: ["Function:Get"]
      resource: ["dev:*"]
"""


def policy(*statements: dict, **over: object) -> str:
    """A Policy document with the given statements (each a base statement with overrides)."""
    body = [{**STMT, **st} for st in statements] if statements else [dict(STMT)]
    body = [{k: v for k, v in st.items() if v is not DROP} for st in body]
    return yaml.safe_dump(
        {"apiVersion": "iam.openfaas.com/v1", "kind": "Policy", "metadata": {"name": "p"}, "spec": {"statement": body}}
    )


def role(spec: str) -> str:
    return POLICY + "---\n" + "apiVersion: iam.openfaas.com/v1\nkind: Role\nmetadata: {name: r}\nspec: " + spec


def issuer(spec: str) -> str:
    return "apiVersion: iam.openfaas.com/v1\nkind: JwtIssuer\nmetadata: {name: i}\nspec: " + spec


DROP = object()
STMT = {"sid": "s", "effect": "Allow", "action": ["Function:Get"], "resource": ["dev:*"]}

CASES: list[tuple[str, str, str]] = [
    (
        "yaml syntax",
        "kind: [unclosed",
        "f.yaml: invalid YAML at line 1 column 16: expected ',' or ']', but got '<stream end>'",
    ),
    ("json syntax", '{"kind": }', "f.yaml: invalid JSON at line 1 column 10: Expecting value"),
    (
        "not a mapping",
        "- a\n- b",
        "f.yaml: document 1: expected a Kubernetes object (a mapping with apiVersion, kind, metadata, spec), got a list",
    ),
    (
        "wrong apiVersion",
        ISSUER.replace("iam.openfaas.com/v1", "iam.openfaas.com/v2"),
        "f.yaml: document 1: JwtIssuer/idp: apiVersion: expected 'iam.openfaas.com/v1', got 'iam.openfaas.com/v2'",
    ),
    (
        "unknown kind",
        ISSUER.replace("kind: JwtIssuer", "kind: Polcy"),
        "f.yaml: document 1: Polcy/idp: kind: unsupported kind 'Polcy' (did you mean 'Policy'?); expected one of JwtIssuer, Policy, Role",
    ),
    (
        "no name",
        ISSUER.replace("metadata: {name: idp}", "metadata: {}"),
        "f.yaml: document 1: JwtIssuer: metadata.name: expected a lowercase DNS name (a-z, 0-9, '-', '.'), got None",
    ),
    (
        "bad name",
        ISSUER.replace("name: idp", "name: My_IdP"),
        "f.yaml: document 1: JwtIssuer/My_IdP: metadata.name: expected a lowercase DNS name (a-z, 0-9, '-', '.'), got 'My_IdP'",
    ),
    (
        "no spec",
        "apiVersion: iam.openfaas.com/v1\nkind: Role\nmetadata: {name: r}",
        "f.yaml: document 1: Role/r: spec: is required: expected a mapping, got nothing",
    ),
    ("issuer without iss", issuer("{aud: [x]}"), "f.yaml: document 1: JwtIssuer/i: spec.iss: is required"),
    (
        "issuer iss not a URL",
        issuer("{iss: idp.example.com, aud: [x]}"),
        "f.yaml: document 1: JwtIssuer/i: spec.iss: expected an absolute http(s) URL, got 'idp.example.com'",
    ),
    (
        "issuer iss with query",
        issuer("{iss: 'https://idp.example.com/?a=b', aud: [x]}"),
        "f.yaml: document 1: JwtIssuer/i: spec.iss: an issuer URL has no query or fragment (RFC 8414 §2), got 'https://idp.example.com/?a=b'",
    ),
    (
        "issuer aud a string",
        issuer("{iss: 'https://idp.example.com', aud: openfaas}"),
        "f.yaml: document 1: JwtIssuer/i: spec.aud: expected a list of strings, got a string",
    ),
    (
        "issuer aud empty",
        issuer("{iss: 'https://idp.example.com', aud: []}"),
        "f.yaml: document 1: JwtIssuer/i: spec.aud: expected at least one entry",
    ),
    (
        "issuer aud item",
        issuer("{iss: 'https://idp.example.com', aud: [1]}"),
        "f.yaml: document 1: JwtIssuer/i: spec.aud[0]: expected a non-empty string, got a number",
    ),
    (
        "issuer bad duration",
        issuer("{iss: 'https://idp.example.com', aud: [x], tokenExpiry: 2 hours}"),
        "f.yaml: document 1: JwtIssuer/i: spec.tokenExpiry: invalid duration '2 hours': expected numbers with units ns, us, ms, s, m or h, like '30m' or '1h30m'",
    ),
    (
        "issuer negative duration",
        issuer("{iss: 'https://idp.example.com', aud: [x], tokenExpiry: -1h}"),
        "f.yaml: document 1: JwtIssuer/i: spec.tokenExpiry: must be positive, got '-1h'",
    ),
    (
        "issuer typo field",
        issuer("{iss: 'https://idp.example.com', aud: [x], tokenExipry: 1h}"),
        "f.yaml: document 1: JwtIssuer/i: spec.tokenExipry: unknown field (did you mean 'tokenExpiry'?); expected one of iss, aud, issInternal, tokenExpiry",
    ),
    (
        "issuer bad issInternal",
        issuer("{iss: 'https://idp.example.com', aud: [x], issInternal: 'ftp://x'}"),
        "f.yaml: document 1: JwtIssuer/i: spec.issInternal: expected an absolute http(s) URL, got 'ftp://x'",
    ),
    (
        "policy without statements",
        "apiVersion: iam.openfaas.com/v1\nkind: Policy\nmetadata: {name: p}\nspec: {}",
        "f.yaml: document 1: Policy/p: spec.statement: is required: a list of statements",
    ),
    (
        "policy empty statements",
        "apiVersion: iam.openfaas.com/v1\nkind: Policy\nmetadata: {name: p}\nspec: {statement: []}",
        "f.yaml: document 1: Policy/p: spec.statement: expected a non-empty list of statements, got a list",
    ),
    ("statement no sid", policy({"sid": DROP}), "f.yaml: document 1: Policy/p: spec.statement[0].sid: is required"),
    (
        "statement bad effect",
        policy({"effect": "allow"}),
        "f.yaml: document 1: Policy/p: spec.statement[0].effect: expected 'Allow' or 'Deny', got 'allow'",
    ),
    (
        "unknown action",
        policy({"action": ["Function:Reed"]}),
        "f.yaml: document 1: Policy/p: spec.statement[0].action[0]: unknown action 'Function:Reed' (did you mean 'Function:Read'?); "
        "expected e.g. Function:Get, Secret:List, Namespace:*, System:Info or *",
    ),
    (
        "secret get does not exist",
        policy({"action": ["Secret:Get"]}),
        "f.yaml: document 1: Policy/p: spec.statement[0].action[0]: unknown action 'Secret:Get': there is no Secret:Get, "
        "a secret's value can never be read through the API (Secret:List lists names)",
    ),
    (
        "action a string",
        policy({"action": "Function:Get"}),
        "f.yaml: document 1: Policy/p: spec.statement[0].action: expected a list of strings, got a string",
    ),
    (
        "resource without colon",
        policy({"resource": ["staging"]}),
        "f.yaml: document 1: Policy/p: spec.statement[0].resource[0]: malformed resource 'staging': expected '*', 'namespace:*' or 'namespace:function'",
    ),
    (
        "resource two colons",
        policy({"resource": ["a:b:c"]}),
        "f.yaml: document 1: Policy/p: spec.statement[0].resource[0]: malformed resource 'a:b:c': expected '*', 'namespace:*' or 'namespace:function'",
    ),
    (
        "resource bad chars",
        policy({"resource": ["dev:my fn"]}),
        "f.yaml: document 1: Policy/p: spec.statement[0].resource[0]: malformed resource 'dev:my fn': namespace and function may contain "
        "letters, digits, '-', '.', the wildcards '*' and '?', and ${jwt:<claim>} variables",
    ),
    (
        "resource bad variable",
        policy({"resource": ["dev-${user}:*"]}),
        "f.yaml: document 1: Policy/p: spec.statement[0].resource[0]: malformed variable ${user} in resource 'dev-${user}:*': expected ${jwt:<claim>}",
    ),
    (
        "duplicate sid",
        policy({}, {}),
        "f.yaml: document 1: Policy/p: spec.statement[1].sid: duplicate sid 's' in this policy",
    ),
    (
        "statement unknown field",
        policy({"resources": ["*"]}),
        "f.yaml: document 1: Policy/p: spec.statement[0].resources: unknown field (did you mean 'resource'?); expected one of sid, effect, action, resource, condition",
    ),
    (
        "unknown operator",
        policy({"condition": {"StringEqualz": {"jwt:sub": ["a"]}}}),
        "f.yaml: document 1: Policy/p: spec.statement[0].condition.StringEqualz: unknown condition operator 'StringEqualz' (did you mean 'StringEqual'?); expected one of "
        "StringEquals, StringEqual, StringNotEquals, StringNotEqual, StringEqualsIgnoreCase, StringEqualIgnoreCase, StringNotEqualsIgnoreCase, "
        "StringNotEqualIgnoreCase, StringLike, StringNotLike, Null, optionally prefixed with ForAnyValue: or ForAllValues: and suffixed with IfExists",
    ),
    (
        "condition key without jwt:",
        policy({"condition": {"StringEqual": {"sub": ["a"]}}}),
        "f.yaml: document 1: Policy/p: spec.statement[0].condition.StringEqual.sub: invalid key 'sub': condition keys are claims written as 'jwt:<claim>' or 'jwt:/json/pointer'",
    ),
    (
        "condition value a mapping",
        policy({"condition": {"StringEqual": {"jwt:sub": [{"a": "b"}]}}}),
        "f.yaml: document 1: Policy/p: spec.statement[0].condition.StringEqual.jwt:sub[0]: expected a string, got a mapping",
    ),
    (
        "condition not a mapping",
        policy({"condition": ["a"]}),
        "f.yaml: document 1: Policy/p: spec.statement[0].condition: expected a mapping of operator -> {claim: [values]}, got a list",
    ),
    (
        "null with a bad value",
        policy({"condition": {"Null": {"jwt:email": ["maybe"]}}}),
        "f.yaml: document 1: Policy/p: spec.statement[0].condition.Null.jwt:email: Null takes 'true' (the claim must be absent) or 'false' (it must be present)",
    ),
    (
        "role names a missing policy",
        role("{policy: [ro, rw], principal: {'jwt:sub': [u]}}"),
        "f.yaml: document 2: Role/r: spec.policy[1]: Policy 'rw' does not exist",
    ),
    (
        "role without policy",
        role("{principal: {'jwt:sub': [u]}}"),
        "f.yaml: document 2: Role/r: spec.policy: is required",
    ),
    (
        "role matching everyone",
        role("{policy: [ro]}"),
        "f.yaml: document 2: Role/r: spec: a Role needs spec.principal or spec.condition; without either it would match every token",
    ),
    (
        "role principal a list",
        role("{policy: [ro], principal: [u]}"),
        "f.yaml: document 2: Role/r: spec.principal: expected a mapping of claim -> [values] such as jwt:sub, got a list",
    ),
    (
        "role bad principal key",
        role("{policy: [ro], principal: {sub: [u]}}"),
        "f.yaml: document 2: Role/r: spec.principal.sub: invalid key 'sub': condition keys are claims written as 'jwt:<claim>' or 'jwt:/json/pointer'",
    ),
    (
        "role bad operator",
        role("{policy: [ro], condition: {ForAnyValue:StringEq: {'jwt:groups': [a]}}}"),
        "f.yaml: document 2: Role/r: spec.condition.ForAnyValue:StringEq: unknown condition operator 'ForAnyValue:StringEq' (did you mean 'ForAnyValue:StringEqual'?); expected one of "
        "StringEquals, StringEqual, StringNotEquals, StringNotEqual, StringEqualsIgnoreCase, StringEqualIgnoreCase, StringNotEqualsIgnoreCase, "
        "StringNotEqualIgnoreCase, StringLike, StringNotLike, Null, optionally prefixed with ForAnyValue: or ForAllValues: and suffixed with IfExists",
    ),
    (
        "duplicate policy name",
        POLICY + "---" + POLICY,
        "f.yaml: document 2: Policy/ro: metadata.name: duplicate Policy name 'ro'; first defined in f.yaml document 1",
    ),
    (
        "duplicate issuer URL",
        ISSUER + "---" + ISSUER.replace("name: idp", "name: idp2"),
        "f.yaml: document 2: JwtIssuer/idp2: spec.iss: issuer 'https://idp.example.com' is already trusted by JwtIssuer/idp",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_document_gives_exact_error(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_texts([("f.yaml", text)])
    messages = [str(p) for p in err.value.problems]
    assert messages == [expected]


def test_every_problem_is_reported_not_just_the_first() -> None:
    text = issuer("{iss: nope, aud: []}") + "\n---\n" + policy({"action": ["Nope"]})
    with pytest.raises(ConfigError) as err:
        load_texts([("f.yaml", text)])
    assert [p.field for p in err.value.problems] == ["spec.iss", "spec.aud", "spec.statement[0].action[0]"]


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 30
