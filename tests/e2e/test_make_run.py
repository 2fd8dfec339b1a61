"""What `make run` starts: the four functions behind the local gateway, discovery answering."""

from __future__ import annotations

import requests


def test_all_functions_start_and_discovery_names_the_issuer(local_gateway) -> None:
    gw = local_gateway()
    base = f"http://127.0.0.1:{gw.port}"
    doc = requests.get(f"{base}/function/iam-discovery/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == f"{base}/function/iam-discovery"
    assert doc["jwks_uri"] == f"{base}/function/iam-discovery/.well-known/jwks.json"
    assert doc["token_endpoint"] == f"{base}/function/iam-token/oauth/token"
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in doc["grant_types_supported"]
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
    jwks = requests.get(doc["jwks_uri"], timeout=10).json()
    assert len(jwks["keys"]) == 2 and all(k["alg"] == "ES256" and "d" not in k for k in jwks["keys"])
    for name in ("iam-discovery", "iam-token", "iam-authz", "iam-rotate"):
        assert requests.get(f"{base}/function/{name}/healthz", timeout=10).status_code == 200


def test_issuer_url_is_configurable(local_gateway) -> None:
    gw = local_gateway(env={"ISSUER_URL": "https://gateway.example.com/function/iam-discovery"})
    doc = requests.get(
        f"http://127.0.0.1:{gw.port}/function/iam-discovery/.well-known/openid-configuration", timeout=10
    )
    assert doc.json()["issuer"] == "https://gateway.example.com/function/iam-discovery"
