"""Confused-deputy cases: the proxy forwards exactly what it decided, read the way the providers read it.

Each case is an endpoint x a body/query/case variant x a caller. The upstream is the
gateway stand-in, which decodes bodies like Go's encoding/json (case-insensitive keys,
the last one wins) and records the (namespace, name) that faas-netes and faasd would
act on. For every case the call is either refused and never forwarded, or forwarded
with exactly the decided target, whichever provider reads it.
"""

from __future__ import annotations

import base64
import json
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import free_port, make_project, start_gateway
from gateway_standin import GatewayStandIn
from idp_server import OidcProvider

pytestmark = pytest.mark.e2e

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


def docs(iss: str) -> list[dict[str, Any]]:
    def obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "iam.openfaas.com/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}

    def st(sid: str, actions: list[str], resources: list[str], effect: str = "Allow") -> dict[str, Any]:
        return {"sid": sid, "effect": effect, "action": actions, "resource": resources}

    def role(sub: str, policies: list[str]) -> dict[str, Any]:
        return obj(
            "Role",
            sub,
            {"policy": policies, "principal": {"jwt:sub": [sub]}, "condition": {"StringEqual": {"jwt:iss": [iss]}}},
        )

    return [
        obj("JwtIssuer", "idp", {"iss": iss, "aud": ["https://gateway.test"], "tokenExpiry": "1h"}),
        # Allowed only in dev: must never reach openfaas-fn.
        obj("Policy", "dev-only", {"statement": [st("dev", ["Function:*", "Secret:*"], ["dev:*"])]}),
        # CE's everything-in-one-namespace wildcard: must never reach the bundle itself.
        obj("Policy", "fn-admin", {"statement": [st("all-fn", ["Function:*", "Secret:*"], ["openfaas-fn:*"])]}),
        # Deploy-only: may create team-a functions but mount no secret.
        obj("Policy", "deploy-only", {"statement": [st("deploy", ["Function:Create"], ["openfaas-fn:team-a-*"])]}),
        obj(
            "Policy",
            "team-a",
            {
                "statement": [
                    st("fns", ["Function:Create", "Function:Update"], ["openfaas-fn:team-a-*"]),
                    st("mount", ["Secret:Mount"], ["openfaas-fn:team-a-*"]),
                ]
            },
        ),
        # An exact grant on one of the bundle's functions is the one way through (besides admin).
        obj("Policy", "authz-updater", {"statement": [st("exact", ["Function:Update"], ["openfaas-fn:iam-authz"])]}),
        obj("Policy", "reader", {"statement": [st("read", ["Function:List", "Function:Logs"], ["openfaas-fn:*"])]}),
        {
            **obj("Policy", "trial-no-deletes", {"statement": [st("nd", ["Function:Delete"], ["dev:*"], "Deny")]}),
            "metadata": {"name": "trial-no-deletes", "annotations": {"iam.openfaas.com/report-only": "true"}},
        },
        role("trial", ["dev-only", "trial-no-deletes"]),
        role("dev-user", ["dev-only"]),
        role("fn-admin", ["fn-admin"]),
        role("deployer", ["deploy-only"]),
        role("team-a", ["team-a"]),
        role("authz-updater", ["authz-updater"]),
        role("streamer", ["reader"]),
        role("other", ["reader"]),
    ]


