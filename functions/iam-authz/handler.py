"""iam-authz: decisions, and an authorizing proxy in front of the OpenFaaS REST API (/system/*)."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from openfaas_iam import json_codec
from openfaas_iam.engine.policy import Decision
from openfaas_iam.errors import Unauthenticated
from openfaas_iam.model.actions import canonical_action
from openfaas_iam.model.protected import Protection
from openfaas_iam.observability.audit import AuditLog, RedisStreamSink, WebhookSink, api_event
from openfaas_iam.observability.metrics import CONTENT_TYPE
from openfaas_iam.oidc.own_discovery import PROXY_MARKER_PATH, proxy_marker
from openfaas_iam.oidc.verify import OwnTokenVerifier
from openfaas_iam.proxy.authz import Authorizer, Principal
from openfaas_iam.proxy.basic_auth import AdminCredentials
from openfaas_iam.proxy.fair_share import OverLimit, StreamLimiter
from openfaas_iam.proxy.gateway_client import GatewayClient, GatewayUnavailable
from openfaas_iam.proxy.rest_api import ApiCall, BadApiRequest, NotCovered, map_call
from openfaas_iam.service.responses import error, json_response, metrics_response, not_ready, unauthenticated
from openfaas_iam.service.routing import Router
from openfaas_iam.service.runtime import Runtime
from openfaas_iam.settings import Settings
from openfaas_iam.stores.watched_file import Unavailable, WatchedFile, read_stripped

log = logging.getLogger("iam-authz")
rt = Runtime.build(Settings.from_env(os.environ))
s = rt.settings


admin_credentials = AdminCredentials(s.secret_path("basic-auth-user"), s.secret_path("basic-auth-password"))


sinks = []
if s.audit_stream and rt.cache.shared is not None and rt.cache.shared.refused is None:
    sinks.append(RedisStreamSink(rt.cache.shared.client, s.redis_prefix + s.audit_stream))
if s.audit_webhook_url:
    secret_file = WatchedFile(s.secret_path(s.audit_webhook_secret), read_stripped, what="audit webhook secret")
    sinks.append(WebhookSink(s.audit_webhook_url, lambda: secret_file.get().encode(), verify=s.ca_bundle or True))
audit = AuditLog(sinks=sinks, verbs=s.audit_verbs, background=True)
verifier = OwnTokenVerifier(s.issuer_url, rt.own_public_keys, leeway=1.0)
protection = Protection(
    namespace=s.bundle_namespace,
    extra_secrets=s.bundle_secrets(),
)
authorizer = Authorizer(
    config=rt.config.get,
    verifier=verifier,
    admin_credentials=admin_credentials,
    protection=protection,
    refresh_gateway=s.proxy_url or s.authz_url,
)
streams = StreamLimiter(per_subject=s.max_streams_per_subject, total=s.max_streams)
gateway = GatewayClient(s.gateway_url, admin_credentials, read_timeout=s.proxy_read_timeout, verify=s.ca_bundle or True)
router = Router()
MAX_CHECKS = 100


def decision_json(d: Decision, principal: Principal) -> dict:
    return {**d.to_json(), "subject": principal.subject}


def count_decision(action: str, allowed: bool) -> None:
    """Decisions by action and effect; an action outside the vocabulary is "other" (callers pick it)."""
    rt.metrics.inc(
        "openfaas_iam_authz_decisions_total",
        action=canonical_action(action) or "other",
        effect="allow" if allowed else "deny",
    )


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
        decisions = [authorizer.decide_with_shadow(principal, c["action"], c["resource"]) for c in checks]
    except Unavailable as e:
        return not_ready(e)
    for d in decisions:
        count_decision(d.action, d.allowed)
    results = [decision_json(d, principal) for d in decisions]
    return json_response(200, results if isinstance(doc, list) else results[0])


@router.route("/whoami", "GET")
def whoami(event):
    try:
        return json_response(200, authorizer.whoami(authenticate(event)))
    except Unauthenticated as e:
        return unauthenticated(e)
    except Unavailable as e:
        return not_ready(e)


def refused(
    principal: Principal | None, event, status: int, reason: str, call: ApiCall | None = None, decision: str = "invalid"
) -> None:
    """Every refused call is audited, whatever its verb, with what was decided and why."""
    audit.api(
        api_event(
            principal.claims if principal else None,
            event.path,
            event.method,
            [call.action] if call else [],
            status,
            namespace=call.namespace if call else "",
            name=call.name if call else "",
            decision=decision,
            reason=reason,
        ),
        denied=True,
    )


def upstream(code: str, started: float) -> None:
    rt.metrics.inc("openfaas_iam_proxy_upstream_responses_total", code=code)
    rt.metrics.observe("openfaas_iam_proxy_request_duration_seconds", time.monotonic() - started)


def forwarded_event(principal: Principal, event, call: ApiCall, status: int, reason: str, decision) -> None:
    """A forwarded call's audit line; report-only ones are logged whatever the verb, like a denial."""
    would_deny = bool(decision is not None and decision.would_deny)
    audit.api(
        api_event(
            principal.claims,
            event.path,
            event.method,
            [call.action],
            status,
            namespace=call.namespace,
            name=call.name,
            decision="would_deny" if would_deny else "allow",
            reason=reason,
        ),
        denied=would_deny,
    )


