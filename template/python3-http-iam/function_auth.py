"""Function-token checks before the handler runs (`iam_auth=true`), as OpenFaaS's watchdog does.

The switches are `iam_auth`, `iam_auth_issuer` and `iam_auth_ca_bundle`: of-watchdog owns
`jwt_auth` (with it set, the real watchdog verifies tokens itself against a fixed gateway
address the CE gateway does not serve, and refuses to start), so the template never reads it.

The issuer's discovery document gives its JWKS; a token must be ES256, carry
`iss` = `aud` = the issuer, be unexpired (1 s leeway), and hold a `function.permissions`
entry covering `<namespace>:<function>` (and none of `function.deny`); when it names
`function.audience`, this function must be one of them. Failures: 401 with
`WWW-Authenticate: Bearer realm=IAM function invoke`, or 403 `insufficient permissions`.
This gives OpenFaaS CE users `Function:Invoke` enforcement.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import Any

import jwt
import requests

log = logging.getLogger("template.function_auth")
CHALLENGE = "Bearer realm=IAM function invoke"


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


def covers(pattern: str, namespace: str, name: str) -> bool:
    """`*`, `ns:*`, `*:fn`, `ns:fn` (wildcards per part, never across the ':')."""
    if pattern == "*":
        return True
    parts = pattern.split(":")
    if len(parts) != 2:
        return False
    return bool(_glob(parts[0]).fullmatch(namespace) and _glob(parts[1]).fullmatch(name))


def function_identity() -> tuple[str, str]:
    """This function's name and namespace: from the environment, else from the pod."""
    name = os.getenv("function_name", "")
    if not name:
        # A Deployment's pod is named <deployment>-<replicaset hash>-<pod hash>.
        name = "-".join(os.getenv("HOSTNAME", "").split("-")[:-2])
    namespace = os.getenv("function_namespace", "")
    if not namespace:
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                namespace = f.read().strip()
        except OSError:
            namespace = "openfaas-fn"
    return name, namespace


class FunctionAuth:
    def __init__(self, issuer: str, name: str, namespace: str, *, timeout: float = 5.0, refresh: float = 300.0) -> None:
        self.issuer = issuer.rstrip("/")
        self.name = name
        self.namespace = namespace
        self.timeout = timeout
        self.refresh = refresh
        self.verify_tls: str | bool = os.getenv("iam_auth_ca_bundle") or True
        self._keys: dict[str, Any] = {}
        self._fetched = 0.0
        self._last_try = 0.0
        self._lock = threading.Lock()

    def _fetch(self) -> None:
        session = requests.Session()
        session.trust_env = False
        meta = session.get(
            f"{self.issuer}/.well-known/openid-configuration", timeout=self.timeout, verify=self.verify_tls
        ).json()
        if meta.get("issuer") != self.issuer:
            raise AuthError(401, "issuer discovery names another issuer")
        jwks = session.get(meta["jwks_uri"], timeout=self.timeout, verify=self.verify_tls).json()
        keys = {}
        for k in jwks.get("keys", []):
            if k.get("kty") == "EC" and k.get("crv") == "P-256" and isinstance(k.get("kid"), str):
                keys[k["kid"]] = jwt.PyJWK(k, algorithm="ES256").key
        self._keys = keys
        self._fetched = time.monotonic()

    def _key(self, kid: str) -> Any:
        now = time.monotonic()
        stale = now - self._fetched > self.refresh
        if (kid not in self._keys or stale) and now - self._last_try > 5.0:
            with self._lock:
                if (
                    kid not in self._keys or time.monotonic() - self._fetched > self.refresh
                ) and time.monotonic() - self._last_try > 5.0:
                    self._last_try = time.monotonic()
                    try:
                        self._fetch()
                    except (requests.RequestException, ValueError, KeyError, jwt.PyJWKError) as e:
                        log.warning("iam_auth: fetching the keys of %s failed: %s", self.issuer, type(e).__name__)
        key = self._keys.get(kid)
        if key is None:
            raise AuthError(401, "unknown signing key")
        return key

    def check(self, authorization: str | None) -> dict[str, Any]:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthError(401, "a function token is required")
        token = authorization[7:].strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError(401, "malformed token") from None
        if header.get("alg") != "ES256" or not isinstance(header.get("kid"), str):
            raise AuthError(401, "not a token of this issuer")
        try:
            claims = jwt.decode(
                token,
                self._key(header["kid"]),
                algorithms=["ES256"],
                audience=self.issuer,
                issuer=self.issuer,
                leeway=1,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as e:
            raise AuthError(401, f"invalid token: {e}") from None
        function = claims.get("function")
        if not isinstance(function, dict):
            # A valid token of this issuer that is not a function token: 403, as the watchdog answers.
            raise AuthError(403, "insufficient permissions")
        permissions = [p for p in function.get("permissions") or [] if isinstance(p, str)]
        deny = [p for p in function.get("deny") or [] if isinstance(p, str)]
        audience = [a for a in function.get("audience") or [] if isinstance(a, str)]
        here = (self.namespace, self.name)
        if not any(covers(p, *here) for p in permissions) or any(covers(p, *here) for p in deny):
            raise AuthError(403, "insufficient permissions")
        if audience and not any(covers(a, *here) for a in audience):
            raise AuthError(403, "insufficient permissions")
        return claims
