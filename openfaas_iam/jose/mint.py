"""ES256 minting of the bundle's tokens, claim for claim as OpenFaaS mints them.

API token: every claim of the subject token is copied, then `iss` = `aud` = the
bundle's issuer, `sub` = "fed:" + original sub, `fed:iss` = the original issuer,
`policy` = the matching Roles' policies, a new `iat`, `exp` and `jti`.
Function token: only `iss`, `sub`, `aud`, `iat`, `exp`, `jti` and `function`
(`permissions`, `audience`, and our `deny` extension), never outliving its subject.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from openfaas_iam.jose.jws import sign_es256
from openfaas_iam.jose.keyset import SigningKey

# Claims the bundle sets itself; the subject's values are never copied over them.
_REISSUED = frozenset({"iss", "aud", "sub", "iat", "exp", "nbf", "jti", "policy", "fed:iss", "function"})


def sign(claims: Mapping[str, Any], key: SigningKey) -> str:
    return sign_es256({"alg": "ES256", "kid": key.kid, "typ": "JWT"}, dict(claims), key.private_key)


def api_token_claims(
    subject: Mapping[str, Any], *, issuer_url: str, policies: list[str], lifetime: float, now: float | None = None
) -> dict[str, Any]:
    now = time.time() if now is None else now
    claims = {k: v for k, v in subject.items() if k not in _REISSUED}
    claims.update(
        {
            "iss": issuer_url,
            "aud": issuer_url,
            "sub": f"fed:{subject['sub']}",
            "fed:iss": subject["iss"],
            "policy": policies,
            "iat": int(now),
            "exp": int(now + lifetime),
            "jti": str(uuid.uuid4()),
        }
    )
    return claims


def function_token_claims(
    *,
    issuer_url: str,
    sub: str,
    fed_iss: str,
    permissions: list[str],
    deny: list[str],
    audience: list[str],
    lifetime: float,
    not_after: float,
    now: float | None = None,
) -> dict[str, Any]:
    now = time.time() if now is None else now
    function: dict[str, Any] = {"permissions": permissions, "audience": audience}
    if deny:
        function["deny"] = deny
    return {
        "iss": issuer_url,
        "sub": sub,
        "fed:iss": fed_iss,
        "aud": [issuer_url],
        "iat": int(now),
        "exp": int(min(now + lifetime, not_after)),
        "jti": str(uuid.uuid4()),
        "function": function,
    }
