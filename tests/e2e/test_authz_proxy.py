"""iam-authz: the decision API and the authorizing proxy in front of a gateway stand-in."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import redis
import requests
from conftest import free_port, make_project, start_gateway
from gateway_standin import GatewayStandIn
from idp_server import OidcProvider

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
WEBHOOK_SECRET = "webhook-s3cret"


def docs(iss: str) -> list[dict[str, Any]]:
    def obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "iam.openfaas.com/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}

    def st(sid: str, actions: list[str], resources: list[str], effect: str = "Allow") -> dict[str, Any]:
        return {"sid": sid, "effect": effect, "action": actions, "resource": resources}

    def role(name: str, sub: str, policies: list[str]) -> dict[str, Any]:
        return obj(
            "Role",
            name,
            {"policy": policies, "principal": {"jwt:sub": [sub]}, "condition": {"StringEqual": {"jwt:iss": [iss]}}},
        )

    return [
        obj("JwtIssuer", "idp", {"iss": iss, "aud": ["https://gateway.test"], "tokenExpiry": "1h"}),
        obj(
            "Policy", "staging-rw", {"statement": [st("rw", ["Function:*", "Secret:*", "Namespace:*"], ["staging:*"])]}
        ),
        obj(
            "Policy",
            "fn-ro",
            {"statement": [st("ro", ["Function:List", "Function:Get", "Function:Logs"], ["openfaas-fn:*"])]},
        ),
        obj("Policy", "info", {"statement": [st("info", ["System:Info", "Namespace:List"], ["*"])]}),
        obj(
            "Policy",
            "no-staging-delete",
            {"statement": [st("no-delete", ["Function:Delete"], ["staging:*"], effect="Deny")]},
        ),
        role("deployer", "deployer", ["staging-rw", "fn-ro", "info"]),
        role("reader", "reader", ["fn-ro"]),
        obj("Policy", "bob-ns", {"statement": [st("bob", ["Namespace:Get"], ["dev-bob:*"])]}),
        role("careful", "careful", ["staging-rw", "no-staging-delete"]),
        role("outsider", "outsider", ["bob-ns"]),
    ]


class Receiver(http.server.BaseHTTPRequestHandler):
    deliveries: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.deliveries.append(({k: v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Env:
    def __init__(self, idp: OidcProvider, gw: Any, standin: GatewayStandIn, redis_url: str, prefix: str) -> None:
        self.idp, self.gw, self.standin, self.redis_url, self.prefix = idp, gw, standin, redis_url, prefix
        self.base = f"http://127.0.0.1:{gw.port}"
        self.authz = f"{self.base}/function/iam-authz"
        self._tokens: dict[str, str] = {}

    def token(self, sub: str, scope: str | None = None) -> str:
        key = f"{sub}:{scope}"
        if key not in self._tokens:
            subject = self.idp.mint({"sub": sub}, ttl=3600)
            data = {"grant_type": EXCHANGE, "subject_token": subject, "subject_token_type": ID_TOKEN}
            if scope:
                data["scope"] = scope
            r = requests.post(f"{self.base}/function/iam-token/oauth/token", data=data, timeout=10)
            assert r.status_code == 200, r.text
            self._tokens[key] = r.json()["access_token"]
        return self._tokens[key]

    def call(self, sub: str | None, method: str, path: str, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {})
        if sub:
            headers["Authorization"] = f"Bearer {self.token(sub)}"
        return requests.request(method, f"{self.authz}{path}", headers=headers, timeout=15, **kw)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("authz")
    idp = OidcProvider(free_port()).start()
    (tmp / "iam.json").write_text(json.dumps(docs(idp.issuer)))
    state = tmp / "state"
    (state / "secrets" / "audit-webhook-secret").mkdir(parents=True)
    (state / "secrets" / "audit-webhook-secret" / "audit-webhook-secret").write_text(WEBHOOK_SECRET)
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    secrets_dir = state / "secrets" / "basic-auth"
    standin = GatewayStandIn(
        lambda: ((secrets_dir / "basic-auth-user").read_text(), (secrets_dir / "basic-auth-password").read_text())
    ).start()
    prefix = f"authz-{uuid.uuid4().hex[:6]}:"
    # iam-authz mounts the audit webhook secret too in this deployment.
    stack = make_project(tmp, extra_secrets={"iam-authz": ["audit-webhook-secret"]})
    gw = start_gateway(
        tmp,
        stack=stack,
        iam_config=tmp / "iam.json",
        env={"REDIS_URL": redis_url, "GATEWAY_URL": standin.url},
        function_env={
            "redis_prefix": prefix,
            "audit_webhook_url": f"http://127.0.0.1:{receiver.server_address[1]}/events",
            "audit_stream": "audit",
        },
    )
    try:
        yield Env(idp, gw, standin, redis_url, prefix)
    finally:
        gw.stop()
        standin.stop()
        receiver.shutdown()
        idp.stop()


def reached(env: Env, since: int) -> list[dict[str, Any]]:
    return env.standin.requests[since:]


# -- faas-cli's calls, as faas-cli makes them (its --gateway set to <gateway>/function/iam-authz) --

FAAS_CLI = [
    ("list", "GET", "/system/functions", {"params": {"namespace": "staging"}}, "Function:List", "staging:*"),
    (
        "describe",
        "GET",
        "/system/function/figlet",
        {"params": {"namespace": "openfaas-fn"}},
        "Function:Get",
        "openfaas-fn:figlet",
    ),
    (
        "deploy (create)",
        "POST",
        "/system/functions",
        {"json": {"service": "hello", "image": "ghcr.io/x/hello:1", "namespace": "staging"}},
        "Function:Create",
        "staging:hello",
    ),
    (
        "deploy (update)",
        "PUT",
        "/system/functions",
        {"json": {"service": "hello", "image": "ghcr.io/x/hello:2", "namespace": "staging"}},
        "Function:Update",
        "staging:hello",
    ),
    (
        "scale",
        "POST",
        "/system/scale-function/hello",
        {"params": {"namespace": "staging"}, "json": {"serviceName": "hello", "replicas": 2, "namespace": "staging"}},
        "Function:Scale",
        "staging:hello",
    ),
    (
        "logs",
        "GET",
        "/system/logs",
        {"params": {"name": "figlet", "namespace": "openfaas-fn", "follow": "false", "tail": "-1"}},
        "Function:Logs",
        "openfaas-fn:figlet",
    ),
    (
        "secret create",
        "POST",
        "/system/secrets",
        {"json": {"name": "db-pass", "namespace": "staging", "value": "s3"}},
        "Secret:Create",
        "staging:db-pass",
    ),
    ("secret list", "GET", "/system/secrets", {"params": {"namespace": "staging"}}, "Secret:List", "staging:*"),
    (
        "secret update",
        "PUT",
        "/system/secrets",
        {"json": {"name": "db-pass", "namespace": "staging", "value": "s4"}},
        "Secret:Update",
        "staging:db-pass",
    ),
    (
        "secret remove",
        "DELETE",
        "/system/secrets",
        {"json": {"name": "db-pass", "namespace": "staging"}},
        "Secret:Delete",
        "staging:db-pass",
    ),
    ("namespace get", "GET", "/system/namespace/staging", {}, "Namespace:Get", "staging:*"),
    ("namespace create", "POST", "/system/namespace/", {"json": {"name": "staging"}}, "Namespace:Create", "staging:*"),
    (
        "namespace update",
        "PUT",
        "/system/namespaces/staging",
        {"json": {"name": "staging", "labels": {"a": "b"}}},
        "Namespace:Update",
        "staging:*",
    ),
    ("namespace delete", "DELETE", "/system/namespace/staging", {}, "Namespace:Delete", "staging:*"),
    (
        "remove",
        "DELETE",
        "/system/functions",
        {"json": {"functionName": "hello", "namespace": "staging"}},
        "Function:Delete",
        "staging:hello",
    ),
    ("info", "GET", "/system/info", {}, "System:Info", "*"),
]


@pytest.mark.parametrize(
    ("method", "path", "kw", "action", "resource"), [c[1:] for c in FAAS_CLI], ids=[c[0] for c in FAAS_CLI]
)
def test_every_api_call_allowed_and_denied(
    env: Env, method: str, path: str, kw: dict[str, Any], action: str, resource: str
) -> None:
    before = len(env.standin.requests)
    denied = env.call("outsider", method, path, **kw)
    assert denied.status_code == 403, denied.text
    assert denied.json()["action"] == action and denied.json()["resource"] == resource
    assert reached(env, before) == [], "a denied call must never reach the gateway"
    allowed = env.call("deployer", method, path, **kw)
    assert allowed.status_code < 400, allowed.text
    got = reached(env, before)
    assert len(got) == 1 and got[0]["authed"] and got[0]["method"] == method
    assert got[0]["path"] == path.rstrip("/") or got[0]["path"] == path
    if "staging" not in env.standin.namespaces:  # the namespace delete was real: later cases need staging back
        env.standin.namespaces.append("staging")


def test_deploy_falls_back_from_put_to_post_like_faas_cli(env: Env) -> None:
    body = {"service": "fresh", "image": "img", "namespace": "staging"}
    assert env.call("deployer", "PUT", "/system/functions", json=body).status_code == 404
    assert env.call("deployer", "POST", "/system/functions", json=body).status_code == 202
    listed = env.call("deployer", "GET", "/system/functions", params={"namespace": "staging"}).json()
    assert "fresh" in [f["name"] for f in listed]


def test_logs_are_streamed(env: Env) -> None:
    env.standin.log_delay = 0.3
    try:
        with requests.get(
            f"{env.authz}/system/logs",
            params={"name": "figlet", "namespace": "openfaas-fn", "follow": "true"},
            headers={"Authorization": f"Bearer {env.token('deployer')}"},
            stream=True,
            timeout=15,
        ) as r:
            assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-ndjson"
            start = time.monotonic()
            lines = r.iter_lines()
            first = json.loads(next(lines))
            first_at = time.monotonic() - start
            rest = [json.loads(line) for line in lines]
            total = time.monotonic() - start
    finally:
        env.standin.log_delay = 0.05
    assert first["text"] == "line 0" and [x["text"] for x in rest] == ["line 1", "line 2"]
    assert first_at < total - 0.3, "the first line arrived before the stream ended"


def test_namespace_list_is_filtered(env: Env) -> None:
    # A cluster-wide grant (Namespace:List on "*") sees every namespace; others only their own.
    assert env.call("deployer", "GET", "/system/namespaces").json() == env.standin.namespaces
    assert env.call("reader", "GET", "/system/namespaces").json() == ["openfaas-fn"]
    assert env.call("careful", "GET", "/system/namespaces").json() == ["staging"]


def test_deny_wins_through_the_proxy(env: Env) -> None:
    r = env.call("careful", "DELETE", "/system/functions", json={"functionName": "x", "namespace": "staging"})
    assert r.status_code == 403
    assert r.json()["message"] == "explicitly denied by policy no-staging-delete, statement no-delete"


@pytest.mark.parametrize(
    ("method", "path", "kw", "status", "message"),
    [
        (
            "GET",
            "/system/alerts",
            {},
            403,
            "GET /system/alerts is not in openfaas-iam's permission table; it is not forwarded",
        ),
        (
            "POST",
            "/system/info",
            {},
            403,
            "POST /system/info is not in openfaas-iam's permission table; it is not forwarded",
        ),
        (
            "GET",
            "/system/function/a%2Fb",
            {},
            403,
            "GET /system/function/a/b is not in openfaas-iam's permission table; it is not forwarded",
        ),
        (
            "GET",
            "/system//functions",
            {},
            403,
            "path '/system//functions' is not a canonical API path; it is not forwarded",
        ),
        (
            "GET",
            "/system/functions/%2e%2e",
            {},
            403,
            "path '/system/functions/..' is not a canonical API path; it is not forwarded",
        ),
        (
            "POST",
            "/system/functions",
            {"params": {"namespace": "staging"}, "json": {"service": "x", "namespace": "prod"}},
            400,
            "the namespace is given twice with different values ('staging' in the query, 'prod' in the body)",
        ),
        (
            "POST",
            "/system/functions",
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "the request body is not valid JSON",
        ),
        (
            "POST",
            "/system/functions",
            {"json": {"service": "Bad_Name", "namespace": "staging"}},
            400,
            "service 'Bad_Name' is not a valid name (lowercase letters, digits and '-')",
        ),
        (
            "POST",
            "/system/scale-function/a",
            {"json": {"serviceName": "b", "namespace": "staging"}},
            400,
            "serviceName 'b' in the body differs from 'a' in the path",
        ),
        (
            "GET",
            "/system/logs",
            {"params": {"namespace": "staging"}},
            400,
            "function None is not a valid name (lowercase letters, digits and '-')",
        ),
    ],
)
def test_tricks_are_refused_and_never_forwarded(
    env: Env, method: str, path: str, kw: dict[str, Any], status: int, message: str
) -> None:
    before = len(env.standin.requests)
    headers = {"Authorization": f"Bearer {env.token('deployer')}", **kw.pop("headers", {})}
    r = requests.request(method, f"{env.authz}{path}", headers=headers, timeout=10, **kw)
    assert r.status_code == status and r.json()["message"] == message
    assert reached(env, before) == []


def test_authentication_failures(env: Env) -> None:
    r = env.call(None, "GET", "/system/functions")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith('Bearer realm="openfaas-iam"')
    r = env.call(None, "GET", "/system/functions", headers={"Authorization": "Bearer not.a.token"})
    assert r.status_code == 401 and "invalid token" in r.json()["message"]
    r = env.call(None, "GET", "/system/functions", headers={"Authorization": "Basic YWRtaW46d3Jvbmc="})
    assert r.status_code == 401 and r.json()["message"] == "invalid basic credentials"


def test_function_tokens_are_refused_for_the_api(env: Env) -> None:
    fn = requests.post(
        f"{env.base}/function/iam-token/oauth/token",
        data={
            "grant_type": EXCHANGE,
            "subject_token": env.token("deployer"),
            "subject_token_type": ID_TOKEN,
            "scope": "function",
        },
        timeout=10,
    )
    assert fn.status_code == 200, fn.text
    r = env.call(None, "GET", "/system/functions", headers={"Authorization": f"Bearer {fn.json()['access_token']}"})
    assert r.status_code == 401
    assert r.json()["message"] == "a function token cannot be used for the OpenFaaS API; use an API token"


def test_admin_basic_auth_keeps_full_access(env: Env) -> None:
    secrets = env.gw.secret_store / "basic-auth"
    auth = ((secrets / "basic-auth-user").read_text(), (secrets / "basic-auth-password").read_text())
    r = requests.get(f"{env.authz}/system/namespaces", auth=auth, timeout=10)
    assert r.status_code == 200 and r.json() == env.standin.namespaces


def test_gateway_down_is_a_clear_502(env: Env) -> None:
    env.standin.stop()
    try:
        r = env.call("deployer", "GET", "/system/functions", params={"namespace": "staging"})
        assert r.status_code == 502
        assert r.json()["message"] == f"the OpenFaaS gateway at {env.standin.url} is unreachable (ConnectionError)"
    finally:
        env.standin.restart()
    assert env.call("deployer", "GET", "/system/functions", params={"namespace": "staging"}).status_code == 200


def test_decision_api(env: Env) -> None:
    headers = {"Authorization": f"Bearer {env.token('careful')}"}
    r = requests.post(
        f"{env.authz}/authorize",
        json={"action": "Function:Create", "resource": "staging:x"},
        headers=headers,
        timeout=10,
    )
    assert r.json() == {
        "allowed": True,
        "action": "Function:Create",
        "resource": "staging:x",
        "subject": "fed:careful",
        "matched": {"policy": "staging-rw", "sid": "rw", "effect": "Allow"},
        "reason": "allowed by policy staging-rw, statement rw",
    }
    many = requests.post(
        f"{env.authz}/authorize",
        json=[{"action": "Function:Delete", "resource": "staging:x"}, {"action": "Function:Get", "resource": "prod:x"}],
        headers=headers,
        timeout=10,
    ).json()
    assert [m["allowed"] for m in many] == [False, False]
    assert many[0]["matched"] == {"policy": "no-staging-delete", "sid": "no-delete", "effect": "Deny"}
    assert many[1]["matched"] is None
    bad = requests.post(f"{env.authz}/authorize", json={"action": 1}, headers=headers, timeout=10)
    assert bad.status_code == 400 and bad.json()["message"] == 'the body needs string fields "action" and "resource"'
    bad = requests.post(f"{env.authz}/authorize", data=b"[", headers=headers, timeout=10)
    assert bad.status_code == 400
    anon = requests.post(f"{env.authz}/authorize", json={"action": "Function:Get", "resource": "a:b"}, timeout=10)
    assert anon.status_code == 401 and "Bearer" in anon.headers["WWW-Authenticate"]
    me = requests.get(f"{env.authz}/whoami", headers=headers, timeout=10).json()
    assert me["subject"] == "fed:careful" and me["policies"] == ["staging-rw", "no-staging-delete"]
    assert me["federated_issuer"] == env.idp.issuer and 3500 < me["expires_in"] <= 3600
    assert [p["sid"] for p in me["permissions"]] == ["rw", "no-delete"]


def test_audit_events_reach_log_redis_stream_and_signed_webhook(env: Env) -> None:
    marker = f"audited-{uuid.uuid4().hex[:6]}"
    r = env.call(
        "deployer", "POST", "/system/functions", json={"service": marker, "image": "i", "namespace": "staging"}
    )
    assert r.status_code == 202
    denied = env.call(
        "reader", "POST", "/system/functions", json={"service": marker, "image": "i", "namespace": "staging"}
    )
    assert denied.status_code == 403
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and sum(len(json.loads(b)) for _, b in Receiver.deliveries) < 2:
        time.sleep(0.1)
    events = []
    for headers, body in Receiver.deliveries:
        assert headers["X-Openfaas-Event"] == "api_access"
        assert uuid.UUID(headers["X-Openfaas-Delivery"])
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Openfaas-Signature-256"], expected)
        events.extend(json.loads(body))
    ours = [e for e in events if e["path"] == "/system/functions" and e["method"] == "POST"]
    codes = sorted(e["response_code"] for e in ours)
    assert 202 in codes and 403 in codes
    ok = next(e for e in ours if e["response_code"] == 202)
    assert ok["actor"] == {
        "sub": "fed:deployer",
        "name": "",
        "issuer": f"{env.base}/function/iam-discovery",
        "fed_issuer": env.idp.issuer,
    }
    assert ok["actions"] == ["Function:Create"] and ok["time"].endswith("Z") and len(ok["time"].split(".")[1]) == 10
    stream = redis.Redis.from_url(env.redis_url).xrange(f"{env.prefix}audit")
    assert any(json.loads(fields[b"event"])["response_code"] == 202 for _, fields in stream)
    log = (env.gw.state_dir / "logs" / "iam-authz.log").read_text()
    assert '"event":"api_access"' in log and env.token("deployer") not in log