class Env:
    def __init__(self, idp: OidcProvider, gw: Any, standin: GatewayStandIn, state: Any) -> None:
        self.idp, self.gw, self.standin, self.state = idp, gw, standin, state
        self.base = f"http://127.0.0.1:{gw.port}"
        self.authz = f"{self.base}/function/iam-authz"
        self._tokens: dict[str, str] = {}

    def token(self, sub: str) -> str:
        if sub not in self._tokens:
            subject = self.idp.mint({"sub": sub}, ttl=3600)
            data = {"grant_type": EXCHANGE, "subject_token": subject, "subject_token_type": ID_TOKEN}
            r = requests.post(f"{self.base}/function/iam-token/oauth/token", data=data, timeout=10)
            assert r.status_code == 200, r.text
            self._tokens[sub] = r.json()["access_token"]
        return self._tokens[sub]

    def auth(self, caller: str) -> str:
        if caller == "admin":
            folder = self.state / "secrets" / "basic-auth"
            user = (folder / "basic-auth-user").read_text()
            password = (folder / "basic-auth-password").read_text()
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return f"Bearer {self.token(caller)}"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("deputy")
    idp = OidcProvider(free_port()).start()
    (tmp / "iam.json").write_text(json.dumps(docs(idp.issuer)))
    state = tmp / "state"
    secrets_dir = state / "secrets" / "basic-auth"
    standin = GatewayStandIn(
        lambda: ((secrets_dir / "basic-auth-user").read_text(), (secrets_dir / "basic-auth-password").read_text())
    ).start()
    standin.functions.update(
        {
            (ns, fn): {"name": fn, "namespace": ns, "replicas": 1}
            for ns, fn in [("dev", "x"), ("openfaas-fn", "x"), ("openfaas-fn", "iam-authz"), ("openfaas-fn", "mine")]
        }
    )
    stack = make_project(tmp)
    gw = start_gateway(
        tmp,
        stack=stack,
        iam_config=tmp / "iam.json",
        env={"REDIS_URL": redis_url, "GATEWAY_URL": standin.url},
        function_env={"redis_prefix": f"deputy-{uuid.uuid4().hex[:6]}:"},
    )
    try:
        yield Env(idp, gw, standin, state)
    finally:
        gw.stop()
        standin.stop()
        idp.stop()


