"""iam-token: health only for now; later issues fill in the rest."""

from __future__ import annotations

import os

from openfaas_iam.responses import json_response
from openfaas_iam.routing import Router
from openfaas_iam.settings import Settings

settings = Settings.from_env(os.environ)
router = Router()


@router.route("/healthz", "GET")
def healthz(event):
    return json_response(200, {"status": "ok"})


def handle(event, context):
    return router.dispatch(event)
