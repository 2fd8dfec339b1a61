from __future__ import annotations

import json
from pathlib import Path

import pytest

from openfaas_iam.cli.main import main
from openfaas_iam.proxy.rest_api import BadApiRequest, NotCovered, map_call

ROOT = Path(__file__).resolve().parents[2]


def body(**kw: object) -> bytes:
    return json.dumps(kw).encode()


@pytest.mark.parametrize(
    ("method", "path", "query", "raw", "action", "resource", "forward"),
    [
        ("GET", "/system/info", {}, b"", "System:Info", "*", "/system/info"),
        ("GET", "/system/functions", {}, b"", "Function:List", "openfaas-fn:*", "/system/functions"),
        ("GET", "/system/functions", {"namespace": "dev"}, b"", "Function:List", "dev:*", "/system/functions"),
        (
            "POST",
            "/system/functions",
            {},
            body(service="fn", namespace="dev"),
            "Function:Create",
            "dev:fn",
            "/system/functions",
        ),
        ("PUT", "/system/functions", {}, body(service="fn"), "Function:Update", "openfaas-fn:fn", "/system/functions"),
        (
            "DELETE",
            "/system/functions",
            {},
            body(functionName="fn", namespace="dev"),
            "Function:Delete",
            "dev:fn",
            "/system/functions",
        ),
        ("GET", "/system/function/fn", {"namespace": "dev"}, b"", "Function:Get", "dev:fn", "/system/function/fn"),
        (
            "POST",
            "/system/scale-function/fn",
            {},
            body(serviceName="fn", replicas=2, namespace="dev"),
            "Function:Scale",
            "dev:fn",
            "/system/scale-function/fn",
        ),
        ("GET", "/system/logs", {"name": "fn", "namespace": "dev"}, b"", "Function:Logs", "dev:fn", "/system/logs"),
        ("GET", "/system/secrets", {"namespace": "dev"}, b"", "Secret:List", "dev:*", "/system/secrets"),
        (
            "POST",
            "/system/secrets",
            {},
            body(name="db.pass", namespace="dev", value="x"),
            "Secret:Create",
            "dev:db.pass",
            "/system/secrets",
        ),
        ("PUT", "/system/secrets", {}, body(name="db", namespace="dev"), "Secret:Update", "dev:db", "/system/secrets"),
        (
            "DELETE",
            "/system/secrets",
            {},
            body(name="db", namespace="dev"),
            "Secret:Delete",
            "dev:db",
            "/system/secrets",
        ),
        ("GET", "/system/namespaces", {}, b"", "Namespace:List", "*", "/system/namespaces"),
        ("GET", "/system/namespace/dev", {}, b"", "Namespace:Get", "dev:*", "/system/namespace/dev"),
        ("GET", "/system/namespaces/dev", {}, b"", "Namespace:Get", "dev:*", "/system/namespaces/dev"),
        ("POST", "/system/namespace/", {}, body(name="dev"), "Namespace:Create", "dev:*", "/system/namespace/"),
        ("PUT", "/system/namespace/dev", {}, body(name="dev"), "Namespace:Update", "dev:*", "/system/namespace/dev"),
        ("DELETE", "/system/namespace/dev", {}, b"", "Namespace:Delete", "dev:*", "/system/namespace/dev"),
    ],
)
def test_rest_table(method: str, path: str, query: dict, raw: bytes, action: str, resource: str, forward: str) -> None:
    call = map_call(method, path, query, raw)
    assert (call.action, call.resource, call.path) == (action, resource, forward)


@pytest.mark.parametrize(
    ("method", "path", "query", "raw", "error"),
    [
        ("GET", "/system/alerts", {}, b"", NotCovered),
        ("PATCH", "/system/functions", {}, b"", NotCovered),
        ("GET", "/system/function/a/b", {}, b"", NotCovered),
        ("GET", "/system/../function/x", {}, b"", NotCovered),
        ("GET", "/system//functions", {}, b"", NotCovered),
        ("GET", "/system/namespace/", {}, b"", NotCovered),
        ("GET", "/function/x", {}, b"", NotCovered),
        ("POST", "/system/functions", {"namespace": "a"}, body(service="fn", namespace="b"), BadApiRequest),
        ("POST", "/system/functions", {}, b"[]", BadApiRequest),
        ("POST", "/system/functions", {}, b"\xff", BadApiRequest),
        ("POST", "/system/functions", {}, body(service="fn", namespace="UPPER"), BadApiRequest),
        ("DELETE", "/system/functions", {}, body(service="fn"), BadApiRequest),
        ("PUT", "/system/namespace/a", {}, body(name="b"), BadApiRequest),
    ],
)
def test_rest_refusals(method: str, path: str, query: dict, raw: bytes, error: type) -> None:
    with pytest.raises(error):
        map_call(method, path, query, raw)


def test_simulate_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    claims = tmp_path / "claims.json"
    claims.write_text(
        json.dumps(
            {
                "iss": "https://keycloak.example.com/realms/openfaas",
                "sub": "a1",
                "preferred_username": "alice",
                "groups": ["openfaas-ops", "contractors"],
            }
        )
    )
    args = ["simulate", "--config", str(ROOT / "examples" / "iam.yaml"), "--claims", str(claims)]
    assert main([*args, "--action", "Function:Logs", "--resource", "openfaas-fn:api"]) == 1
    out = capsys.readouterr().out
    assert "match  operators" in out
    assert "APPLIES fn-ro/no-logs-for-contractors (Deny)" in out
    assert (
        "decision  DENY Function:Logs on openfaas-fn:api: explicitly denied by policy fn-ro, statement no-logs-for-contractors"
        in out
    )
    assert main([*args, "--action", "Function:Get", "--resource", "openfaas-fn:api", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["allowed"] and doc["matched"] == {"policy": "fn-ro", "sid": "read-only", "effect": "Allow"}
    assert doc["policies"] == ["team-a-rw", "team-a-secrets", "fn-ro"]


def test_repeated_namespace_in_the_query_is_refused() -> None:
    with pytest.raises(BadApiRequest, match="names namespace more than once"):
        map_call("GET", "/system/functions", {"namespace": "dev"}, b"", frozenset({"namespace"}))
    assert (
        map_call("GET", "/system/functions", {"namespace": "dev", "x": "1"}, b"", frozenset({"x"})).resource == "dev:*"
    )
