"""Token exchange through the local gateway against the real OpenID Provider and real Redis."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from conftest import free_port, start_gateway
from idp_server import OidcProvider, client_credentials, private_jwk, scripted_login
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

GW_AUD = "https://gateway.test"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


def iam_documents(iss: str) -> list[dict[str, Any]]:
    def obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": "openfaas"},
            "spec": spec,
        }

    def allow(sid: str, actions: list[str], resources: list[str], effect: str = "Allow") -> dict[str, Any]:
        return {"sid": sid, "effect": effect, "action": actions, "resource": resources}

    return [
        obj("JwtIssuer", "test-idp", {"iss": iss, "aud": ["openfaas", GW_AUD], "tokenExpiry": "30m"}),
        obj("JwtIssuer", "untrusted-looking", {"iss": "https://other.example.com", "aud": [GW_AUD]}),
        obj("Policy", "staging-ro", {"statement": [allow("ro", ["Function:List", "Function:Get"], ["staging:*"])]}),
        obj("Policy", "staging-rw", {"statement": [allow("rw", ["Function:*", "Secret:*"], ["staging:*"])]}),
        obj(
            "Policy",
            "invoke",
            {
                "statement": [
                    allow("invoke-staging", ["Function:Invoke"], ["staging:*", "dev-${jwt:preferred_username}:*"]),
                    allow("not-billing", ["Function:Invoke"], ["staging:billing"], effect="Deny"),
                ]
            },
        ),
        obj(
            "Role",
            "humans",
            {
                "policy": ["staging-ro", "invoke"],
                "condition": {"StringEqual": {"jwt:iss": [iss]}, "ForAnyValue:StringEqual": {"jwt:groups": ["dev"]}},
            },
        ),
        obj(
            "Role",
            "ci-machine",
            {
                "policy": ["staging-rw"],
                "principal": {"jwt:sub": ["ci-machine"]},
                "condition": {"StringEqual": {"jwt:iss": [iss]}},
            },
        ),
        obj(
            "Role",
            "github",
            {
                "policy": ["staging-rw"],
                "condition": {
                    "StringEqual": {"jwt:iss": [iss], "jwt:repository_owner": ["example-org"]},
                    "StringLike": {"jwt:ref": ["refs/heads/*"]},
                },
            },
        ),
        obj(
            "Role",
            "gitlab",
            {
                "policy": ["staging-ro"],
                "condition": {"StringEqual": {"jwt:iss": [iss], "jwt:project_path": ["group/project"]}},
            },
        ),
        obj(
            "Role",
            "kubernetes",
            {
                "policy": ["staging-rw"],
                "condition": {
                    "StringEqual": {"jwt:iss": [iss], "jwt:/kubernetes.io/namespace": ["tools"]},
                    "StringLike": {"jwt:sub": ["system:serviceaccount:tools:*"]},
                },
            },
        ),
    ]


class Bundle:
    def __init__(self, idp: OidcProvider, gw: Any) -> None:
        self.idp = idp
        self.gw = gw
        self.base = f"http://127.0.0.1:{gw.port}"
        self.issuer = f"{self.base}/function/iam-discovery"
        self.token_url = f"{self.base}/function/iam-token/oauth/token"

    def exchange(self, subject: str, **extra: Any) -> requests.Response:
        data = {"grant_type": EXCHANGE, "subject_token": subject, "subject_token_type": ID_TOKEN, **extra}
        return requests.post(self.token_url, data=data, timeout=15)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bundle]:
    tmp = tmp_path_factory.mktemp("exchange")
    idp = OidcProvider(free_port()).start(
        accounts={
            "alice": {"email": "alice@example.com", "groups": ["dev"], "preferred_username": "alice", "name": "Alice"}
        }
    )
    config = tmp / "iam.json"
    config.write_text(json.dumps(iam_documents(idp.issuer)))
    gw = start_gateway(tmp, iam_config=config, function_env={"leeway_seconds": "5"})
    try:
        yield Bundle(idp, gw)
    finally:
        gw.stop()
        idp.stop()


def third_party_verify(bundle: Bundle, token: str) -> dict[str, Any]:
    """joserfc, starting from nothing but the token's iss."""
    iss = jwt.decode(token, options={"verify_signature": False})["iss"]
    meta = requests.get(f"{iss}/.well-known/openid-configuration", timeout=10).json()
    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    decoded = jose_jwt.decode(token, keys, algorithms=["ES256"])
    jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": iss}, aud={"essential": True, "value": iss}, exp={"essential": True}
    ).validate(decoded.claims)
    assert decoded.header["alg"] == "ES256" and decoded.header["typ"] == "JWT" and decoded.header["kid"]
    return decoded.claims


