"""What the proxy forwards, what the bundle protects, and where the policy language fails closed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from go_reader import faas_netes_target, faasd_target

from openfaas_iam.engine.policy import policy_index
from openfaas_iam.engine.simulate import simulate
from openfaas_iam.model.advice import advise
from openfaas_iam.model.loading import load_mapping_documents
from openfaas_iam.model.protected import Protection
from openfaas_iam.proxy import go_json
from openfaas_iam.proxy.authz import Authorizer, Principal
from openfaas_iam.proxy.fair_share import OverLimit, StreamLimiter
from openfaas_iam.proxy.rest_api import BadApiRequest, map_call


def config(*statements: dict, roles: tuple[dict, ...] = ()) -> object:
    docs = [
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "Policy",
            "metadata": {"name": f"p{i}"},
            "spec": {"statement": [st]},
        }
        for i, st in enumerate(statements)
    ]
    return load_mapping_documents([*docs, *roles], "test")


def st(actions: list[str], resources: list[str], effect: str = "Allow", sid: str = "s", **extra: object) -> dict:
    return {"sid": sid, "effect": effect, "action": actions, "resource": resources, **extra}


# -- Go's reading of bodies ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('{"service":"a","Service":"b"}', "given twice"),
        ('{"service":"a","service":"b"}', "given twice"),
        ('{"SERVICE":"a","namespace":"x","NameSpace":"y"}', "given twice"),
        ('{"\u017fervice":"a"}', "not ASCII"),
        ('{"limits":{"memory":"1Gi","Memory":"2Gi"}}', "given twice"),
        ('{"labels":{"a":"1","a":"2"}}', "given twice"),
        ('{"service":1}', "must be a string"),
        ('{"readOnlyRootFilesystem":"yes"}', "true or false"),
        ('{"secrets":"basic-auth"}', "list of strings"),
        ("[1]", "must be a JSON object"),
        ('{"service":', "not valid JSON"),
        ("[" * 100 + "]" * 100, "nested too deeply"),
        ('{"envVars":{"a":"\\ud800"}}', "unpaired UTF-16 surrogate"),
        ('{"image":"\\udfff"}', "unpaired UTF-16 surrogate"),
        ('{"labels":{"\\ud800":"x"}}', "unpaired UTF-16 surrogate"),
        ('{"secrets":["a\\ud800"]}', "unpaired UTF-16 surrogate"),
    ],
)
def test_bodies_that_go_could_read_differently_are_refused(body: str, fragment: str) -> None:
    with pytest.raises(go_json.BodyError, match=fragment):
        go_json.decode(body.encode(), go_json.FUNCTION_DEPLOYMENT)


def test_canonical_body_has_one_spelling_per_field_and_drops_unknown_ones() -> None:
    doc = go_json.decode(
        b'{"SERVICE":"a","Image":"i","LIMITS":{"MEMORY":"1Gi"},"other":{"service":"x"},"envVars":null}',
        go_json.FUNCTION_DEPLOYMENT,
    )
    assert doc == {"service": "a", "image": "i", "limits": {"memory": "1Gi"}}


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("DELETE", "/system/functions", {}, {"functionName": "x", "namespace": "dev"}),
        ("DELETE", "/system/functions", {"namespace": "dev"}, {"FunctionName": "x"}),
        ("POST", "/system/scale-function/x", {}, {"replicas": 2, "Namespace": "dev"}),
        ("POST", "/system/functions", {"namespace": "dev"}, {"Service": "x", "image": "i"}),
        ("PUT", "/system/secrets", {}, {"NAME": "x", "namespace": "dev", "value": "v"}),
        ("DELETE", "/system/secrets", {}, {"name": "x", "namespace": "dev"}),
    ],
)
def test_every_provider_reads_the_decided_target(method: str, path: str, query: dict, body: dict) -> None:
    call = map_call(method, path, query, json.dumps(body).encode())
    assert call.resource == "dev:x"
    q = dict(call.query)
    raw = call.body or b""
    assert faas_netes_target(method, call.path, q, raw) == ("dev", "x")
    assert faasd_target(method, call.path, q, raw) == ("dev", "x")


def test_query_parameters_are_rebuilt_not_copied() -> None:
    call = map_call(
        "GET", "/system/logs", {"name": "x", "namespace": "dev", "follow": "true", "evil": "1"}, b"", frozenset()
    )
    assert dict(call.query) == {"name": "x", "namespace": "dev", "follow": "true"}
    with pytest.raises(BadApiRequest, match="names tail more than once"):
        map_call("GET", "/system/logs", {"name": "x", "tail": "1"}, b"", frozenset({"tail"}))


def test_deploy_asks_for_every_mounted_secret_and_for_scaling_labels() -> None:
    body = {"service": "api", "image": "i", "secrets": ["db", "api-key"], "labels": {"com.openfaas.scale.min": "3"}}
    call = map_call("POST", "/system/functions", {}, json.dumps(body).encode())
    assert [(c.action, c.resource) for c in call.all_checks] == [
        ("Function:Create", "openfaas-fn:api"),
        ("Secret:Mount", "openfaas-fn:db"),
        ("Secret:Mount", "openfaas-fn:api-key"),
        ("Function:Scale", "openfaas-fn:api"),
    ]
    for label in ("faas_function", "app", "iam.openfaas.com/x"):
        with pytest.raises(BadApiRequest, match="reserved"):
            map_call("POST", "/system/functions", {}, json.dumps({**body, "labels": {label: "x"}}).encode())


def test_a_deploy_cannot_choose_its_service_account() -> None:
    # faas-netes sets the pod's serviceAccountName from this annotation: a deploy through the proxy could
    # run as any service account in openfaas-fn (one the operator bound to Secrets for a trusted function).
    body = {"service": "api", "image": "i", "annotations": {"com.openfaas.serviceaccount": "build-robot"}}
    for method in ("POST", "PUT"):
        with pytest.raises(BadApiRequest, match=r"annotation 'com\.openfaas\.serviceaccount' is reserved"):
            map_call(method, "/system/functions", {}, json.dumps(body).encode())
    other = {**body, "annotations": {"topic": "orders"}}
    assert json.loads(map_call("POST", "/system/functions", {}, json.dumps(other).encode()).body or b"")[
        "annotations"
    ] == {"topic": "orders"}


# -- The bundle protects itself ------------------------------------------------------------


def authorizer(cfg: object) -> Authorizer:
    return Authorizer(config=lambda: cfg, verifier=None, admin_credentials=lambda: None)  # type: ignore[arg-type]


def test_wildcards_never_reach_the_bundle_but_an_exact_grant_does() -> None:
    cfg = config(
        st(["Function:*", "Secret:*"], ["openfaas-fn:*"]),
        st(["Function:Update"], ["openfaas-fn:iam-authz"]),
        st(["*"], ["*"]),
    )
    az = authorizer(cfg)
    wildcard = Principal({"sub": "u", "policy": ["p0", "p2"]})
    exact = Principal({"sub": "u", "policy": ["p1"]})
    for action, resource in [
        ("Function:Update", "openfaas-fn:iam-authz"),
        ("Function:Delete", "openfaas-fn:iam-token"),
        ("Function:Scale", "openfaas-fn:iam-rotate"),
        ("Function:Create", "openfaas-fn:iam-new"),
        ("Secret:Update", "openfaas-fn:iam-config"),
        ("Secret:Mount", "openfaas-fn:basic-auth"),
        ("Secret:Mount", "openfaas-fn:iam-signing-keys"),
        ("Secret:Delete", "openfaas-fn:sso-client-secret"),
        ("Namespace:Delete", "openfaas-fn:*"),
    ]:
        d = az.decide(wildcard, action, resource)
        assert not d.allowed and "belongs to openfaas-iam" in d.reason, (action, resource)
    # Describe and logs of the bundle are protected too; listing is not; other functions are untouched.
    assert not az.decide(wildcard, "Function:Get", "openfaas-fn:iam-authz").allowed
    assert not az.decide(wildcard, "Function:Logs", "openfaas-fn:iam-authz").allowed
    assert az.decide(wildcard, "Function:List", "openfaas-fn:*").allowed
    assert az.decide(wildcard, "Function:Update", "openfaas-fn:app").allowed
    assert az.decide(exact, "Function:Update", "openfaas-fn:iam-authz").allowed
    assert not az.decide(exact, "Function:Delete", "openfaas-fn:iam-authz").allowed
    assert az.decide(Principal({"sub": "admin"}, admin=True), "Function:Update", "openfaas-fn:iam-authz").allowed


def test_a_deploy_is_refused_when_one_mount_is_not_allowed() -> None:
    cfg = config(st(["Function:Create"], ["openfaas-fn:team-a-*"]), st(["Secret:Mount"], ["openfaas-fn:team-a-*"]))
    az = authorizer(cfg)
    who = Principal({"sub": "u", "policy": ["p0", "p1"]})
    ok = map_call("POST", "/system/functions", {}, b'{"service":"team-a-x","secrets":["team-a-db"]}')
    assert az.decide_call(who, ok).allowed
    bad = map_call("POST", "/system/functions", {}, b'{"service":"team-a-x","secrets":["team-a-db","team-b-db"]}')
    d = az.decide_call(who, bad)
    assert not d.allowed and d.action == "Secret:Mount" and d.resource == "openfaas-fn:team-b-db"
    assert "the deploy mounts secret team-b-db" in d.reason
    # Without Secret:Mount the same deploy with no secrets still works.
    only_create = Principal({"sub": "u", "policy": ["p0"]})
    assert az.decide_call(only_create, map_call("POST", "/system/functions", {}, b'{"service":"team-a-x"}')).allowed
    assert not az.decide_call(only_create, ok).allowed


def test_secret_wildcards_include_mount_but_legacy_read_does_not() -> None:
    cfg = config(st(["Secret:*"], ["dev:*"]), st(["Secret:Read"], ["dev:*"]))
    index = policy_index(cfg)  # type: ignore[arg-type]
    assert index.decide(["p0"], "Secret:Mount", "dev:db", {}).allowed
    assert not index.decide(["p1"], "Secret:Mount", "dev:db", {}).allowed


# -- Fail closed ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [{}, {"team": ["a", "b"]}, {"team": "a:b"}, {"team": "*"}, {"team": {"x": 1}}, {"team": ""}],
)
def test_a_deny_whose_variable_cannot_be_resolved_denies(claims: dict) -> None:
    cfg = config(
        st(["Function:*"], ["openfaas-fn:*"]),
        st(["Function:Delete"], ["openfaas-fn:${jwt:team}-*"], effect="Deny", sid="no-delete-own-team"),
    )
    index = policy_index(cfg)  # type: ignore[arg-type]
    d = index.decide(["p0", "p1"], "Function:Delete", "openfaas-fn:other-api", claims)
    assert not d.allowed and "explicitly denied" in d.reason
    # With one plain value the Deny is as narrow as written.
    assert index.decide(["p0", "p1"], "Function:Delete", "openfaas-fn:other-api", {"team": "a"}).allowed
    assert not index.decide(["p0", "p1"], "Function:Delete", "openfaas-fn:a-api", {"team": "a"}).allowed


def test_an_allow_whose_variable_cannot_be_resolved_allows_nothing() -> None:
    index = policy_index(config(st(["Function:*"], ["openfaas-fn:${jwt:team}-*"])))  # type: ignore[arg-type]
    assert not index.decide(["p0"], "Function:Get", "openfaas-fn:a-x", {"team": ["a", "b"]}).allowed
    assert index.decide(["p0"], "Function:Get", "openfaas-fn:a-x", {"team": "a"}).allowed


def test_single_valued_operators_on_list_claims_fail_closed_in_statements() -> None:
    cfg = config(
        st(["Function:Get"], ["*"], condition={"StringEquals": {"jwt:groups": ["dev"]}}),
        st(
            ["Function:Get"],
            ["*"],
            effect="Deny",
            sid="no-contractors",
            condition={"StringEquals": {"jwt:groups": ["contractors"]}},
        ),
        st(["Function:Get"], ["*"], condition={"ForAnyValue:StringEquals": {"jwt:groups": ["dev"]}}),
    )
    index = policy_index(cfg)  # type: ignore[arg-type]
    many = {"groups": ["dev", "ops"]}
    assert not index.decide(["p0"], "Function:Get", "a:b", many).allowed
    assert index.decide(["p0"], "Function:Get", "a:b", {"groups": "dev"}).allowed
    assert index.decide(["p2"], "Function:Get", "a:b", many).allowed
    d = index.decide(["p2", "p1"], "Function:Get", "a:b", many)
    assert not d.allowed and "no-contractors" in d.reason
    assert index.decide(["p2", "p1"], "Function:Get", "a:b", {"groups": ["dev"]}).allowed


def test_simulate_names_the_fail_closed_rules() -> None:
    cfg = config(
        st(["Function:*"], ["openfaas-fn:*"]),
        st(["Function:Delete"], ["openfaas-fn:${jwt:team}-*"], effect="Deny", sid="team"),
        st(["Function:Delete"], ["*"], effect="Deny", sid="grp", condition={"StringEquals": {"jwt:groups": ["x"]}}),
    )
    claims = {"sub": "u", "groups": ["a", "b"], "policy": ["p0", "p1", "p2"], "fed:iss": "i"}
    sim = simulate(cfg, claims, "Function:Delete", "openfaas-fn:api")  # type: ignore[arg-type]
    notes = [n for s in sim.statements for n in s.notes]
    assert any("${jwt:team}" in n and "fail closed" in n for n in notes)
    assert any("several values" in n and "applies" in n for n in notes)
    protected = simulate(cfg, claims, "Function:Update", "openfaas-fn:iam-authz")  # type: ignore[arg-type]
    assert not protected.decision.allowed
    assert any("belongs to openfaas-iam" in n for s in protected.statements for n in s.notes)


# -- Fair share ----------------------------------------------------------------------------


def test_stream_limits_per_subject_and_in_total_and_slots_come_back() -> None:
    limiter = StreamLimiter(per_subject=2, total=3)
    limiter.acquire("a")
    limiter.acquire("a")
    with pytest.raises(OverLimit, match="already has 2 open log streams"):
        limiter.acquire("a")
    limiter.acquire("b")
    with pytest.raises(OverLimit, match="maximum of 3"):
        limiter.acquire("c")
    body = limiter.guard("a", iter([b"1", b"2"]))
    assert list(body) == [b"1", b"2"]
    limiter.acquire("c")  # the finished stream gave its slot back
    never_started = limiter.guard("a", iter([b"x"]))
    never_started.close()  # type: ignore[attr-defined]
    never_started.close()  # type: ignore[attr-defined]  # released once, not twice
    assert limiter.open_streams() == 2
    limiter.acquire("a")
    # Half of the workers at most for streams by default, so unary calls always have the other half.
    from openfaas_iam.settings import Settings

    assert Settings.from_env({"threads": "8"}).max_streams == 4


# -- Lint ----------------------------------------------------------------------------------


def test_lint_warns_about_bundle_grants_mount_list_claims_and_deny_variables() -> None:
    role = {
        "apiVersion": "iam.openfaas.com/v1",
        "kind": "Role",
        "metadata": {"name": "r"},
        "spec": {"policy": ["p0"], "condition": {"StringEqual": {"jwt:groups": ["dev"]}}},
    }
    cfg = config(
        st(["Function:Update"], ["openfaas-fn:iam-authz"], sid="bundle"),
        st(["Secret:Mount"], ["openfaas-fn:team-a-*"], sid="mount"),
        st(["Function:Delete"], ["openfaas-fn:${jwt:team}-*"], effect="Deny", sid="deny"),
        roles=(role,),
    )
    warnings = advise(cfg, Protection())  # type: ignore[arg-type]
    assert any(w.startswith("Policy/p0 statement[0] (bundle).resource: openfaas-fn:iam-authz") for w in warnings)
    assert any(w.startswith("Policy/p1 statement[0] (mount).action: Secret:Mount") for w in warnings)
    assert any(w.startswith("Policy/p2 statement[0] (deny).resource") for w in warnings)
    assert any(w.startswith("Role/r.condition: StringEqual on jwt:groups") for w in warnings)


def test_the_examples_lint_without_warnings() -> None:
    from openfaas_iam.model.loading import load_paths

    root = Path(__file__).resolve().parents[2]
    assert advise(load_paths([root / "examples"])) == []


# -- Function tokens for verifiers that ignore `deny` ----------------------------------------

NAMES = ["a", "b", "ab", "ba", "aa", "abc", "x-a", "a-x"]


def _covers(pattern: str, name: str) -> bool:
    from openfaas_iam.model.conditions import glob_regex

    return glob_regex(pattern).fullmatch(name) is not None


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("a*", "*b", True),
        ("a*", "b*", False),
        ("a?c", "*c", True),
        ("ab", "a", False),
        ("*", "", True),
        ("a*b", "a*c", False),
        ("x-*", "*-a", True),
        ("?", "ab", False),
        ("**", "a", True),
    ],
)
def test_globs_intersect(a: str, b: str, expected: bool) -> None:
    from openfaas_iam.engine.policy import globs_intersect

    assert globs_intersect(a, b) is expected
    assert globs_intersect(b, a) is expected


def test_globs_intersect_agrees_with_brute_force() -> None:
    import itertools

    from openfaas_iam.engine.policy import globs_intersect

    patterns = ["*", "a", "a*", "*a", "?", "??", "a?", "*b*", "ab", "b?a", "x-*", "*-a"]
    names = ["".join(p) for n in range(5) for p in itertools.product("abx-", repeat=n)]
    for a, b in itertools.product(patterns, repeat=2):
        brute = any(_covers(a, n) and _covers(b, n) for n in names)
        assert globs_intersect(a, b) is brute, (a, b)


def test_no_function_token_permission_covers_a_denied_function_in_the_examples() -> None:
    from openfaas_iam.engine.policy import safe_permissions, split_resource
    from openfaas_iam.engine.roles import role_matcher
    from openfaas_iam.model.loading import load_paths

    root = Path(__file__).resolve().parents[2]
    cfg = load_paths([root / "examples"])
    index = policy_index(cfg)
    people = [
        {"iss": "https://keycloak.example.com/realms/openfaas", "sub": "u", "preferred_username": "ann", "groups": g}
        for g in (
            ["openfaas-dev"],
            ["openfaas-dev", "contractors"],
            ["openfaas-ops", "contractors"],
            ["staging-dev", "contractors"],  # multi-namespace.yaml
        )
    ]
    checked = 0
    for claims in people:
        policies = role_matcher(cfg).policies(claims)
        allow, deny = index.invoke_resources(policies, claims)
        for permission in safe_permissions(allow, deny):
            ns_pat, fn_pat = split_resource(permission) if permission != "*" else ("*", "*")
            for ns in ("staging", "openfaas-fn", "dev-ann"):
                for fn in ("billing-api", "billing", "echo", "api", "team-a-billing-api", "team-a-echo", "ann-api"):
                    if _covers(ns_pat, ns) and _covers(fn_pat, fn):
                        checked += 1
                        assert index.decide(policies, "Function:Invoke", f"{ns}:{fn}", claims).allowed, (
                            claims["groups"],
                            permission,
                            f"{ns}:{fn}",
                        )
    assert checked > 0


def test_every_secret_custody_names_is_protected_from_wildcards() -> None:
    """One list: a secret the proxy never lets a deploy mount is also out of reach of any wildcard grant."""
    from openfaas_iam.model.custody import PROTECTED_SECRETS

    protection = Protection()
    for secret in sorted(PROTECTED_SECRETS):
        for action in ("Secret:Mount", "Secret:Update", "Secret:Delete"):
            assert protection.protects(action, f"openfaas-fn:{secret}"), (action, secret)


@pytest.mark.parametrize(
    "exp", ["-1e308", "-100000000000000000000000000000", "-99999999999999", "1" + "0" * 400, "1e308"]
)
def test_an_unverified_exp_no_clock_can_show_is_a_401_not_a_500(exp: str) -> None:
    """The expired-token message reads the caller's own, unverified `exp`: an extreme one raised in datetime."""
    import base64

    from openfaas_iam.errors import Unauthenticated
    from openfaas_iam.oidc.verify import OwnTokenVerifier

    def part(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    token = part('{"alg": "ES256", "kid": "k"}') + "." + part('{"exp": ' + exp + "}") + ".AAAA"
    az = Authorizer(
        config=lambda: load_mapping_documents([], "t"),
        verifier=OwnTokenVerifier("https://iam.test", lambda: {}),
        admin_credentials=lambda: None,
    )
    with pytest.raises(Unauthenticated) as e:
        az.authenticate(f"Bearer {token}")
    assert "invalid token" in str(e.value)


def test_a_time_claim_beyond_any_float_is_a_token_error() -> None:
    """Checked after the signature, but an IdP's 10**400 must still be a refusal, not an OverflowError (a 500)."""
    from openfaas_iam.errors import TokenError
    from openfaas_iam.oidc.verify import check_times

    for claim in ("exp", "nbf", "iat"):
        with pytest.raises(TokenError, match=f"{claim} claim is out of range"):
            check_times({"exp": 2e9, claim: 10**400}, now=1e9, leeway=60)


@pytest.mark.parametrize("action", ["function:update", "FUNCTION:UPDATE", "secret:mount", "Secret:MOUNT"])
def test_the_protection_reads_actions_case_insensitively_like_the_engine(action: str) -> None:
    """The decision API takes any spelling; the engine decides it case-insensitively, so must the protection."""
    protection = Protection()
    target = "openfaas-fn:iam-authz" if action.lower().startswith("function") else "openfaas-fn:iam-config"
    assert protection.protects(action, target)


def test_a_renamed_bundle_secret_is_still_the_bundles() -> None:
    """Every `*_secret` setting names a bundle secret, whatever name the operator gave it."""
    from openfaas_iam.settings import Settings

    s = Settings(cache_key_secret="team-cache-hmac", public_keys_secret="team-pub", redis_password_secret="team-pw")
    protection = Protection(extra_secrets=s.bundle_secrets())
    for name in ("team-cache-hmac", "team-pub", "team-pw", "sso-client-secret", "iam-config"):
        assert protection.protects("Secret:Mount", f"openfaas-fn:{name}"), name


@pytest.mark.parametrize(("name", "value"), [("max_streams", "two"), ("fetch_timeout", "5s"), ("threads", "1.5")])
def test_a_bad_numeric_setting_names_itself(name: str, value: str) -> None:
    from openfaas_iam.settings import Settings

    with pytest.raises(ValueError, match=f"setting {name}="):
        Settings.from_env({name: value})