@router.prefix("/system/")
def proxy(event):
    """Authenticate, map, decide, then forward exactly the canonical request that was decided on."""
    started = time.monotonic()
    try:
        principal = authenticate(event)
    except Unauthenticated as e:
        refused(None, event, 401, str(e))
        return unauthenticated(e)
    try:
        repeated = frozenset(k for k in event.query if len(event.query.getlist(k)) > 1)
        call = map_call(event.method, event.path, event.query, event.body, repeated)
    except NotCovered as e:
        refused(principal, event, 403, str(e))
        return error(403, "forbidden", f"{e}; it is not forwarded")
    except BadApiRequest as e:
        refused(principal, event, 400, str(e))
        return error(400, "invalid_request", str(e))
    except Exception:  # defence in depth: a request the mapper cannot read is refused, never a 500
        log.exception("could not map %s %s", event.method, event.path)
        refused(principal, event, 400, "the request could not be read")
        return error(400, "invalid_request", "the request could not be read; it is not forwarded")
    try:
        decision = authorizer.decide_call(principal, call, report_only=s.report_only_now(time.time()))
    except Unavailable as e:
        refused(principal, event, 503, "configuration not loaded", call, decision="")
        return not_ready(e)
    count_decision(call.action, decision.allowed or call.filter_namespaces)
    # A namespace list is filtered to what the caller may see, never refused (as in OpenFaaS).
    if not decision.allowed and not call.filter_namespaces:
        refused(principal, event, 403, decision.reason, call, decision="deny")
        return json_response(
            403,
            {
                "error": "forbidden",
                "message": decision.reason,
                "action": decision.action,
                "resource": decision.resource,
            },
        )
    if call.stream:
        try:
            streams.acquire(principal.stream_key)
        except OverLimit as e:
            refused(principal, event, 429, str(e), call)
            return error(429, "too_many_requests", str(e), {"Retry-After": str(e.retry_after)})
    if decision.would_deny:
        # Report-only: the call proceeds; the audit and the metric say what enforcing would have refused.
        rt.metrics.inc("openfaas_iam_would_deny_total", action=decision.action)
    forwarded = False
    try:
        fwd = gateway.forward(event.method, call.path, call.query, call.body, event.headers)
        forwarded = True
        upstream(str(fwd.status), started)
        forwarded_event(principal, event, call, fwd.status, decision.would_deny or decision.reason, decision)
        if call.filter_namespaces and fwd.status == 200:
            names = json_codec.loads(fwd.read(4 * 1024 * 1024))
            if not isinstance(names, list):
                raise ValueError("not a list")
            visible = authorizer.visible_namespaces(principal, [n for n in names if isinstance(n, str)])
            return json_response(200, visible)
    except GatewayUnavailable as e:
        upstream("unreachable", started)
        forwarded_event(principal, event, call, 502, str(e), None)
        return error(502, "bad_gateway", str(e))
    except ValueError:
        return error(502, "bad_gateway", "the gateway's namespace list was not a JSON list")
    finally:
        if call.stream and not forwarded:
            streams.release(principal.stream_key)
    body = streams.guard(principal.stream_key, fwd.body) if call.stream else fwd.body
    return {"statusCode": fwd.status, "headers": fwd.headers, "body": body}


@router.route("/status", "GET")
def status(event):
    """For operators: the configuration's state and problems (admin, or a token allowed System:Info)."""
    try:
        principal = authenticate(event)
    except Unauthenticated as e:
        return unauthenticated(e)
    try:
        allowed = authorizer.decide(principal, "System:Info", "*").allowed
    except Unavailable:
        allowed = principal.admin
    if not allowed:
        return error(403, "forbidden", "the status needs the gateway admin or System:Info")
    view = rt.status()
    return json_response(
        200,
        {
            **view,
            "log_streams_open": streams.open_streams(),
            "functions": peers_view(),
        },
        {"Cache-Control": "no-store"},
    )


PEERS = ("iam-discovery", "iam-token", "iam-rotate")


def peers_view() -> dict:
    """Each other function's public /healthz through the gateway (one replica each, in parallel, 2 s).

    Cheap and unauthenticated on their side: config validity, key ages and Redis state,
    never problem text; a function that does not answer says why in a few words.
    """

    def one(name: str) -> dict:
        suffix = f".{s.bundle_namespace}" if s.bundle_namespace and s.bundle_namespace != "openfaas-fn" else ""
        try:
            r = peer_session.get(f"{s.gateway_url}/function/{name}{suffix}/healthz", timeout=2)
            return r.json() if r.status_code == 200 else {"status": f"HTTP {r.status_code}"}
        except (requests.RequestException, ValueError) as e:
            return {"status": "unreachable", "reason": type(e).__name__}

    with ThreadPoolExecutor(max_workers=len(PEERS)) as pool:
        return dict(zip(PEERS, pool.map(one, PEERS)))


peer_session = requests.Session()
peer_session.verify = s.ca_bundle or True


@router.route("/metrics", "GET")
def metrics(event):
    """Prometheus text format, unauthenticated like every in-cluster scrape target: no secret or per-user label."""
    return metrics_response(rt.metrics.render(), CONTENT_TYPE)


@router.route(PROXY_MARKER_PATH, "GET")
def marker(event):
    """Tells `openfaas-iam auth` that --gateway is this proxy (the real gateway has no such path)."""
    return json_response(200, proxy_marker(s.issuer_url), {"Cache-Control": "no-store"})


@router.route("/healthz", "GET")
def healthz(event):
    return json_response(200, rt.health())


def handle(event, context):
    return router.dispatch(event)