def check_api_token(
    bundle: Bundle, resp: requests.Response, subject: dict[str, Any], policies: list[str]
) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["issued_token_type"] == ID_TOKEN
    assert body["expires_in"] == 1800
    claims = third_party_verify(bundle, body["access_token"])
    assert claims["iss"] == claims["aud"] == bundle.issuer
    assert claims["sub"] == f"fed:{subject['sub']}"
    assert claims["fed:iss"] == subject["iss"]
    assert claims["policy"] == policies
    assert claims["exp"] - claims["iat"] == 1800 and abs(claims["iat"] - time.time()) < 30
    assert claims["jti"] and claims["jti"] != subject.get("jti")
    for k, v in subject.items():
        if k not in ("iss", "aud", "sub", "iat", "exp", "nbf", "jti"):
            assert claims[k] == v, k
    return claims


def test_human_user_id_token_from_a_real_login(bundle: Bundle) -> None:
    tokens = scripted_login(bundle.idp, login="alice")
    subject = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert subject["nonce"] == tokens["nonce"]
    claims = check_api_token(bundle, bundle.exchange(tokens["id_token"]), subject, ["staging-ro", "invoke"])
    assert claims["groups"] == ["dev"] and claims["email"] == "alice@example.com"


def test_machine_user_jwt_access_token(bundle: Bundle) -> None:
    access = client_credentials(bundle.idp, GW_AUD)
    assert jwt.get_unverified_header(access)["typ"] == "at+jwt"
    subject = jwt.decode(access, options={"verify_signature": False})
    resp = bundle.exchange(access, subject_token_type=ACCESS_TOKEN)
    claims = check_api_token(bundle, resp, subject, ["staging-rw"])
    assert claims["client_id"] == "ci-machine" and claims["scope"] == "deploy"


GITHUB = {
    "sub": "repo:example-org/functions:ref:refs/heads/main",
    "repository": "example-org/functions",
    "repository_owner": "example-org",
    "repository_owner_id": "1234",
    "ref": "refs/heads/main",
    "ref_type": "branch",
    "actor": "octocat",
    "sha": "0123456789abcdef0123456789abcdef01234567",
    "workflow": "deploy",
    "job_workflow_ref": "example-org/functions/.github/workflows/deploy.yml@refs/heads/main",
    "event_name": "push",
    "runner_environment": "github-hosted",
}
GITLAB = {
    "sub": "project_path:group/project:ref_type:branch:ref:main",
    "namespace_id": "72",
    "namespace_path": "group",
    "project_id": "20",
    "project_path": "group/project",
    "user_login": "alice",
    "ref": "main",
    "ref_type": "branch",
    "ref_protected": "true",
    "pipeline_source": "push",
}
KUBERNETES = {
    "sub": "system:serviceaccount:tools:release-bot",
    "kubernetes.io": {
        "namespace": "tools",
        "pod": {"name": "release-bot-7d9f", "uid": "1f2e"},
        "serviceaccount": {"name": "release-bot", "uid": "9a8b"},
    },
}


