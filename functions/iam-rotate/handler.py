"""iam-rotate: scheduled signing-key rotation (cron-connector calls POST /), status for operators."""

from __future__ import annotations

import os

from openfaas_iam.basic_auth import AdminCredentials, is_admin
from openfaas_iam.errors import StoreError
from openfaas_iam.responses import error, json_response
from openfaas_iam.rotation import Rotator, publisher
from openfaas_iam.routing import Router
from openfaas_iam.runtime import OWN_JWKS_KEY, Runtime
from openfaas_iam.settings import Settings
from openfaas_iam.stores.kubernetes import SA_DIR, KubernetesClient
from openfaas_iam.stores.secrets import KeysetStore, KubernetesSecretStore, LocalFolderStore
from openfaas_iam.watched_file import Unavailable

rt = Runtime.build(Settings.from_env(os.environ))
s = rt.settings


def make_store() -> KeysetStore:
    if s.signing_keys_store == "local":
        # make run: the mounted file is a symlink into the local secret folder; write the real file.
        return LocalFolderStore(s.secret_path(s.signing_keys_secret))
    namespace = s.kubernetes_namespace
    if not namespace:
        try:
            with open(f"{SA_DIR}/namespace") as f:
                namespace = f.read().strip()
        except OSError:
            namespace = "openfaas-fn"
    return KubernetesSecretStore(KubernetesClient(), namespace, s.signing_keys_secret, s.signing_keys_secret)


# How long a signer may still see the old keyset after a rotation (kubelet sync of mounted secrets).
MOUNT_SYNC_ALLOWANCE = float(os.environ.get("mount_sync_allowance", "120"))


def retire_after() -> float:
    """Every token a retired key signed has expired after this long.

    A signer with a stale mount keeps signing with the old key for up to the mount sync
    delay after it was retired, and those tokens live the longest tokenExpiry (plus leeway).
    """
    try:
        return rt.config.get().max_token_expiry + s.leeway_seconds + MOUNT_SYNC_ALLOWANCE
    except Unavailable:
        return 24 * 3600.0  # unknown lifetimes: keep retired keys for a day rather than too short


_rotator: Rotator | None = None


def rotator() -> Rotator:
    global _rotator
    if _rotator is None:
        ttl = max(s.rotation_interval * 3, 7 * 24 * 3600)
        _rotator = Rotator(
            make_store(),
            interval=s.rotation_interval,
            retire_after=retire_after,
            publish=publisher(rt.cache, OWN_JWKS_KEY, ttl),
        )
    return _rotator


router = Router()


admin = AdminCredentials(s.secret_path("basic-auth-user"), s.secret_path("basic-auth-password"))


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
        return json_response(200, rotator().run(force=force).to_json())
    except StoreError as e:
        return error(503, "rotation_failed", f"{e}; the keyset is unchanged")


@router.route("/status", "GET")
def status(event):
    try:
        return json_response(200, rotator().status())
    except StoreError as e:
        return error(503, "store_unavailable", str(e))


@router.route("/healthz", "GET")
def healthz(event):
    return json_response(200, {"status": "ok"})


def handle(event, context):
    return router.dispatch(event)
