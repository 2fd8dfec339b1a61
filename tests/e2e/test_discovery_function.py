"""iam-discovery behind the local gateway, against the real OpenID Provider and real Redis."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
import requests
from idp_server import OidcProvider
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from openfaas_iam.jose.keyset import read_keyset_file

AUD = "https://gateway.test"


def write_config(path: Path, idp: OidcProvider) -> Path:
    docs = [
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "JwtIssuer",
            "metadata": {"name": "test-idp"},
            "spec": {"iss": idp.issuer, "aud": [AUD]},
        },
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "JwtIssuer",
            "metadata": {"name": "down-idp"},
            "spec": {"iss": "http://127.0.0.1:9/nothing", "aud": [AUD]},
        },
    ]
    path.write_text(json.dumps(docs))
    return path


def test_issuers_refresh_and_metrics(local_gateway, idp: OidcProvider, redis_url: str, tmp_path: Path) -> None:
    prefix = f"e2e-{uuid.uuid4().hex[:6]}:"
    gw = local_gateway(
        iam_config=write_config(tmp_path / "iam.json", idp),
        env={"REDIS_URL": redis_url},
        function_env={"redis_prefix": prefix, "fetch_timeout": "1"},
    )
    base = f"http://127.0.0.1:{gw.port}/function/iam-discovery"
    before = requests.get(f"{base}/issuers", timeout=10).json()["issuers"]
    assert [i["state"] for i in before] == ["not fetched", "not fetched"]
    r = requests.post(f"{base}/refresh", timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert body["refreshed"] == 1 and body["failed"] == 1
    assert body["issuers"]["test-idp"]["kids"] == sorted(k["kid"] for k in idp.keys)
    # Anonymous callers get the failure in a few words; the URL and the details are in the log.
    assert body["issuers"]["down-idp"]["reason"] == "unreachable"
    after = {i["name"]: i for i in requests.get(f"{base}/issuers", timeout=10).json()["issuers"]}
    assert after["test-idp"]["state"] == "ok" and after["test-idp"]["last_fetch"]
    assert after["down-idp"]["state"] == "failing" and after["down-idp"]["reason"] == "unreachable"
    assert "127.0.0.1:9" not in json.dumps([i["reason"] for i in after.values()])
    log = (gw.state_dir / "logs" / "iam-discovery.log").read_text()
    assert "cannot reach http://127.0.0.1:9/nothing/.well-known/openid-configuration" in log
    # The keys went to Redis, where every replica of every function reads them.
    import redis

    assert redis.Redis.from_url(redis_url).get(f"{prefix}jwks:{idp.issuer}") is not None
    metrics = requests.get(f"{base}/metrics", timeout=10).text
    assert 'openfaas_iam_jwks_fetches_total{issuer="test-idp"} 1' in metrics
    assert 'openfaas_iam_jwks_fetch_failures_total{issuer="down-idp"} 1' in metrics
    # cron-connector's call is the same prefetch
    cron = requests.post(base, headers={"X-Topic": "cron-function", "X-Connector": "cron-connector"}, timeout=30)
    assert cron.json()["refreshed"] == 1


def test_bundle_tokens_verify_with_a_third_party_library_from_iss_alone(
    local_gateway, idp: OidcProvider, tmp_path: Path
) -> None:
    gw = local_gateway(iam_config=write_config(tmp_path / "iam.json", idp))
    issuer = f"http://127.0.0.1:{gw.port}/function/iam-discovery"
    # Sign as iam-token does, with the current key of the keyset the gateway created.
    keyset = read_keyset_file(str(gw.secret_store / "iam-signing-keys" / "iam-signing-keys"))
    now = int(time.time())
    token = jwt.encode(
        {"iss": issuer, "aud": issuer, "sub": "fed:alice", "iat": now, "exp": now + 300, "policy": ["p"]},
        keyset.current.private_key,
        algorithm="ES256",
        headers={"kid": keyset.current.kid},
    )
    # joserfc knows nothing of the bundle: iss -> discovery -> jwks_uri -> keys -> verify.
    iss = jwt.decode(token, options={"verify_signature": False})["iss"]
    meta = requests.get(f"{iss}/.well-known/openid-configuration", timeout=10).json()
    assert meta["issuer"] == iss
    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    decoded = jose_jwt.decode(token, keys, algorithms=["ES256"])
    claims = jose_jwt.JWTClaimsRegistry(iss={"essential": True, "value": iss}, aud={"essential": True, "value": iss})
    claims.validate(decoded.claims)
    assert decoded.claims["sub"] == "fed:alice"