@pytest.mark.parametrize(
    ("claims", "policies"),
    [(GITHUB, ["staging-rw"]), (GITLAB, ["staging-ro"]), (KUBERNETES, ["staging-rw"])],
    ids=["github", "gitlab", "kubernetes"],
)
def test_federated_ci_and_workload_tokens(bundle: Bundle, claims: dict[str, Any], policies: list[str]) -> None:
    token = bundle.idp.mint(claims)
    subject = jwt.decode(token, options={"verify_signature": False})
    check_api_token(
        bundle, bundle.exchange(token, subject_token_type="urn:ietf:params:oauth:token-type:jwt"), subject, policies
    )


def test_function_token(bundle: Bundle) -> None:
    human = bundle.idp.mint({"sub": "alice", "groups": ["dev"], "preferred_username": "alice"}, ttl=300)
    resp = bundle.exchange(human, scope="function", audience=["staging:echo", "dev-alice:hello"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["scope"] == "function" and body["token_type"] == "Bearer"
    claims = third_party_verify(bundle, body["access_token"])
    assert claims["sub"] == "fed:alice"
    # With an audience the permissions are exactly it: nothing a verifier that ignores `deny` could misread.
    assert claims["function"] == {
        "permissions": ["staging:echo", "dev-alice:hello"],
        "audience": ["staging:echo", "dev-alice:hello"],
        "deny": ["staging:billing"],
    }
    assert claims["exp"] <= jwt.decode(human, options={"verify_signature": False})["exp"], "never outlives its subject"
    assert "policy" not in claims and "groups" not in claims
    # Without an audience, a pattern a Deny overlaps (staging:* vs staging:billing) is left out.
    narrowed = third_party_verify(bundle, bundle.exchange(human, scope="function").json()["access_token"])
    assert narrowed["function"]["permissions"] == ["dev-alice:*"]
    # An API token is a valid subject for a function token too.
    api = bundle.exchange(human).json()["access_token"]
    resp = bundle.exchange(api, scope="function", audience="staging:echo")
    assert resp.status_code == 200, resp.text
    fn_claims = jwt.decode(resp.json()["access_token"], options={"verify_signature": False})
    assert (
        fn_claims["sub"] == "fed:alice"
        and fn_claims["exp"] <= jwt.decode(api, options={"verify_signature": False})["exp"]
    )


def test_exchanges_are_audited_without_tokens(bundle: Bundle) -> None:
    token = bundle.idp.mint({"sub": "audit-probe-" + uuid.uuid4().hex[:6], "groups": ["dev"]})
    bundle.exchange(token)
    bundle.exchange(bundle.idp.mint({"sub": "nobody-audited"}))
    time.sleep(0.3)
    lines = [
        json.loads(line)
        for line in (bundle.gw.state_dir / "logs" / "iam-token.log").read_text().splitlines()
        if line.startswith("{")
    ]
    granted = [e for e in lines if e.get("event") == "token_exchange" and e["outcome"] == "granted"]
    refused = [e for e in lines if e.get("event") == "token_exchange" and e["outcome"] == "refused"]
    assert any(
        e["subject"].startswith("fed:audit-probe-") and e["policies"] == ["staging-ro", "invoke"] for e in granted
    )
    assert any(e["reason"] == "invalid_request: No policies found for subject: nobody-audited" for e in refused)
    # X-Forwarded-For as the gateway sets it (the caller's ip:port), recorded as the caller's claim.
    assert all(
        e["client"].startswith("127.0.0.1:") and e["client_verified"] is False and e["time"].endswith("Z")
        for e in granted + refused
    )
    log = (bundle.gw.state_dir / "logs" / "iam-token.log").read_text()
    assert token not in log and token.split(".")[2] not in log


# -- the adversarial table ------------------------------------------------------------------


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(
    bundle: Bundle,
    claims: dict[str, Any] | None = None,
    *,
    key: dict[str, str] | None = None,
    headers: dict[str, Any] | None = None,
    alg: str = "RS256",
) -> str:
    """A token signed with the IdP's own private key (or another), with any claims and header we like.

    Signed by hand: PyJWT's encoder refuses some of the malformed values the table needs.
    """
    now = int(time.time())
    body = {"iss": bundle.idp.issuer, "aud": GW_AUD, "sub": "alice", "groups": ["dev"], "iat": now, "exp": now + 300}
    body.update(claims or {})
    body = {k: v for k, v in body.items() if v is not None}
    jwk = key or next(k for k in bundle.idp.keys if k["alg"] == alg)
    header = {"alg": alg, "typ": "JWT", "kid": jwk["kid"], **(headers or {})}
    signing_input = f"{b64(json.dumps(header))}.{b64(json.dumps(body))}".encode()
    algorithm = jwt.algorithms.get_default_algorithms()[alg]
    signature = algorithm.sign(signing_input, jwt.PyJWK(jwk).key)
    return f"{signing_input.decode()}.{b64(signature)}"


def rs_public_pem(bundle: Bundle) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = jwt.PyJWK({k: v for k, v in bundle.idp.keys[0].items() if k in ("kty", "n", "e", "kid")}).key
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def hmac_with_public_key(bundle: Bundle) -> str:
    import hashlib
    import hmac

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": bundle.idp.keys[0]["kid"]}))
    now = int(time.time())
    payload = b64(json.dumps({"iss": bundle.idp.issuer, "aud": GW_AUD, "sub": "alice", "exp": now + 300, "iat": now}))
    sig = hmac.new(rs_public_pem(bundle), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(sig)}"


def unsigned(bundle: Bundle) -> str:
    now = int(time.time())
    return f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}))}.{b64(json.dumps({'iss': bundle.idp.issuer, 'aud': GW_AUD, 'sub': 'alice', 'exp': now + 300}))}."


