"""The bundle's own OpenID Provider metadata (OIDC Discovery 1.0 §3, RFC 8414 §2).

Any OIDC library can then verify the bundle's tokens starting from their `iss`:
`{iss}/.well-known/openid-configuration` -> `jwks_uri` -> the public signing keys.
"""

from __future__ import annotations

from typing import Any

from openfaas_iam.settings import Settings

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def discovery_document(settings: Settings) -> dict[str, Any]:
    issuer = settings.issuer_url
    token_base = settings.token_endpoint.rsplit("/oauth/token", 1)[0]
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "token_endpoint": settings.token_endpoint,
        # Required by OIDC Discovery; people sign in through iam-token's browser flow.
        "authorization_endpoint": f"{token_base}/login",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": [TOKEN_EXCHANGE],
        "scopes_supported": ["openid", "function"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "jti", "fed:iss", "policy", "function"],
    }


# iam-authz answers here; the OpenFaaS gateway does not. `openfaas-iam auth` asks it to tell the
# proxy from the gateway itself before saving a token that the gateway would refuse with a bare 401.
PROXY_MARKER_PATH = "/.well-known/openfaas-iam"
PROXY_SERVICE = "openfaas-iam-authz"


def proxy_marker(issuer: str) -> dict[str, str]:
    return {"service": PROXY_SERVICE, "issuer": issuer}
