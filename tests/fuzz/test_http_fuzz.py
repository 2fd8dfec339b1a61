"""Bounded HTTP fuzzing of every function behind the local gateway: never a 5xx, never a hang."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import ROOT, free_port
from fuzz.http_cases import random_case, send
from gateway_standin import GatewayStandIn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from idp_server import OidcProvider

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def fuzz_documents(iss: str) -> list[dict[str, Any]]:
    def obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "iam.openfaas.com/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}

    return [
        obj("JwtIssuer", "idp", {"iss": iss, "aud": ["https://gateway.test"]}),
        obj(
            "Policy",
            "dev-rw",
            {
                "statement": [
                    {"sid": "rw", "effect": "Allow", "action": ["Function:*", "Secret:*"], "resource": ["dev:*"]},
                    {"sid": "no-prod", "effect": "Deny", "action": ["*"], "resource": ["prod:*"]},
                    {"sid": "info", "effect": "Allow", "action": ["System:Info"], "resource": ["*"]},
                ]
            },
        ),
        obj("Role", "fuzzer", {"policy": ["dev-rw"], "principal": {"jwt:sub": ["fuzzer"]}}),
    ]


class Bundle:
    def __init__(self, gw: Any, tokens: dict[str, str]) -> None:
        self.gw, self.tokens = gw, tokens
        self.base = f"http://127.0.0.1:{gw.port}"


def start_bundle(tmp, idp: OidcProvider, extra_env: dict[str, str] | None = None):
    from localgw.main import LocalGateway

    (tmp / "iam.json").write_text(json.dumps(fuzz_documents(idp.issuer)))
    secrets = tmp / "state" / "secrets" / "basic-auth"
    standin = GatewayStandIn(
        lambda: ((secrets / "basic-auth-user").read_text(), (secrets / "basic-auth-password").read_text())
    ).start()
    gw = LocalGateway(
        ROOT / "stack.yml",
        port=free_port(),
        iam_config=tmp / "iam.json",
        state_dir=tmp / "state",
        build_dir=tmp / "build",
        env={"GATEWAY_URL": standin.url, **(extra_env or {})},
        function_env={"fetch_timeout": "2"},
        cron=False,
        template_root=ROOT / "template",
    )
    gw.start()
    base = f"http://127.0.0.1:{gw.port}"
    idp_token = idp.mint({"sub": "fuzzer"}, ttl=3600)
    data = {
        "grant_type": EXCHANGE,
        "subject_token": idp_token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
    }
    api = requests.post(f"{base}/function/iam-token/oauth/token", data=data, timeout=10).json()["access_token"]
    fn = requests.post(
        f"{base}/function/iam-token/oauth/token", data={**data, "subject_token": api, "scope": "function"}, timeout=10
    ).json()["access_token"]
    return gw, standin, {"idp": idp_token, "api": api, "function": fn}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundle]:
    tmp = tmp_path_factory.mktemp("fuzz")
    idp = OidcProvider(free_port()).start()
    gw, standin, tokens = start_bundle(tmp, idp)
    try:
        yield Bundle(gw, tokens)
    finally:
        gw.stop()
        standin.stop()
        idp.stop()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.randoms(use_true_random=False))
def test_no_endpoint_ever_answers_5xx(bundle: Bundle, rng: random.Random) -> None:
    case = random_case(rng, bundle.tokens)
    resp = send(requests, bundle.base, case)
    assert resp.status_code < 500, f"{case.method} {case.function}{case.path} -> {resp.status_code}: {resp.text[:300]}"
    if case.check is not None:
        decision = resp.json()
        ns = case.check["resource"].split(":")[0]
        if decision["allowed"]:
            assert ns == "dev" or (case.check["resource"] == "*" and case.check["action"] == "System:Info")