def raw(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def text(s: str) -> bytes:
    return s.encode()


FWD = "forwarded"
# (id, caller, method, path, query, body, expected): expected is (FWD, ns, name) or (status, fragment of the message)
CASES: list[tuple[str, str, str, str, dict[str, str], bytes, tuple[Any, ...]]] = [
    # -- DELETE /system/functions: faas-netes reads the namespace from the query, faasd from the body.
    (
        "delete-body-ns",
        "dev-user",
        "DELETE",
        "/system/functions",
        {},
        raw(functionName="x", namespace="dev"),
        (FWD, "dev", "x"),
    ),
    (
        "delete-query-ns",
        "dev-user",
        "DELETE",
        "/system/functions",
        {"namespace": "dev"},
        raw(functionName="x"),
        (FWD, "dev", "x"),
    ),
    (
        "delete-query-vs-body",
        "dev-user",
        "DELETE",
        "/system/functions",
        {"namespace": "openfaas-fn"},
        raw(functionName="x", namespace="dev"),
        (400, "given twice with different values"),
    ),
    (
        "delete-case-ns",
        "dev-user",
        "DELETE",
        "/system/functions",
        {},
        text('{"functionName":"x","namespace":"dev","Namespace":"openfaas-fn"}'),
        (400, "given twice"),
    ),
    (
        "delete-upper-ns",
        "dev-user",
        "DELETE",
        "/system/functions",
        {},
        text('{"functionName":"x","NAMESPACE":"openfaas-fn"}'),
        (403, "no statement"),
    ),
    (
        "delete-case-name",
        "dev-user",
        "DELETE",
        "/system/functions",
        {},
        text('{"functionName":"x","FunctionName":"iam-authz","namespace":"dev"}'),
        (400, "given twice"),
    ),
    (
        "delete-case-only",
        "dev-user",
        "DELETE",
        "/system/functions",
        {},
        text('{"FUNCTIONNAME":"x","Namespace":"dev"}'),
        (FWD, "dev", "x"),
    ),
    (
        "delete-dup-exact",
        "dev-user",
        "DELETE",
        "/system/functions",
        {},
        text('{"functionName":"x","namespace":"dev","namespace":"openfaas-fn"}'),
        (400, "given twice"),
    ),
    (
        "delete-no-ns-is-default",
        "dev-user",
        "DELETE",
        "/system/functions",
        {},
        raw(functionName="x"),
        (403, "no statement"),
    ),
    (
        "delete-bundle-wildcard",
        "fn-admin",
        "DELETE",
        "/system/functions",
        {},
        raw(functionName="iam-token"),
        (403, "belongs to openfaas-iam"),
    ),
    (
        "delete-fn-admin-ok",
        "fn-admin",
        "DELETE",
        "/system/functions",
        {},
        raw(functionName="mine"),
        (FWD, "openfaas-fn", "mine"),
    ),
    # -- POST /system/scale-function/{name}: namespace from the query (faas-netes), body (faasd).
    (
        "scale-body-ns",
        "dev-user",
        "POST",
        "/system/scale-function/x",
        {},
        raw(serviceName="x", replicas=2, namespace="dev"),
        (FWD, "dev", "x"),
    ),
    (
        "scale-query-vs-body",
        "dev-user",
        "POST",
        "/system/scale-function/x",
        {"namespace": "openfaas-fn"},
        raw(serviceName="x", replicas=2, namespace="dev"),
        (400, "given twice with different values"),
    ),
    (
        "scale-case-ns",
        "dev-user",
        "POST",
        "/system/scale-function/x",
        {},
        text('{"serviceName":"x","replicas":2,"Namespace":"dev","namespace":"openfaas-fn"}'),
        (400, "given twice"),
    ),
    (
        "scale-other-name",
        "dev-user",
        "POST",
        "/system/scale-function/x",
        {},
        raw(serviceName="iam-authz", replicas=0, namespace="dev"),
        (400, "differs"),
    ),
    (
        "scale-bundle",
        "fn-admin",
        "POST",
        "/system/scale-function/iam-authz",
        {},
        raw(replicas=0),
        (403, "belongs to openfaas-iam"),
    ),
    (
        "scale-negative",
        "dev-user",
        "POST",
        "/system/scale-function/x",
        {"namespace": "dev"},
        raw(replicas=-1),
        (400, "whole number"),
    ),
    # -- POST/PUT /system/functions: namespace and name from the body, any spelling.
    (
        "deploy-case-service",
        "dev-user",
        "POST",
        "/system/functions",
        {},
        text('{"service":"mine","Service":"iam-authz","image":"evil","namespace":"dev"}'),
        (400, "given twice"),
    ),
    (
        "deploy-case-ns",
        "dev-user",
        "POST",
        "/system/functions",
        {},
        text('{"service":"mine","image":"i","namespace":"dev","NAMESPACE":"openfaas-fn"}'),
        (400, "given twice"),
    ),
    (
        "deploy-long-s",
        "dev-user",
        "POST",
        "/system/functions",
        {},
        '{"service":"mine","\u017fervice":"iam-authz","image":"i","namespace":"dev"}'.encode(),
        (400, "not ASCII"),
    ),
    (
        "deploy-kelvin",
        "dev-user",
        "PUT",
        "/system/functions",
        {},
        '{"service":"mine","image":"i","namespace":"dev","\u212aey":"x"}'.encode(),
        (400, "not ASCII"),
    ),
    (
        "deploy-canonical-case",
        "dev-user",
        "PUT",
        "/system/functions",
        {},
        text('{"Service":"mine","Image":"i","Namespace":"dev"}'),
        (FWD, "dev", "mine"),
    ),
    (
        "deploy-query-ns",
        "dev-user",
        "POST",
        "/system/functions",
        {"namespace": "dev"},
        raw(service="mine", image="i"),
        (FWD, "dev", "mine"),
    ),
    (
        "deploy-query-vs-body",
        "dev-user",
        "POST",
        "/system/functions",
        {"namespace": "dev"},
        raw(service="mine", image="i", namespace="openfaas-fn"),
        (400, "given twice with different values"),
    ),
    (
        "deploy-type",
        "dev-user",
        "POST",
        "/system/functions",
        {},
        raw(service=["mine"], image="i", namespace="dev"),
        (400, "must be a string"),
    ),
    (
        "deploy-bundle-wildcard",
        "fn-admin",
        "PUT",
        "/system/functions",
        {},
        raw(service="iam-authz", image="evil", namespace="openfaas-fn"),
        (403, "belongs to openfaas-iam"),
    ),
    (
        "deploy-bundle-exact",
        "authz-updater",
        "PUT",
        "/system/functions",
        {},
        raw(service="iam-authz", image="new", namespace="openfaas-fn"),
        (FWD, "openfaas-fn", "iam-authz"),
    ),
    (
        "deploy-bundle-admin",
        "admin",
        "PUT",
        "/system/functions",
        {},
        raw(service="iam-authz", image="new", namespace="openfaas-fn"),
        (FWD, "openfaas-fn", "iam-authz"),
    ),
    # -- Secrets a deploy mounts need Secret:Mount on each; the bundle's never through a wildcard.
    (
        "mount-basic-auth",
        "dev-user",
        "POST",
        "/system/functions",
        {},
        raw(service="mine", image="i", namespace="dev", secrets=["basic-auth"]),
        (403, "may not mount the bundle's secrets"),
    ),
    (
        "mount-signing-keys",
        "fn-admin",
        "POST",
        "/system/functions",
        {},
        raw(service="mine", image="i", secrets=["iam-signing-keys"]),
        (403, "may not mount the bundle's secrets"),
    ),
    (
        "mount-case-secrets",
        "fn-admin",
        "POST",
        "/system/functions",
        {},
        text('{"service":"mine","image":"i","secrets":["db"],"Secrets":["iam-config"]}'),
        (400, "given twice"),
    ),
    (
        "mount-without-permission",
        "deployer",
        "POST",
        "/system/functions",
        {},
        raw(service="team-a-api", image="i", secrets=["team-a-db"]),
        (403, "mounts secret team-a-db"),
    ),
    (
        "deploy-without-secrets",
        "deployer",
        "POST",
        "/system/functions",
        {},
        raw(service="team-a-api", image="i"),
        (FWD, "openfaas-fn", "team-a-api"),
    ),
    (
        "mount-with-permission",
        "team-a",
        "POST",
        "/system/functions",
        {},
        raw(service="team-a-api", image="i", secrets=["team-a-db"]),
        (FWD, "openfaas-fn", "team-a-api"),
    ),
    (
        "mount-other-team",
        "team-a",
        "POST",
        "/system/functions",
        {},
        raw(service="team-a-api", image="i", secrets=["team-b-db"]),
        (403, "mounts secret team-b-db"),
    ),
    # -- Labels the platform selects pods by; scaling labels need Function:Scale.
    (
        "label-hijack",
        "team-a",
        "POST",
        "/system/functions",
        {},
        raw(service="team-a-api", image="i", labels={"faas_function": "iam-token"}),
        (400, "reserved"),
    ),
    (
        "serviceaccount-annotation",
        "team-a",
        "POST",
        "/system/functions",
        {},
        raw(service="team-a-api", image="i", annotations={"com.openfaas.serviceaccount": "build-robot"}),
        (400, "reserved"),
    ),
    (
        "label-scale",
        "team-a",
        "POST",
        "/system/functions",
        {},
        raw(service="team-a-api", image="i", labels={"com.openfaas.scale.min": "50"}),
        (403, "scaling label"),
    ),
    (
        "label-dup",
        "team-a",
        "POST",
        "/system/functions",
        {},
        text('{"service":"team-a-api","image":"i","labels":{"a":"1","a":"2"}}'),
        (400, "given twice"),
    ),
    # -- Secrets: faas-netes reads the body, faasd the query for DELETE.
    ("secret-delete", "dev-user", "DELETE", "/system/secrets", {}, raw(name="db", namespace="dev"), (FWD, "dev", "db")),
    (
        "secret-delete-query",
        "dev-user",
        "DELETE",
        "/system/secrets",
        {"namespace": "dev"},
        raw(name="db"),
        (FWD, "dev", "db"),
    ),
    (
        "secret-case-name",
        "dev-user",
        "PUT",
        "/system/secrets",
        {},
        text('{"name":"db","Name":"iam-config","namespace":"dev","value":"v"}'),
        (400, "given twice"),
    ),
    (
        "secret-bundle",
        "fn-admin",
        "PUT",
        "/system/secrets",
        {},
        raw(name="iam-config", value="x"),
        (403, "belongs to openfaas-iam"),
    ),
    (
        "secret-basic-auth",
        "fn-admin",
        "POST",
        "/system/secrets",
        {},
        raw(name="basic-auth", value="x"),
        (403, "belongs to openfaas-iam"),
    ),
    (
        "secret-fn-admin-ok",
        "fn-admin",
        "POST",
        "/system/secrets",
        {},
        raw(name="app-db", value="x"),
        (FWD, "openfaas-fn", "app-db"),
    ),
    # -- Reads: the query decides, one value each.
    ("logs", "dev-user", "GET", "/system/logs", {"name": "x", "namespace": "dev"}, b"", (FWD, "dev", "x")),
    (
        "surrogate",
        "dev-user",
        "POST",
        "/system/functions",
        {},
        text('{"service":"x","image":"i","namespace":"dev","envVars":{"a":"\\ud800"}}'),
        (400, "surrogate"),
    ),
    (
        "secret-surrogate",
        "dev-user",
        "POST",
        "/system/secrets",
        {},
        text('{"name":"s","namespace":"dev","value":"\\ud800"}'),
        (400, "surrogate"),
    ),
    ("bundle-logs", "fn-admin", "GET", "/system/logs", {"name": "iam-authz"}, b"", (403, "belongs to openfaas-iam")),
    ("bundle-describe", "fn-admin", "GET", "/system/function/iam-authz", {}, b"", (403, "belongs to openfaas-iam")),
    ("describe", "dev-user", "GET", "/system/function/x", {"namespace": "dev"}, b"", (FWD, "dev", "x")),
    ("describe-body-ignored", "dev-user", "GET", "/system/function/x", {}, raw(namespace="dev"), (403, "no statement")),
]


def prepare(env: Env, method: str, path: str, ns: str, name: str) -> None:
    """The provider is real about state: the target must exist (or not, for a create) for a 2xx."""
    functions, secrets = env.standin.functions, env.standin.secrets
    if path == "/system/secrets":
        if method == "POST":
            secrets.pop((ns, name), None)
        else:
            secrets[(ns, name)] = b"v"
    elif method == "POST" and path == "/system/functions":
        functions.pop((ns, name), None)
    else:
        env.standin.provider.register({"name": name, "namespace": ns, "image": "i"})


@pytest.mark.parametrize(
    ("caller", "method", "path", "query", "body", "expected"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_confused_deputy(
    env: Env, caller: str, method: str, path: str, query: dict[str, str], body: bytes, expected: tuple[Any, ...]
) -> None:
    if expected[0] == FWD:
        prepare(env, method, path, expected[1], expected[2])
    before = len(env.standin.requests)
    r = requests.request(
        method,
        f"{env.authz}{path}",
        params=query,
        data=body or None,
        headers={"Authorization": env.auth(caller), "Content-Type": "application/json"},
        timeout=15,
    )
    reached = env.standin.requests[before:]
    if expected[0] == FWD:
        _, ns, name = expected
        assert r.status_code < 400, (r.status_code, r.text)
        assert len(reached) == 1, reached
        got = reached[0]
        assert got["target"] == (ns, name), f"faas-netes would act on {got['target']}"
        assert got["target_faasd"] == (ns, name), f"faasd would act on {got['target_faasd']}"
        assert got["query"].get("namespace") == ns
        # Exactly what was decided: only known fields, one spelling each, nothing the caller added.
        doc = json.loads(got["raw"]) if got["raw"] else {}
        assert len({k.lower() for k in doc}) == len(doc)
    else:
        status, fragment = expected
        assert r.status_code == status, (r.status_code, r.text)
        assert fragment in r.json()["message"], r.json()["message"]
        assert reached == [], f"a refused call reached the gateway: {reached}"


def test_forwarded_body_drops_unknown_fields_and_sets_the_decided_namespace(env: Env) -> None:
    env.standin.functions.pop(("dev", "mine"), None)
    before = len(env.standin.requests)
    r = requests.post(
        f"{env.authz}/system/functions",
        data=text('{"service":"mine","image":"i","namespace":"dev","extra":{"service":"iam-authz"}}'),
        headers={"Authorization": env.auth("dev-user")},
        timeout=15,
    )
    assert r.status_code == 202, r.text
    (got,) = env.standin.requests[before:]
    assert json.loads(got["raw"]) == {"service": "mine", "image": "i", "namespace": "dev"}
    assert got["raw_query"] == "namespace=dev"


def test_refusals_are_audited_with_target_decision_and_reason(env: Env, capfd: pytest.CaptureFixture[str]) -> None:
    requests.delete(
        f"{env.authz}/system/functions",
        data=raw(functionName="iam-token"),
        headers={"Authorization": env.auth("fn-admin")},
        timeout=15,
    )
    requests.post(
        f"{env.authz}/system/functions",
        data=text('{"service":"a","Service":"b"}'),
        headers={"Authorization": env.auth("dev-user")},
        timeout=15,
    )
    deadline = time.monotonic() + 5
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        out = capfd.readouterr().out
        events += [
            json.loads(line.split("] ", 1)[1])
            for line in out.splitlines()
            if line.startswith("[iam-authz] {") and '"api_access"' in line
        ]
        if len(events) >= 2:
            break
        time.sleep(0.1)
    deny = next(e for e in events if e.get("decision") == "deny")
    assert deny["namespace"] == "openfaas-fn" and deny["name"] == "iam-token"
    assert deny["actions"] == ["Function:Delete"] and deny["response_code"] == 403
    assert "belongs to openfaas-iam" in deny["reason"]
    invalid = next(e for e in events if e.get("decision") == "invalid")
    assert invalid["response_code"] == 400 and "given twice" in invalid["reason"]


def test_log_streams_are_limited_per_caller_and_unary_calls_keep_their_latency(env: Env) -> None:
    """16 streams from one caller: two per replica run, the rest get 429; another caller's /whoami is unaffected."""
    other = {"Authorization": env.auth("other")}
    env.auth("streamer")

    def whoami_latencies(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            r = requests.get(f"{env.authz}/whoami", headers=other, timeout=10)
            out.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
        return out

    baseline = statistics.median(whoami_latencies(20))
    env.standin.log_delay, env.standin.log_lines = 0.5, 12  # each stream runs about 6 s
    statuses: list[int] = []
    retry_after: list[str] = []
    lock = threading.Lock()

    def stream() -> None:
        r = requests.get(
            f"{env.authz}/system/logs",
            params={"name": "x", "namespace": "openfaas-fn", "follow": "true"},
            headers={"Authorization": env.auth("streamer")},
            stream=True,
            timeout=30,
        )
        with lock:
            statuses.append(r.status_code)
            if r.status_code == 429:
                retry_after.append(r.headers.get("Retry-After", ""))
        for _ in r.iter_content(chunk_size=None):
            pass
        r.close()

    try:
        threads = [threading.Thread(target=stream) for _ in range(16)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        during = whoami_latencies(20)
        health = requests.get(f"{env.authz}/healthz", timeout=5)
        for t in threads:
            t.join(timeout=40)
    finally:
        env.standin.log_delay, env.standin.log_lines = 0.05, 3
    # Two per caller on each replica of iam-authz (stack.yml runs com.openfaas.scale.min of them).
    replicas = len(env.gw.replicas["iam-authz"])
    assert replicas >= 1
    assert statuses.count(200) == 2 * replicas and statuses.count(429) == 16 - 2 * replicas, statuses
    assert set(retry_after) == {"5"}
    assert health.status_code == 200
    # Normal latency: a loopback call on a busy 2-core machine; before the limit these timed out (>10 s).
    assert max(during) < max(3.0, 20 * baseline), (baseline, during)
    print(f"whoami median {baseline * 1000:.1f} ms alone, {statistics.median(during) * 1000:.1f} ms during 16 streams")
    # The slots come back when the streams end: the caller can stream again.
    r = requests.get(
        f"{env.authz}/system/logs",
        params={"name": "x", "namespace": "openfaas-fn"},
        headers={"Authorization": env.auth("streamer")},
        timeout=15,
    )
    assert r.status_code == 200, r.text


def test_status_is_for_operators_only(env: Env) -> None:
    assert requests.get(f"{env.authz}/status", timeout=10).status_code == 401
    r = requests.get(f"{env.authz}/status", headers={"Authorization": env.auth("dev-user")}, timeout=10)
    assert r.status_code == 403
    r = requests.get(f"{env.authz}/status", headers={"Authorization": env.auth("admin")}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"] is True and body["config"]["loaded"]["roles"] == 8 and body["config"]["problems"] is None


def test_not_ready_tells_anonymous_callers_nothing_of_the_configuration(tmp_path: Any, redis_url: str) -> None:
    broken = tmp_path / "iam.json"
    bad = [
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "Policy",
            "metadata": {"name": "secret-internal-policy-name"},
            "spec": {"statement": [{"sid": "s", "effect": "Allow", "action": ["Function:Lgos"], "resource": ["*"]}]},
        }
    ]
    broken.write_text(json.dumps(bad))
    gw = start_gateway(tmp_path, stack=make_project(tmp_path), iam_config=broken, env={"REDIS_URL": redis_url})
    try:
        base = f"http://127.0.0.1:{gw.port}/function"
        token = requests.post(
            f"{base}/iam-token/oauth/token",
            data={"grant_type": EXCHANGE, "subject_token": "x.y.z", "subject_token_type": ID_TOKEN},
            timeout=10,
        )
        issuers = requests.get(f"{base}/iam-discovery/issuers", timeout=10)
        refresh = requests.post(f"{base}/iam-discovery/refresh", timeout=10)
        for r in (token, issuers, refresh):
            assert r.status_code == 503, r.text
            assert "not ready" in r.text
            for leak in ("secret-internal-policy-name", "Lgos", str(broken), "iam.json"):
                assert leak not in r.text, (leak, r.text)
        assert token.json()["error"] == "temporarily_unavailable"
        folder = tmp_path / "state" / "secrets" / "basic-auth"
        user = (folder / "basic-auth-user").read_text()
        password = (folder / "basic-auth-password").read_text()
        status = requests.get(f"{base}/iam-authz/status", auth=(user, password), timeout=10)
        assert status.status_code == 200, status.text
        assert status.json()["ready"] is False and "Function:Lgos" in status.json()["config"]["problems"]
    finally:
        gw.stop()


def test_a_report_only_policy_lets_the_call_through_and_audits_would_deny(
    env: Env, capfd: pytest.CaptureFixture[str]
) -> None:
    prepare(env, "DELETE", "/system/functions", "dev", "x")
    before = len(env.standin.requests)
    r = requests.delete(
        f"{env.authz}/system/functions",
        data=raw(functionName="x", namespace="dev"),
        headers={"Authorization": env.auth("trial")},
        timeout=15,
    )
    assert r.status_code == 202, r.text
    assert env.standin.requests[before:][0]["target"] == ("dev", "x"), "forwarded: the policy only reports"
    deadline = time.monotonic() + 5
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not events:
        out = capfd.readouterr().out
        events = [
            json.loads(line.split("] ", 1)[1])
            for line in out.splitlines()
            if line.startswith("[iam-authz] {") and '"would_deny"' in line
        ]
        time.sleep(0.1)
    assert events and events[0]["decision"] == "would_deny" and "trial-no-deletes" in events[0]["reason"]
    decision = requests.post(
        f"{env.authz}/authorize",
        json={"action": "Function:Delete", "resource": "dev:x"},
        headers={"Authorization": env.auth("trial")},
        timeout=15,
    ).json()
    assert decision["allowed"] is True and "trial-no-deletes" in decision["would_deny"]
