"""iam-rotate: scheduled signing-key rotation (cron-connector calls POST /), status for operators.

It writes the keysets through the gateway's secrets API with the admin credentials
(basic-auth) and reads them back from its own mounts: no Kubernetes RBAC on Secrets.
"""

from __future__ import annotations

import logging
import os

from openfaas_iam.errors import StoreError
from openfaas_iam.observability.metrics import CONTENT_TYPE
from openfaas_iam.proxy.basic_auth import AdminCredentials, is_admin
from openfaas_iam.service.responses import error, json_response, metrics_response
from openfaas_iam.service.rotation import LEASE_HELD, LEASE_UNAVAILABLE, RotationResult, Rotator, schedule_problem
from openfaas_iam.service.routing import Router
from openfaas_iam.service.runtime import Runtime
from openfaas_iam.settings import Settings
from openfaas_iam.stores.secrets import GatewaySecretWriter, MountedKeysetStore
from openfaas_iam.stores.watched_file import Unavailable

rt = Runtime.build(Settings.from_env(os.environ))
s = rt.settings
admin = AdminCredentials(s.secret_path("basic-auth-user"), s.secret_path("basic-auth-password"))
# A key signs only after every verifier has had it this long: their mounts and their JWKS caches.
PUBLISH_LEAD = s.mount_sync_allowance + s.own_jwks_max_age
if problem := schedule_problem(s.rotation_interval, PUBLISH_LEAD):
    logging.getLogger("openfaas_iam.service.rotation").warning("%s", problem)


def make_store() -> MountedKeysetStore:
    writer = GatewaySecretWriter(
        s.gateway_url,
        admin,
        s.kubernetes_namespace or "openfaas-fn",
        verify=s.ca_bundle or True,
    )
    return MountedKeysetStore(
        s.secret_path(s.signing_keys_secret),
        s.secret_path(s.public_keys_secret),
        writer,
        private_secret=s.signing_keys_secret,
        public_secret=s.public_keys_secret,
    )


def retire_after() -> float:
    """Every token a retired key signed has expired after this long.

    A signer with a stale mount keeps signing with the old key for up to the mount sync
    delay after it was retired, and those tokens live the longest tokenExpiry (plus leeway).
    """
    try:
        return rt.config.get().max_token_expiry + s.leeway_seconds + s.mount_sync_allowance
    except Unavailable:
        return 24 * 3600.0  # unknown lifetimes: keep retired keys for a day rather than too short


rotator = Rotator(
    make_store(),
    interval=s.rotation_interval,
    retire_after=retire_after,
    publish_lead=PUBLISH_LEAD,
    lease=rt.cache,
    lease_ttl=max(2 * s.mount_sync_allowance, PUBLISH_LEAD) + 10,
)
router = Router()


@router.route("/", "POST")
def run(event):
    force = event.query.get("force", "").lower() in ("1", "true", "yes")
    # Anyone can reach a function through the gateway: a scheduled run is a no-op unless a
    # rotation is due, but forcing one is for operators holding the gateway's admin password.
    if force and not is_admin(event.headers.get("Authorization"), admin()):
        return error(
            401,
            "unauthorized",
            "a forced rotation needs the gateway's admin credentials (basic auth)",
            {"WWW-Authenticate": 'Basic realm="openfaas-iam rotation"'},
        )
    try:
        result = rotator.run(force=force)
    except StoreError as e:
        rt.metrics.inc("openfaas_iam_rotation_runs_total", outcome="failed")
        return error(503, "rotation_failed", f"{e}; the keyset is unchanged or one whole step was written")
    outcome = "rotated" if result.rotated else ("refused" if result.refusal else "unchanged")
    rt.metrics.inc("openfaas_iam_rotation_runs_total", outcome=outcome)
    return answer(result, force)


def answer(result: RotationResult, force: bool):
    """The HTTP answer to a run: a step that was wanted and not taken is never a plain 200.

    - the lease cannot be checked (Redis configured, down): 503 for every run, so cron and
      operators see that rotation is paused;
    - a forced run whose lease another run holds: 409 (the operator asked for a step now);
      a scheduled one answers 200 with the reason (a peer is doing the step);
    - a forced run that is not safe yet (publish lead): 409 with Retry-After.
    """
    retry = {"Retry-After": str(int(result.retry_after) + 1)} if result.retry_after is not None else None
    if result.refusal == LEASE_UNAVAILABLE:
        return json_response(503, {"error": LEASE_UNAVAILABLE, "message": result.reason, **result.to_json()}, retry)
    if force and result.refusal == LEASE_HELD:
        return json_response(
            409, {"error": "rotation_in_progress", "message": result.reason, **result.to_json()}, retry
        )
    if force and result.retry_after is not None:
        # Rotating now could make a key sign before some verifier has it: refuse, say when.
        body = {"error": "rotation_not_safe_yet", "message": result.reason, **result.to_json()}
        return json_response(409, body, retry)
    return json_response(200, result.to_json())


@router.route("/status", "GET")
def status(event):
    try:
        return json_response(200, rotator.status())
    except StoreError as e:
        return error(503, "store_unavailable", str(e))


@router.route("/metrics", "GET")
def metrics(event):
    """Prometheus text format, unauthenticated like every in-cluster scrape target: no secret or per-user label."""
    return metrics_response(rt.metrics.render(), CONTENT_TYPE)


@router.route("/healthz", "GET")
def healthz(event):
    return json_response(200, rt.health())


def handle(event, context):
    return router.dispatch(event)
