"""Function:Invoke enforcement by the template (iam_auth=true) with the bundle's function tokens."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
import requests
from conftest import make_project
from idp_server import OidcProvider

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
PROTECTED = """
  echo:
    lang: python3-http-iam
    handler: ./fixtures/echo
    image: test/echo:latest
    namespace: staging
    environment:
      iam_auth: "true"
      iam_auth_issuer: ${PUBLIC_GATEWAY_URL}/function/iam-discovery
"""


def docs(iss: str) -> list[dict]:
    def obj(kind: str, name: str, spec: dict) -> dict:
        return {"apiVersion": "iam.openfaas.com/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}

    return [
        obj("JwtIssuer", "idp", {"iss": iss, "aud": ["https://gateway.test"]}),
        obj(
            "Policy",
            "invoke-staging",
            {"statement": [{"sid": "i", "effect": "Allow", "action": ["Function:Invoke"], "resource": ["staging:*"]}]},
        ),
        obj(
            "Policy",
            "invoke-other",
            {
                "statement": [
                    {"sid": "o", "effect": "Allow", "action": ["Function:Invoke"], "resource": ["staging:other"]}
                ]
            },
        ),
        obj(
            "Policy",
            "no-echo",
            {"statement": [{"sid": "n", "effect": "Deny", "action": ["Function:Invoke"], "resource": ["*:echo"]}]},
        ),
        obj(
            "Policy",
            "read",
            {"statement": [{"sid": "r", "effect": "Allow", "action": ["Function:Get"], "resource": ["staging:*"]}]},
        ),
        obj("Role", "invoker", {"policy": ["invoke-staging"], "principal": {"jwt:sub": ["invoker"]}}),
        obj("Role", "other", {"policy": ["invoke-other"], "principal": {"jwt:sub": ["other"]}}),
        obj("Role", "denied", {"policy": ["invoke-staging", "no-echo"], "principal": {"jwt:sub": ["denied"]}}),
        obj("Role", "reader", {"policy": ["read"], "principal": {"jwt:sub": ["reader"]}}),
    ]


@pytest.fixture
def bundle(local_gateway, idp: OidcProvider, tmp_path: Path):
    (tmp_path / "iam.json").write_text(json.dumps(docs(idp.issuer)))
    gw = local_gateway(stack=make_project(tmp_path / "project", PROTECTED), iam_config=tmp_path / "iam.json")
    gw.idp = idp
    gw.base = f"http://127.0.0.1:{gw.port}"
    return gw


def exchange(gw, sub: str, **extra: str) -> requests.Response:
    data = {"grant_type": EXCHANGE, "subject_token": gw.idp.mint({"sub": sub}), "subject_token_type": ID_TOKEN, **extra}
    return requests.post(f"{gw.base}/function/iam-token/oauth/token", data=data, timeout=10)


def invoke(gw, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{gw.base}/function/echo.staging/hello", data=b"hi", headers=headers, timeout=10)


def test_function_token_opens_the_function(bundle) -> None:
    token = exchange(bundle, "invoker", scope="function").json()["access_token"]
    r = invoke(bundle, token)
    assert r.status_code == 200 and r.json()["path"] == "/hello"
    audience = exchange(bundle, "invoker", scope="function", audience="staging:echo").json()["access_token"]
    assert invoke(bundle, audience).status_code == 200


@pytest.mark.parametrize(
    ("case", "status", "text"),
    [
        ("no token", 401, "Unauthorized: a function token is required"),
        ("garbage", 401, "Unauthorized: malformed token"),
        ("api token", 403, "insufficient permissions"),
        ("another function only", 403, "insufficient permissions"),
        ("audience elsewhere", 403, "insufficient permissions"),
        ("explicit deny", 403, "insufficient permissions"),
    ],
)
def test_refusals(bundle, case: str, status: int, text: str) -> None:
    token = {
        "no token": lambda: None,
        "garbage": lambda: "not-a-jwt",
        "api token": lambda: exchange(bundle, "invoker").json()["access_token"],
        "another function only": lambda: exchange(bundle, "other", scope="function").json()["access_token"],
        "audience elsewhere": lambda: exchange(bundle, "invoker", scope="function", audience="staging:else").json()[
            "access_token"
        ],
        "explicit deny": lambda: exchange(bundle, "denied", scope="function", audience="staging:other").json()[
            "access_token"
        ],
    }[case]()
    r = invoke(bundle, token)
    assert r.status_code == status
    assert r.text.strip() == text
    if status == 401:
        assert r.headers["WWW-Authenticate"] == "Bearer realm=IAM function invoke"


def test_a_deny_never_hides_inside_a_permission_pattern(bundle) -> None:
    """The real of-watchdog ignores `function.deny`: a token may not list `staging:*` when `*:echo` is denied."""
    r = exchange(bundle, "denied", scope="function")
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_target"
    assert "audience=<namespace>:<function>" in r.json()["error_description"]
    assert exchange(bundle, "denied", scope="function", audience="staging:echo").status_code == 400
    token = exchange(bundle, "denied", scope="function", audience="staging:other").json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["function"]["permissions"] == ["staging:other"]