def tamper_payload(token: str) -> str:
    h, p, s = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    claims["sub"] = "admin"
    return f"{h}.{b64(json.dumps(claims))}.{s}"


def tamper_signature(token: str) -> str:
    h, p, s = token.split(".")
    return f"{h}.{p}.{s[:-4]}{'AAAA' if not s.endswith('AAAA') else 'BBBB'}"


ATTACKER = private_jwk("RS256", kid="attacker-key")
ATTACKER_ES = private_jwk("ES256", kid="attacker-es")
FORM = "application/x-www-form-urlencoded"
SUBJ_BAD = "invalid subject token: "

# (id, builder(bundle) -> (form data | raw body, extra request options), status, error, description)
Case = tuple[str, Any, int, str, str]
CASES: list[Case] = [
    (
        "alg none",
        lambda b: {"subject_token": unsigned(b)},
        400,
        "invalid_request",
        SUBJ_BAD + "unsigned tokens (alg none) are not accepted",
    ),
    (
        "hmac with the rsa public key",
        lambda b: {"subject_token": hmac_with_public_key(b)},
        400,
        "invalid_request",
        SUBJ_BAD
        + "algorithm HS256 is not accepted; use one of ES256, ES384, ES512, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512",
    ),
    (
        "unknown kid",
        lambda b: {"subject_token": forge(b, key=ATTACKER)},
        400,
        "invalid_request",
        SUBJ_BAD + "kid 'attacker-key' is not in the JWKS of issuer {iss}",
    ),
    (
        "jku pointing elsewhere",
        lambda b: {"subject_token": forge(b, key=ATTACKER, headers={"jku": "https://evil.example.com/jwks"})},
        400,
        "invalid_request",
        SUBJ_BAD + "kid 'attacker-key' is not in the JWKS of issuer {iss}",
    ),
    (
        "x5u pointing elsewhere",
        lambda b: {"subject_token": forge(b, key=ATTACKER, headers={"x5u": "https://evil.example.com/cert"})},
        400,
        "invalid_request",
        SUBJ_BAD + "kid 'attacker-key' is not in the JWKS of issuer {iss}",
    ),
    (
        "embedded jwk with the idp's kid",
        lambda b: {
            "subject_token": forge(
                b,
                key={**ATTACKER, "kid": b.idp.keys[0]["kid"]},
                headers={"jwk": {k: v for k, v in ATTACKER.items() if k in ("kty", "n", "e")}},
            )
        },
        400,
        "invalid_request",
        SUBJ_BAD + "the token's signature is invalid",
    ),
    (
        "kid of another algorithm",
        lambda b: {"subject_token": forge(b, key={**ATTACKER_ES, "kid": b.idp.keys[0]["kid"]}, alg="ES256")},
        400,
        "invalid_request",
        SUBJ_BAD + "algorithm ES256 does not match key '{kid0}' of issuer {iss} (RS256)",
    ),
    (
        "untrusted issuer",
        lambda b: {"subject_token": forge(b, {"iss": "https://evil.example.com"})},
        400,
        "invalid_request",
        SUBJ_BAD
        + "issuer https://evil.example.com is not trusted: no JwtIssuer has spec.iss 'https://evil.example.com'",
    ),
    (
        "issuer differing by a slash",
        lambda b: {"subject_token": forge(b, {"iss": b.idp.issuer + "/"})},
        400,
        "invalid_request",
        SUBJ_BAD + "issuer {iss}/ is not trusted: no JwtIssuer has spec.iss '{iss}/'",
    ),
    (
        "no issuer",
        lambda b: {"subject_token": forge(b, {"iss": None})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token has no iss claim",
    ),
    (
        "issuer not a string",
        lambda b: {"subject_token": forge(b, {"iss": 42})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token has no iss claim",
    ),
    (
        "wrong audience",
        lambda b: {"subject_token": forge(b, {"aud": "https://elsewhere.example.com"})},
        400,
        "invalid_request",
        SUBJ_BAD
        + "audience 'https://elsewhere.example.com' is not accepted; JwtIssuer/test-idp accepts ['openfaas', 'https://gateway.test']",
    ),
    (
        "audience list without ours",
        lambda b: {"subject_token": forge(b, {"aud": ["a", "b"]})},
        400,
        "invalid_request",
        SUBJ_BAD
        + "audience ['a', 'b'] is not accepted; JwtIssuer/test-idp accepts ['openfaas', 'https://gateway.test']",
    ),
    (
        "no audience",
        lambda b: {"subject_token": forge(b, {"aud": None})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token has no aud claim",
    ),
    (
        "expired",
        lambda b: {"subject_token": forge(b, {"exp": int(time.time()) - 60, "iat": int(time.time()) - 600})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token has expired (exp)",
    ),
    (
        "not yet valid (nbf)",
        lambda b: {"subject_token": forge(b, {"nbf": int(time.time()) + 600})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token is not yet valid (nbf); check the clocks of the IdP and this server",
    ),
    (
        "issued in the future (iat)",
        lambda b: {"subject_token": forge(b, {"iat": int(time.time()) + 600})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token is not yet valid (iat); check the clocks of the IdP and this server",
    ),
    (
        "no exp",
        lambda b: {"subject_token": forge(b, {"exp": None})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token has no exp claim",
    ),
    (
        "exp not a number",
        lambda b: {"subject_token": forge(b, {"exp": "tomorrow"})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token's exp claim is not a number",
    ),
    (
        "no sub",
        lambda b: {"subject_token": forge(b, {"sub": None})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token has no sub claim",
    ),
    (
        "sub not a string",
        lambda b: {"subject_token": forge(b, {"sub": 7})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token's sub claim is not a non-empty string",
    ),
    (
        "tampered payload",
        lambda b: {"subject_token": tamper_payload(forge(b))},
        400,
        "invalid_request",
        SUBJ_BAD + "the token's signature is invalid",
    ),
    (
        "tampered signature",
        lambda b: {"subject_token": tamper_signature(forge(b))},
        400,
        "invalid_request",
        SUBJ_BAD + "the token's signature is invalid",
    ),
    (
        "truncated",
        lambda b: {"subject_token": ".".join(forge(b).split(".")[:2])},
        400,
        "invalid_request",
        SUBJ_BAD + "the token is not a JWT (expected three dot-separated parts)",
    ),
    (
        "oversize token",
        lambda b: {"subject_token": forge(b, {"pad": "x" * 20000})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token is larger than 16384 bytes",
    ),
    (
        "non-json header",
        lambda b: {"subject_token": f"{b64('not json')}.{b64('{}')}.c2ln"},
        400,
        "invalid_request",
        SUBJ_BAD + "the token's header is not base64url-encoded JSON",
    ),
    (
        "header a json array",
        lambda b: {"subject_token": f"{b64('[1]')}.{b64('{}')}.c2ln"},
        400,
        "invalid_request",
        SUBJ_BAD + "the token's header is not a JSON object",
    ),
    (
        "payload not base64",
        lambda b: {"subject_token": f"{b64(json.dumps({'alg': 'RS256'}))}.%%%.c2ln"},
        400,
        "invalid_request",
        SUBJ_BAD + "the token's payload is not base64url-encoded JSON",
    ),
    (
        "encrypted token (jwe)",
        lambda b: {"subject_token": "a.b.c.d.e"},
        400,
        "invalid_request",
        SUBJ_BAD + "encrypted tokens (JWE) are not accepted; send a signed JWT",
    ),
    (
        "crit header",
        lambda b: {"subject_token": forge(b, headers={"crit": ["exp"], "exp": 1})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token has critical header parameters this server does not understand",
    ),
    (
        "kid not a string",
        lambda b: {"subject_token": forge(b, headers={"kid": 5})},
        400,
        "invalid_request",
        SUBJ_BAD + "the token's kid is not a string",
    ),
    (
        "not a jwt at all",
        lambda b: {"subject_token": "hello"},
        400,
        "invalid_request",
        SUBJ_BAD + "the token is not a JWT (expected three dot-separated parts)",
    ),
    ("empty subject token", lambda b: {"subject_token": ""}, 400, "invalid_request", "subject_token is required"),
    ("missing subject token", lambda b: {"subject_token": None}, 400, "invalid_request", "subject_token is required"),
    (
        "missing subject token type",
        lambda b: {"subject_token": forge(b), "subject_token_type": None},
        400,
        "invalid_request",
        "subject_token_type is required",
    ),
    (
        "saml subject token type",
        lambda b: {"subject_token": forge(b), "subject_token_type": "urn:ietf:params:oauth:token-type:saml2"},
        400,
        "invalid_request",
        "subject_token_type urn:ietf:params:oauth:token-type:saml2 is not accepted; use one of urn:ietf:params:oauth:token-type:access_token, "
        "urn:ietf:params:oauth:token-type:id_token, urn:ietf:params:oauth:token-type:jwt",
    ),
    (
        "missing grant type",
        lambda b: {"subject_token": forge(b), "grant_type": None},
        400,
        "invalid_request",
        "grant_type is required",
    ),
    (
        "password grant",
        lambda b: {"subject_token": forge(b), "grant_type": "password"},
        400,
        "unsupported_grant_type",
        "grant_type password is not supported; use urn:ietf:params:oauth:grant-type:token-exchange",
    ),
    (
        "duplicate subject token",
        lambda b: {"subject_token": [forge(b), forge(b)]},
        400,
        "invalid_request",
        "parameter subject_token was given more than once",
    ),
    (
        "actor token",
        lambda b: {"subject_token": forge(b), "actor_token": forge(b), "actor_token_type": ID_TOKEN},
        400,
        "invalid_request",
        "delegation with actor_token is not supported",
    ),
    (
        "actor token type alone",
        lambda b: {"subject_token": forge(b), "actor_token_type": ID_TOKEN},
        400,
        "invalid_request",
        "actor_token_type was given without actor_token (RFC 8693 §2.1)",
    ),
    (
        "refresh token requested",
        lambda b: {"subject_token": forge(b), "requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
        400,
        "invalid_request",
        "requested_token_type urn:ietf:params:oauth:token-type:refresh_token cannot be issued; this server issues JWTs (urn:ietf:params:oauth:token-type:id_token)",
    ),
    (
        "unknown scope",
        lambda b: {"subject_token": forge(b), "scope": "admin"},
        400,
        "invalid_scope",
        "scope 'admin' is not supported; use 'function' for a function token or no scope",
    ),
    (
        "no matching role",
        lambda b: {"subject_token": forge(b, {"sub": "mallory", "groups": ["guests"]})},
        400,
        "invalid_request",
        "No policies found for subject: mallory",
    ),
    (
        "api token for another audience",
        lambda b: {"subject_token": forge(b), "audience": "https://other-gateway.example.com"},
        400,
        "invalid_target",
        "audience https://other-gateway.example.com is not available: an API token's audience is {issuer}",
    ),
    (
        "function audience outside permissions",
        lambda b: {"subject_token": forge(b), "scope": "function", "audience": "prod:payments"},
        400,
        "invalid_target",
        "audience prod:payments is outside the subject's Function:Invoke permissions",
    ),
    (
        "function audience explicitly denied",
        lambda b: {"subject_token": forge(b), "scope": "function", "audience": "staging:billing"},
        400,
        "invalid_target",
        "audience staging:billing is outside the subject's Function:Invoke permissions",
    ),
    (
        "function audience with a wildcard past a deny",
        lambda b: {"subject_token": forge(b), "scope": "function", "audience": "staging:bil*"},
        400,
        "invalid_target",
        "audience 'staging:bil*' has a wildcard; a function token names each function: <namespace>:<function>",
    ),
    (
        "function audience with a single-character wildcard",
        lambda b: {"subject_token": forge(b), "scope": "function", "audience": "staging:billin?"},
        400,
        "invalid_target",
        "audience 'staging:billin?' has a wildcard; a function token names each function: <namespace>:<function>",
    ),
    (
        "function audience with a wildcard namespace",
        lambda b: {"subject_token": forge(b), "scope": "function", "audience": "*:billing"},
        400,
        "invalid_target",
        "audience '*:billing' has a wildcard; a function token names each function: <namespace>:<function>",
    ),
    (
        "function audience malformed",
        lambda b: {"subject_token": forge(b), "scope": "function", "audience": "payments"},
        400,
        "invalid_target",
        "audience 'payments' is not a function; use <namespace>:<function>",
    ),
    (
        "function token for a subject without invoke",
        lambda b: {
            "subject_token": forge(b, {"sub": "gitlab-job", "groups": None, "project_path": "group/project"}),
            "scope": "function",
        },
        400,
        "invalid_request",
        "subject gitlab-job may not invoke any function (no Function:Invoke permission)",
    ),
]
RAW_CASES: list[tuple[str, dict[str, Any], int, str, str]] = [
    (
        "json content type",
        {"json": {"grant_type": EXCHANGE}},
        400,
        "invalid_request",
        "the token request must be application/x-www-form-urlencoded (RFC 6749 §4.1.3)",
    ),
    (
        "invalid utf-8 body",
        {"data": b"grant_type=\xff\xfe", "headers": {"Content-Type": FORM}},
        400,
        "invalid_request",
        "the request body is not valid form-encoded UTF-8",
    ),
    (
        "oversize body",
        {"data": b"subject_token=" + b"x" * 70000, "headers": {"Content-Type": FORM}},
        413,
        "invalid_request",
        "the request body is larger than 65536 bytes",
    ),
    (
        "get instead of post",
        {"method": "GET"},
        405,
        "invalid_request",
        "GET is not allowed at the token endpoint; use POST (RFC 6749 §3.2)",
    ),
]


@pytest.mark.parametrize(("build", "status", "error", "description"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_adversarial_subject_tokens_and_requests(
    bundle: Bundle, build: Any, status: int, error: str, description: str
) -> None:
    data = {"grant_type": EXCHANGE, "subject_token_type": ID_TOKEN}
    data.update(build(bundle))
    data = {k: v for k, v in data.items() if v is not None}
    resp = requests.post(bundle.token_url, data=data, timeout=15)
    expected = description.format(iss=bundle.idp.issuer, kid0=bundle.idp.keys[0]["kid"], issuer=bundle.issuer)
    assert (resp.status_code, resp.json()) == (status, {"error": error, "error_description": expected})
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("options", "status", "error", "description"), [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES]
)
def test_adversarial_http_requests(
    bundle: Bundle, options: dict[str, Any], status: int, error: str, description: str
) -> None:
    options = dict(options)  # a copy: popping from the shared parameter would change the case for a rerun
    method = options.pop("method", "POST")
    resp = requests.request(method, bundle.token_url, timeout=15, **options)
    assert (resp.status_code, resp.json()) == (status, {"error": error, "error_description": description})


def test_function_tokens_cannot_be_exchanged(bundle: Bundle) -> None:
    fn = bundle.exchange(forge(bundle), scope="function", audience="staging:echo").json()["access_token"]
    resp = bundle.exchange(fn, scope="function")
    assert resp.json() == {
        "error": "invalid_request",
        "error_description": "a function token cannot be exchanged; exchange an API token or an IdP token",
    }
    api = bundle.exchange(forge(bundle)).json()["access_token"]
    resp = bundle.exchange(api)
    assert (
        resp.json()["error_description"]
        == "an OpenFaaS token can only be exchanged for a function token (scope=function)"
    )


def test_table_is_large_enough() -> None:
    assert len(CASES) + len(RAW_CASES) >= 40


def test_config_changes_apply_at_the_next_exchange(bundle: Bundle, tmp_path: Path) -> None:
    config = Path(bundle.gw.iam_config)
    original = config.read_text()
    try:
        docs = json.loads(original)
        for d in docs:
            if d["kind"] == "Role" and d["metadata"]["name"] == "humans":
                d["spec"]["policy"] = ["staging-rw"]
        config.write_text(json.dumps(docs))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            claims = jwt.decode(
                bundle.exchange(forge(bundle)).json()["access_token"], options={"verify_signature": False}
            )
            if claims["policy"] == ["staging-rw"]:
                break
            time.sleep(0.2)
        assert claims["policy"] == ["staging-rw"]
    finally:
        config.write_text(original)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_beyond_the_servers_own_limit_is_still_rfc6749_json(bundle: Bundle, chunked: bool) -> None:
    """waitress refuses a body over its limit before the handler runs; the answer is still RFC 6749 JSON."""
    body = b"subject_token=" + b"x" * (2 * 1024 * 1024)
    resp = requests.post(
        bundle.token_url,
        data=iter([body[: len(body) // 2], body[len(body) // 2 :]]) if chunked else body,
        headers={"Content-Type": FORM},
        timeout=30,
    )
    assert resp.status_code == 413, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    doc = resp.json()
    assert doc["error"] == "invalid_request", doc
    assert doc["error_description"].startswith("Request Entity Too Large"), doc


def test_a_report_only_policy_never_reaches_a_function_token(bundle: Bundle) -> None:
    """A function token is enforced at once by every verifier: a Policy still in report-only
    must neither grant it (its Allows grant nothing while it reports) nor narrow it."""
    config = Path(bundle.gw.iam_config)
    original = config.read_text()
    try:
        docs = json.loads(original)
        docs.append(
            {
                "apiVersion": "iam.openfaas.com/v1",
                "kind": "Policy",
                "metadata": {
                    "name": "trial-prod",
                    "namespace": "openfaas",
                    "annotations": {"iam.openfaas.com/report-only": "true"},
                },
                "spec": {
                    "statement": [
                        {"sid": "prod", "action": ["Function:Invoke"], "effect": "Allow", "resource": ["prod:*"]}
                    ]
                },
            }
        )
        for d in docs:
            if d["kind"] == "Role" and d["metadata"]["name"] == "humans":
                d["spec"]["policy"] = [*d["spec"]["policy"], "trial-prod"]
        config.write_text(json.dumps(docs))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            api = jwt.decode(bundle.exchange(forge(bundle)).json()["access_token"], options={"verify_signature": False})
            if "trial-prod" in api["policy"]:
                break
            time.sleep(0.2)
        assert "trial-prod" in api["policy"], "the new configuration was loaded"
        refused = bundle.exchange(forge(bundle), scope="function", audience="prod:api")
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_target"
    finally:
        config.write_text(original)
