"""The CLI's calls to iam-authz: is `--gateway` the proxy, and who does a saved token say I am?

A token saved for the OpenFaaS gateway itself would be refused by it with a bare 401 that
says nothing of openfaas-iam, so `openfaas-iam auth` checks first: iam-authz answers
`/.well-known/openfaas-iam`; the gateway does not, and answers `/system/info` with 401 to a
Bearer token (it knows only basic auth). Calls share the sign-in's deadline and size cap.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import requests

from openfaas_iam.client.oidc_client import AuthFlowError, _bounded, _json_object
from openfaas_iam.jose.expiry import expired_message, token_exp
from openfaas_iam.oidc.own_discovery import PROXY_MARKER_PATH, PROXY_SERVICE


def proxy_suggestion(gateway: str) -> str:
    """Where the proxy is for a gateway URL: its host route, or <gateway root>/function/iam-authz."""
    parts = urlsplit(gateway.rstrip("/"))
    root = f"{parts.scheme}://{parts.netloc}{parts.path.split('/function/')[0]}"
    return f"https://<host-route> (deploy/authz-ingress.yaml) or {root}/function/iam-authz"


def check_proxy(gateway: str, session: requests.Session) -> dict[str, Any]:
    """The proxy's marker (`service`, `issuer`), or AuthFlowError saying what to use instead."""
    base = gateway.rstrip("/")
    status, body = _bounded(session, "GET", base + PROXY_MARKER_PATH, "the gateway")
    doc = _json_object(body) if status == 200 else None
    if doc is not None and doc.get("service") == PROXY_SERVICE:
        return doc
    probe, _ = _bounded(
        session, "GET", base + "/system/info", "the gateway", headers={"Authorization": "Bearer openfaas-iam-probe"}
    )
    if probe == 401:
        raise AuthFlowError(
            f"{base} is the OpenFaaS gateway itself, which would refuse the token with 401; "
            f"use the proxy: {proxy_suggestion(base)}"
        )
    raise AuthFlowError(
        f"{base} does not answer as openfaas-iam's proxy (GET {PROXY_MARKER_PATH}: HTTP {status}); "
        f"use the proxy: {proxy_suggestion(base)}"
    )


def whoami(gateway: str, token: str, session: requests.Session, now: float | None = None) -> dict[str, Any]:
    """The proxy's /whoami for a saved token; an expired one is said with when and what to run."""
    exp = token_exp(token)
    if exp is not None and exp < (time.time() if now is None else now):
        raise AuthFlowError(expired_message(exp, gateway, now))
    base = gateway.rstrip("/")
    status, body = _bounded(session, "GET", base + "/whoami", "the proxy", headers={"Authorization": f"Bearer {token}"})
    doc = _json_object(body)
    if status == 200 and doc is not None:
        return doc
    message = (doc or {}).get("message") or f"HTTP {status}"
    if status == 401:
        raise AuthFlowError(f"the proxy refused the saved token: {message}; run: openfaas-iam auth --gateway {base}")
    raise AuthFlowError(f"{base}/whoami answered HTTP {status}: {message}")
