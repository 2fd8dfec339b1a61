"""iam-discovery: the bundle's OIDC discovery document and public signing keys."""

from __future__ import annotations

import os

from openfaas_iam.keyset import read_keyset_file
from openfaas_iam.own_discovery import discovery_document
from openfaas_iam.responses import error, json_response
from openfaas_iam.routing import Router
from openfaas_iam.settings import Settings
from openfaas_iam.watched_file import Unavailable, WatchedFile

settings = Settings.from_env(os.environ)
keyset = WatchedFile(settings.secret_path(settings.signing_keys_secret), read_keyset_file, what="signing keyset")
router = Router()
PUBLIC_CACHE = {"Cache-Control": "public, max-age=300"}


@router.route("/.well-known/openid-configuration", "GET")
def openid_configuration(event):
    return json_response(200, discovery_document(settings), PUBLIC_CACHE)


@router.route("/.well-known/jwks.json", "GET")
def jwks(event):
    try:
        return json_response(200, keyset.get().public_jwks(), {"Cache-Control": "public, max-age=60"})
    except Unavailable as e:
        return error(503, "keys_unavailable", str(e))


@router.route("/healthz", "GET")
def healthz(event):
    return json_response(200, {"status": "ok", "issuer": settings.issuer_url})


def handle(event, context):
    return router.dispatch(event)
