"""iam-token: RFC 8693 token exchange, an IdP token in, a short-lived OpenFaaS token out."""

from __future__ import annotations

import os

from openfaas_iam.audit import AuditLog
from openfaas_iam.errors import InvalidRequest, OAuthError
from openfaas_iam.exchange import TokenExchange, parse_request
from openfaas_iam.responses import NO_STORE, json_response, oauth_error
from openfaas_iam.routing import Router
from openfaas_iam.runtime import Runtime
from openfaas_iam.settings import Settings
from openfaas_iam.watched_file import Unavailable

rt = Runtime.build(Settings.from_env(os.environ))
exchange = TokenExchange(
    issuer_url=rt.settings.issuer_url,
    config=rt.config.get,
    keyset=rt.keyset.get,
    jwks=rt.jwks,
    audit=AuditLog(),
    leeway=rt.settings.leeway_seconds,
    own_keys=rt.own_public_keys,
)
router = Router()


@router.route("/oauth/token", "POST")
def token(event):
    if len(event.body) > rt.settings.max_body_bytes:
        return oauth_error(
            OAuthError("invalid_request", f"the request body is larger than {rt.settings.max_body_bytes} bytes", 413)
        )
    try:
        req = parse_request(event.body, event.headers.get("Content-Type"))
        return json_response(200, exchange.exchange(req, client=event.remote_addr), dict(NO_STORE))
    except OAuthError as e:
        return oauth_error(e)
    except Unavailable as e:
        return oauth_error(OAuthError("temporarily_unavailable", f"the token service is not ready: {e}", 503))


@router.route("/oauth/token", "GET", "PUT", "PATCH", "DELETE")
def token_wrong_method(event):
    e = InvalidRequest(f"{event.method} is not allowed at the token endpoint; use POST (RFC 6749 §3.2)")
    e.status = 405
    resp = oauth_error(e)
    resp["headers"]["Allow"] = "POST"
    return resp


@router.route("/healthz", "GET")
def healthz(event):
    return json_response(200, {"status": "ok"})


def handle(event, context):
    return router.dispatch(event)
