"""The whole bundle on loopback for load and fuzzing: real IdP, local gateway, gateway stand-in.

Used by the bounded fuzz test and by `make fuzz` / `make soak`, which run far longer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from conftest import free_port, start_gateway
from gateway_standin import GatewayStandIn
from idp_server import OidcProvider

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


def documents(iss: str) -> list[dict[str, Any]]:
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


@dataclass
class Running:
    idp: OidcProvider
    gw: Any
    standin: GatewayStandIn
    tokens: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.gw.port}"

    def stop(self) -> None:
        self.gw.stop()
        self.standin.stop()
        self.idp.stop()


def start_bundle(
    tmp: Path, *, env: dict[str, str] | None = None, function_env: dict[str, str] | None = None
) -> Running:
    idp = OidcProvider(free_port()).start()
    (tmp / "iam.json").write_text(json.dumps(documents(idp.issuer)))
    secrets = tmp / "state" / "secrets" / "basic-auth"
    standin = GatewayStandIn(
        lambda: ((secrets / "basic-auth-user").read_text(), (secrets / "basic-auth-password").read_text())
    ).start()
    standin.log_delay = 0.0
    gw = start_gateway(
        tmp,
        iam_config=tmp / "iam.json",
        env={"GATEWAY_URL": standin.url, **(env or {})},
        function_env={"fetch_timeout": "2", **(function_env or {})},
        echo=False,
    )
    base = f"http://127.0.0.1:{gw.port}"
    idp_token = idp.mint({"sub": "fuzzer"}, ttl=6 * 3600)
    data = {"grant_type": EXCHANGE, "subject_token": idp_token, "subject_token_type": ID_TOKEN}
    api = requests.post(f"{base}/function/iam-token/oauth/token", data=data, timeout=10).json()["access_token"]
    fn = requests.post(
        f"{base}/function/iam-token/oauth/token", data={**data, "subject_token": api, "scope": "function"}, timeout=10
    ).json()["access_token"]
    return Running(idp, gw, standin, {"idp": idp_token, "api": api, "function": fn})
