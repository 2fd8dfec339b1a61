"""iam-authz: decisions, and an authorizing proxy in front of the OpenFaaS REST API (/system/*)."""

from __future__ import annotations

import os

from openfaas_iam import json_codec
from openfaas_iam.audit import AuditLog, RedisStreamSink, WebhookSink, api_event
from openfaas_iam.authz import Authorizer, Principal
from openfaas_iam.basic_auth import AdminCredentials
from openfaas_iam.errors import Unauthenticated
from openfaas_iam.gateway_client import GatewayClient, GatewayUnavailable
from openfaas_iam.policy import Decision
from openfaas_iam.responses import error, json_response, unauthenticated
from openfaas_iam.rest_api import BadApiRequest, NotCovered, map_call
from openfaas_iam.routing import Router
from openfaas_iam.runtime import Runtime
from openfaas_iam.settings import Settings
from openfaas_iam.verify import OwnTokenVerifier
from openfaas_iam.watched_file import Unavailable, WatchedFile, read_stripped

rt = Runtime.build(Settings.from_env(os.environ))
s = rt.settings


admin_credentials = AdminCredentials(s.secret_path("basic-auth-user"), s.secret_path("basic-auth-password"))


sinks = []
if s.audit_stream and rt.cache.shared is not None:
    sinks.append(RedisStreamSink(rt.cache.shared.client, s.redis_prefix + s.audit_stream))
if s.audit_webhook_url:
    secret_file = WatchedFile(s.secret_path(s.audit_webhook_secret), read_stripped, what="audit webhook secret")
    sinks.append(WebhookSink(s.audit_webhook_url, lambda: secret_file.get().encode(), verify=s.ca_bundle or True))
audit = AuditLog(sinks=sinks, verbs=s.audit_verbs)
verifier = OwnTokenVerifier(s.issuer_url, rt.own_public_keys, leeway=1.0)
authorizer = Authorizer(config=rt.config.get, verifier=verifier, admin_credentials=admin_credentials)
gateway = GatewayClient(s.gateway_url, admin_credentials, read_timeout=s.proxy_read_timeout, verify=s.ca_bundle or True)
router = Router()
MAX_CHECKS = 100


def decision_json(d: Decision, principal: Principal) -> dict:
    return {**d.to_json(), "subject": principal.subject}


def authenticate(event) -> Principal:
    return authorizer.authenticate(event.headers.get("Authorization"))


@router.route("/authorize", "POST")
def authorize(event):
    try:
        principal = authenticate(event)
    except Unauthenticated as e:
        return unauthenticated(e)
    if len(event.body) > s.max_body_bytes:
        return error(413, "request_too_large", f"the request body is larger than {s.max_body_bytes} bytes")
    try:
        doc = json_codec.loads(event.body)
    except (ValueError, UnicodeDecodeError):
        return error(
            400, "invalid_request", 'the body must be JSON: {"action": "...", "resource": "..."} or a list of them'
        )
    checks = doc if isinstance(doc, list) else [doc]
    if not checks or len(checks) > MAX_CHECKS:
        return error(400, "invalid_request", f"give between 1 and {MAX_CHECKS} checks")
    for i, c in enumerate(checks):
        if not isinstance(c, dict) or not isinstance(c.get("action"), str) or not isinstance(c.get("resource"), str):
            where = f"check {i}" if isinstance(doc, list) else "the body"
            return error(400, "invalid_request", f'{where} needs string fields "action" and "resource"')
    try:
        results = [decision_json(authorizer.decide(principal, c["action"], c["resource"]), principal) for c in checks]
    except Unavailable as e:
        return error(503, "config_unavailable", str(e))
    return json_response(200, results if isinstance(doc, list) else results[0])


@router.route("/whoami", "GET")
def whoami(event):
    try:
        return json_response(200, authorizer.whoami(authenticate(event)))
    except Unauthenticated as e:
        return unauthenticated(e)
    except Unavailable as e:
        return error(503, "config_unavailable", str(e))


@router.prefix("/system/")
def proxy(event):
    principal: Principal | None = None
    try:
        principal = authenticate(event)
        repeated = frozenset(k for k in event.query if len(event.query.getlist(k)) > 1)
        call = map_call(event.method, event.path, event.query, event.body, repeated)
    except Unauthenticated as e:
        audit.api(api_event(None, event.path, event.method, [], 401), denied=True)
        return unauthenticated(e)
    except NotCovered as e:
        audit.api(api_event(principal.claims, event.path, event.method, [], 403), denied=True)
        return error(403, "forbidden", f"{e}; it is not forwarded")
    except BadApiRequest as e:
        return error(400, "invalid_request", str(e))
    try:
        decision = authorizer.decide(principal, call.action, call.resource)
    except Unavailable as e:
        return error(503, "config_unavailable", str(e))
    # A namespace list is filtered to what the caller may see, never refused (as in OpenFaaS).
    if not decision.allowed and not call.filter_namespaces:
        audit.api(api_event(principal.claims, event.path, event.method, [call.action], 403), denied=True)
        return json_response(
            403, {"error": "forbidden", "message": decision.reason, "action": call.action, "resource": call.resource}
        )
    query = [(k, v) for k in event.query for v in event.query.getlist(k)]
    try:
        fwd = gateway.forward(event.method, call.path, query, event.body, event.headers)
        audit.api(api_event(principal.claims, event.path, event.method, [call.action], fwd.status))
        if call.filter_namespaces and fwd.status == 200:
            names = json_codec.loads(fwd.read(4 * 1024 * 1024))
            visible = authorizer.visible_namespaces(principal, [n for n in names if isinstance(n, str)])
            return json_response(200, visible)
    except GatewayUnavailable as e:
        audit.api(api_event(principal.claims, event.path, event.method, [call.action], 502))
        return error(502, "bad_gateway", str(e))
    except ValueError:
        return error(502, "bad_gateway", "the gateway's namespace list was not JSON")
    return {"statusCode": fwd.status, "headers": fwd.headers, "body": fwd.body}


@router.route("/healthz", "GET")
def healthz(event):
    return json_response(200, rt.health())


def handle(event, context):
    return router.dispatch(event)
