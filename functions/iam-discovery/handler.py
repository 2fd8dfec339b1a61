"""iam-discovery: issuer discovery into the shared JWKS cache, and the bundle's own discovery."""

from __future__ import annotations

import logging
import os
import threading

from openfaas_iam.errors import DiscoveryError
from openfaas_iam.observability.metrics import CONTENT_TYPE
from openfaas_iam.oidc.outbound import summarise
from openfaas_iam.oidc.own_discovery import discovery_document
from openfaas_iam.service.responses import error, json_response, metrics_response, not_ready
from openfaas_iam.service.routing import Router
from openfaas_iam.service.runtime import Runtime
from openfaas_iam.settings import Settings
from openfaas_iam.stores.watched_file import Unavailable

log = logging.getLogger("iam-discovery")
rt = Runtime.build(Settings.from_env(os.environ))
router = Router()


@router.route("/.well-known/openid-configuration", "GET")
def openid_configuration(event):
    return json_response(200, discovery_document(rt.settings), {"Cache-Control": "public, max-age=300"})


@router.route("/.well-known/jwks.json", "GET")
def jwks(event):
    # Only the mounted keysets (never Redis): iam-rotate publishes each key long before it signs.
    try:
        body = rt.own_public_jwks()
    except Unavailable as e:
        return error(503, "keys_unavailable", str(e))
    max_age = int(rt.settings.own_jwks_max_age)
    return json_response(200, body, {"Cache-Control": f"public, max-age={max_age}"})


@router.route("/issuers", "GET")
def issuers(event):
    try:
        config = rt.config.get()
    except Unavailable as e:
        return not_ready(e)
    statuses = rt.jwks.status(config.issuers)
    for status in statuses:
        # Anyone can call this: the reason in a few words; the full one is in the log.
        if status.get("reason"):
            status["reason"] = summarise(str(status["reason"]))
    return json_response(200, {"issuers": statuses})


_refreshing = threading.Lock()


@router.route("/", "POST")
@router.route("/refresh", "POST")
def refresh(event):
    """Prefetch every issuer (cron-connector calls POST /): tokens then never wait on an IdP.

    Anonymous callers reach it, so one runs at a time per replica (others get 429), each
    issuer is fetched at most once per `jwks_refetch_interval`, and failures are summarised.
    Keys this replica adopted from Redis and can no longer vouch for, and issuers no longer
    configured, are dropped first.
    """
    if not _refreshing.acquire(blocking=False):
        resp = error(429, "busy", "a refresh is already running; try again in a few seconds")
        resp["headers"]["Retry-After"] = "5"
        return resp
    try:
        try:
            config = rt.config.get()
        except Unavailable as e:
            return not_ready(e)
        rt.jwks.forget_others(config.issuers)
        results = {}
        for issuer in config.issuers:
            try:
                entry = rt.jwks.prefetch(issuer)
                results[issuer.name] = {"ok": True, "kids": entry.kids}
            except DiscoveryError as e:  # the full reason is logged where it happened (jwks_cache)
                results[issuer.name] = {"ok": False, "reason": summarise(str(e))}
        failed = sum(1 for r in results.values() if not r["ok"])
        return json_response(200, {"refreshed": len(results) - failed, "failed": failed, "issuers": results})
    finally:
        _refreshing.release()


@router.route("/metrics", "GET")
def metrics(event):
    """Prometheus text format, unauthenticated like every in-cluster scrape target: no secret or per-user label."""
    return metrics_response(rt.metrics.render(), CONTENT_TYPE)


@router.route("/healthz", "GET")
def healthz(event):
    return json_response(200, {**rt.health(), "issuer": rt.settings.issuer_url})


def handle(event, context):
    return router.dispatch(event)
