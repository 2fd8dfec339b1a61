"""Property-based tests: hostile input never escapes as anything but the protocol's own error.

Invariants: parsers raise only their typed errors; the policy engine never allows what a
plain reference reading of the same policies does not; every HTTP endpoint of every
function answers without a 5xx. Bounded here (make test); `make fuzz` runs far more.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openfaas_iam.engine.policy import policy_index
from openfaas_iam.errors import ConfigError, OAuthError, TokenError
from openfaas_iam.model.loading import load_texts
from openfaas_iam.oidc.verify import parse_token
from openfaas_iam.proxy.rest_api import BadApiRequest, NotCovered, map_call
from openfaas_iam.service.exchange import parse_request

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

b64ish = st.text(alphabet=string.ascii_letters + string.digits + "-_=+/.%", max_size=200)
tokens = st.one_of(
    st.text(max_size=300),
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", b64ish, b64ish, b64ish),
    st.builds(
        lambda h, p: f"{h}.{p}.sig",
        st.sampled_from(["eyJhbGciOiJub25lIn0", "eyJhbGciOiJSUzI1NiJ9", "W10", "bnVsbA"]),
        b64ish,
    ),
)


@SETTINGS
@given(tokens)
def test_token_parsing_raises_only_token_errors(token: str) -> None:
    with contextlib.suppress(TokenError):
        parse_token(token)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
iam_like = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(["iam.openfaas.com/v1", "v1", 1]),
        "kind": st.sampled_from(["JwtIssuer", "Policy", "Role", "Nope", None]),
        "metadata": st.one_of(st.fixed_dictionaries({"name": st.text(alphabet="abc-.", max_size=8)}), json_values),
        "spec": json_values,
    }
)


@SETTINGS
@given(st.lists(iam_like, max_size=4))
def test_iam_documents_raise_only_config_errors(docs: list[dict[str, Any]]) -> None:
    try:
        load_texts([("fuzz.json", json.dumps(docs))])
    except ConfigError as e:
        assert all(str(p).startswith("fuzz.json") for p in e.problems)


@SETTINGS
@given(st.text(max_size=500))
def test_iam_text_raises_only_config_errors(text: str) -> None:
    with contextlib.suppress(ConfigError):
        load_texts([("fuzz.yaml", text)])


segments = st.sampled_from(
    [
        "system",
        "functions",
        "function",
        "secrets",
        "namespace",
        "namespaces",
        "logs",
        "info",
        "scale-function",
        "..",
        ".",
        "",
        "a",
        "A%2F",
        "x y",
    ]
)


@SETTINGS
@given(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
    st.lists(segments, min_size=1, max_size=4),
    st.dictionaries(st.sampled_from(["namespace", "name", "x"]), st.text(max_size=12), max_size=3),
    st.one_of(
        st.binary(max_size=80),
        st.builds(
            lambda d: json.dumps(d).encode(),
            st.dictionaries(
                st.sampled_from(["service", "namespace", "functionName", "name", "serviceName"]),
                json_values,
                max_size=4,
            ),
        ),
    ),
)
def test_rest_mapping_is_total_and_canonical(method: str, parts: list[str], query: dict[str, str], body: bytes) -> None:
    path = "/" + "/".join(parts)
    try:
        call = map_call(method, path, query, body)
    except (BadApiRequest, NotCovered):
        return
    assert call.path.startswith("/system/") and ".." not in call.path and "//" not in call.path
    assert call.resource == "*" or call.resource.count(":") == 1


@SETTINGS
@given(
    st.binary(max_size=400),
    st.sampled_from(["application/x-www-form-urlencoded", "application/json", "", "text/plain; charset=utf-8"]),
)
def test_token_requests_raise_only_oauth_errors(body: bytes, content_type: str) -> None:
    try:
        parse_request(body, content_type)
    except OAuthError as e:
        assert e.error in ("invalid_request", "unsupported_grant_type", "invalid_scope")


# -- never an allow the policy does not grant ---------------------------------------------------

NAMES = ["dev", "prod", "staging", "a", "b"]
ACTIONS = [
    "Function:Get",
    "Function:List",
    "Function:Delete",
    "Secret:List",
    "Secret:Create",
    "System:Info",
    "Namespace:Get",
]
patterns = st.sampled_from(["*", "dev:*", "prod:*", "*:a", "dev:a", "st*:*", "prod:b", "a:?"])
action_patterns = st.sampled_from(
    ["*", "Function:*", "Secret:*", "Function:Get", "Secret:List", "System:Info", "Function:Read", "Namespace:*"]
)
statements = st.fixed_dictionaries(
    {
        "effect": st.sampled_from(["Allow", "Deny"]),
        "action": st.lists(action_patterns, min_size=1, max_size=3),
        "resource": st.lists(patterns, min_size=1, max_size=3),
    }
)


def reference_allows(policies: list[list[dict[str, Any]]], action: str, resource: str) -> bool:
    """A deliberately naive reading of the semantics: expand, then match each side of ':' separately."""
    from openfaas_iam.model.actions import expand_action

    def res_match(p: str, r: str) -> bool:
        if p == "*":
            return True
        pn, pf = p.split(":")
        rn, rf = r.split(":") if ":" in r else ("*", "*")
        return fnmatch.fnmatchcase(rn, pn) and fnmatch.fnmatchcase(rf, pf)

    allowed = False
    for pol in policies:
        for s in pol:
            acts = set().union(*(expand_action(a) for a in s["action"]))
            if action in acts and any(res_match(p, resource) for p in s["resource"]):
                if s["effect"] == "Deny":
                    return False
                allowed = True
    return allowed


@SETTINGS
@given(
    st.lists(st.lists(statements, min_size=1, max_size=3), min_size=1, max_size=3),
    st.sampled_from(ACTIONS),
    st.sampled_from([f"{n}:{f}" for n in NAMES for f in ["a", "b", "*"]] + ["*"]),
)
def test_engine_never_allows_what_the_policies_do_not_grant(
    policies: list[list[dict[str, Any]]], action: str, resource: str
) -> None:
    docs = [
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "Policy",
            "metadata": {"name": f"p{i}"},
            "spec": {"statement": [{**s, "sid": f"s{j}"} for j, s in enumerate(pol)]},
        }
        for i, pol in enumerate(policies)
    ]
    index = policy_index(load_texts([("p", json.dumps(docs))]))
    decision = index.decide([f"p{i}" for i in range(len(policies))], action, resource, {"sub": "x"})
    assert decision.allowed == reference_allows(policies, action, resource)
