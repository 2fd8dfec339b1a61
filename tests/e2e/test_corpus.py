"""Replay the adversarial corpus (tests/corpus/) against the bundle behind the local gateway."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from conftest import ROOT, free_port, start_gateway
from gateway_standin import GatewayStandIn
from idp_server import OidcProvider, private_jwk

from openfaas_iam.errors import ConfigError
from openfaas_iam.model.loading import load_paths

CORPUS = ROOT / "tests" / "corpus"
TOKENS = json.loads((CORPUS / "tokens.json").read_text())
REQUESTS = json.loads((CORPUS / "requests.json").read_text())
DOCUMENTS = json.loads((CORPUS / "iam_documents.json").read_text())
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
ATTACKER = private_jwk("RS256", kid="attacker")


def b64(data: bytes | str) -> str:
    return base64.urlsafe_b64encode(data.encode() if isinstance(data, str) else data).rstrip(b"=").decode()


class Bundle:
    def __init__(self, idp: OidcProvider, gw: Any, standin: GatewayStandIn) -> None:
        self.idp, self.gw, self.standin = idp, gw, standin
        self.base = f"http://127.0.0.1:{gw.port}"
        self.kid_rs = next(k["kid"] for k in idp.keys if k["alg"] == "RS256")
        self.kid_es = next(k["kid"] for k in idp.keys if k["alg"] == "ES256")
        self.tokens: dict[str, str] = {}

    def fill(self, text: str) -> str:
        return (
            text.replace("{iss}", self.idp.issuer)
            .replace("{kid_rs}", self.kid_rs)
            .replace("{kid_es}", self.kid_es)
            .replace("{issuer}", f"{self.base}/function/iam-discovery")
            .replace("{deep_payload}", b64("[" * 5000 + "]" * 5000))
            .replace(
                "{crlf_kid_token}",
                f"{b64(json.dumps({'alg': 'ES256', 'kid': 'x' + chr(13) + chr(10) + 'X-Evil: 1'}))}.{b64('{}')}.c2ln",
            )
        )

    def exchange(self, token: str, **extra: str) -> requests.Response:
        data = {"grant_type": EXCHANGE, "subject_token": token, "subject_token_type": ID_TOKEN, **extra}
        return requests.post(f"{self.base}/function/iam-token/oauth/token", data=data, timeout=15)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundle]:
    tmp = tmp_path_factory.mktemp("corpus")
    idp = OidcProvider(free_port()).start()
    docs = [
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "JwtIssuer",
            "metadata": {"name": "corpus-idp"},
            "spec": {"iss": idp.issuer, "aud": ["https://gateway.test"]},
        },
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "Policy",
            "metadata": {"name": "dev"},
            "spec": {"statement": [{"sid": "rw", "effect": "Allow", "action": ["Function:*"], "resource": ["dev:*"]}]},
        },
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "Role",
            "metadata": {"name": "alice"},
            "spec": {"policy": ["dev"], "principal": {"jwt:sub": ["alice"]}},
        },
    ]
    (tmp / "iam.json").write_text(json.dumps(docs))
    secrets = tmp / "state" / "secrets" / "basic-auth"
    standin = GatewayStandIn(
        lambda: ((secrets / "basic-auth-user").read_text(), (secrets / "basic-auth-password").read_text())
    ).start()
    gw = start_gateway(
        tmp, iam_config=tmp / "iam.json", env={"GATEWAY_URL": standin.url}, function_env={"leeway_seconds": "30"}
    )
    b = Bundle(idp, gw, standin)
    b.tokens["idp"] = idp.mint({"sub": "alice"}, ttl=3600)
    b.tokens["api"] = b.exchange(b.tokens["idp"]).json()["access_token"]
    b.tokens["function"] = b.exchange(b.tokens["api"], scope="function").json()["access_token"]
    try:
        yield b
    finally:
        gw.stop()
        standin.stop()
        idp.stop()


def _value(v: Any, now: int) -> Any:
    if isinstance(v, str) and v.startswith("now"):
        return now + int(v[3:] or 0)
    if isinstance(v, str) and v.startswith("repeat:"):
        _, text, times = v.split(":")
        return text * int(times)
    return v


def build_token(b: Bundle, case: dict[str, Any]) -> str:
    if "raw" in case:
        return b.fill(case["raw"])
    now = int(time.time())
    sign = case.get("sign", "idp")
    alg = "ES256" if sign == "idp-es" else "RS256"
    header: dict[str, Any] = {"alg": alg, "typ": "JWT", "kid": b.kid_es if sign == "idp-es" else b.kid_rs}
    claims: dict[str, Any] = {
        "iss": b.idp.issuer,
        "aud": "https://gateway.test",
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
    }
    for target, extra in ((header, case.get("header", {})), (claims, case.get("claims", {}))):
        for k, v in extra.items():
            if v is None:
                target.pop(k, None)
            else:
                target[k] = json.loads(b.fill(json.dumps(_value(v, now))))
    signing_input = f"{b64(json.dumps(header))}.{b64(json.dumps(claims))}"
    if sign == "none":
        return signing_input + "."
    if sign == "hmac-public":
        from cryptography.hazmat.primitives import serialization

        pub = jwt.PyJWK({k: v for k, v in b.idp.keys[0].items() if k in ("kty", "n", "e")}).key
        pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"
    key = (
        ATTACKER
        if sign == "attacker"
        else next(k for k in b.idp.keys if k["kid"] == (b.kid_es if sign == "idp-es" else b.kid_rs))
    )
    signature = jwt.algorithms.get_default_algorithms()[alg].sign(signing_input.encode(), jwt.PyJWK(key).key)
    token = f"{signing_input}.{b64(signature)}"
    h, p, s = token.split(".")
    transform = case.get("transform")
    if transform == "tamper-payload":
        token = f"{h}.{b64(json.dumps({**claims, 'sub': 'admin'}))}.{s}"
    elif transform == "tamper-signature":
        token = f"{h}.{p}.{s[:-6]}{'AAAAAA' if not s.endswith('AAAAAA') else 'BBBBBB'}"
    elif transform == "strip-signature":
        token = f"{h}.{p}."
    elif transform == "truncate":
        token = f"{h}.{p}"
    elif transform == "pad-segments":
        token = f"{h}==.{p}.{s}"
    return token


@pytest.mark.parametrize("case", TOKENS, ids=[c["name"] for c in TOKENS])
def test_token_corpus(bundle: Bundle, case: dict[str, Any]) -> None:
    status, error, description = case["expect"]
    resp = bundle.exchange(build_token(bundle, case))
    assert resp.status_code == status, resp.text
    if error:
        assert resp.json() == {"error": error, "error_description": bundle.fill(description)}


def raw_request(
    b: Bundle, case: dict[str, Any], headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    target = f"/function/{case['function']}{case['path']}"
    if case.get("absolute"):
        target = f"http://127.0.0.1:{b.gw.port}{target}"
    head = f"{case['method']} {target} HTTP/1.1\r\nHost: 127.0.0.1:{b.gw.port}\r\nConnection: close\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + case.get("raw_headers", "") + "\r\n"
    with socket.create_connection(("127.0.0.1", b.gw.port), timeout=15) as sock:
        sock.sendall(head.encode("latin-1") + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    got = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        got[k.strip()] = v.strip()
    return status, got, payload


@pytest.mark.parametrize("case", REQUESTS, ids=[c["name"] for c in REQUESTS])
def test_request_corpus(bundle: Bundle, case: dict[str, Any]) -> None:
    headers = {k: bundle.fill(v) for k, v in case.get("headers", {}).items()}
    auth = case.get("auth")
    if auth:
        headers["Authorization"] = f"Bearer {bundle.tokens[auth]}"
    if "body_b64" in case:
        body = base64.b64decode(case["body_b64"])
    elif "body_repeat" in case:
        body = (case["body_repeat"][0] * case["body_repeat"][1]).encode()
    elif "body_json_repeat" in case:
        body = json.dumps([case["body_json_repeat"][0]] * case["body_json_repeat"][1]).encode()
    else:
        body = case.get("body", "").encode()
    before = len(bundle.standin.requests)
    if case.get("raw"):
        status, got_headers, payload = raw_request(bundle, case, headers, body)
    else:
        resp = requests.request(
            case["method"],
            f"{bundle.base}/function/{case['function']}{case['path']}",
            headers=headers,
            data=body,
            timeout=15,
        )
        status, got_headers, payload = resp.status_code, dict(resp.headers), resp.content
    if "expect_any" in case:
        assert status in case["expect_any"]
    else:
        expected_status, expected_error = case["expect"]
        assert status == expected_status, payload[:300]
        if expected_error:
            assert json.loads(payload)["error"] == expected_error
    assert status < 500
    for name in case.get("absent_headers", []):
        assert name.lower() not in {k.lower() for k in got_headers}
    for text in case.get("absent_text", []):
        assert text.encode() not in payload
    if case.get("never_forwarded"):
        assert bundle.standin.requests[before:] == []


@pytest.mark.parametrize("case", DOCUMENTS, ids=[c["name"] for c in DOCUMENTS])
def test_iam_document_corpus(case: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "doc.yaml"
    if "bytes_b64" in case:
        path.write_bytes(base64.b64decode(case["bytes_b64"]))
    elif "text_repeat" in case:
        path.write_text(case["text_repeat"][0] * case["text_repeat"][1])
    else:
        path.write_text(case["text"].replace("{deep_json}", "[" * 100000 + "]" * 100000))
    with pytest.raises(ConfigError) as err:
        load_paths([path])
    assert case["expect"] in str(err.value)


def test_corpus_is_large_enough() -> None:
    assert len(TOKENS) + len(REQUESTS) + len(DOCUMENTS) >= 60
