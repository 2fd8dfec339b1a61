"""Framework-free response values in the shape the python3-http-iam template renders.

Handlers return these dicts; the template turns them into HTTP. Keeping the
shapes here lets every function render errors the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from openfaas_iam.errors import OAuthError, Unauthenticated

Response = dict[str, Any]
log = logging.getLogger("openfaas_iam")
NOT_READY = (
    "openfaas-iam is not ready: its configuration is not loaded; operators find the reason in this function's "
    "log and at GET /status on iam-authz (admin credentials)"
)
_not_ready_logged = 0.0
_not_ready_lock = threading.Lock()
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    h = {"Content-Type": "application/json"}
    if headers:
        h.update(headers)
    return {"statusCode": status, "body": body, "headers": h}


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": code, "message": message}, headers)


def oauth_error(e: OAuthError) -> Response:
    """RFC 6749 §5.2: JSON error body, never cached; a 503 says when to try again."""
    headers = dict(NO_STORE)
    if e.status == 503:
        headers["Retry-After"] = "5"
    return json_response(e.status, e.body(), headers)


def unauthenticated(e: Unauthenticated, realm: str = "openfaas-iam") -> Response:
    challenge = f'Bearer realm="{realm}", error="invalid_token", error_description="{_quote(str(e))}"'
    return error(401, "unauthorized", str(e), {"WWW-Authenticate": challenge})


def not_found(path: str) -> Response:
    return error(404, "not_found", f"no route for {path}")


def method_not_allowed(method: str, allowed: list[str]) -> Response:
    return error(
        405,
        "method_not_allowed",
        f"{method} is not allowed here; use {', '.join(allowed)}",
        {"Allow": ", ".join(allowed)},
    )


def _quote(text: str) -> str:
    # RFC 6750 §3: error_description is a quoted-string without '"' or '\\'.
    return "".join(ch for ch in text if ch not in '"\\' and 0x20 <= ord(ch) < 0x7F)


def not_ready_message(e: Exception) -> str:
    """What an anonymous caller is told when the configuration is not loaded: nothing of the configuration.

    The detail (file paths, every problem) goes to the log, at most every 30 s, and to the
    authenticated status endpoint; callers only learn that the service is not ready.
    """
    global _not_ready_logged
    now = time.monotonic()
    with _not_ready_lock:
        due = now - _not_ready_logged >= 30.0
        if due:
            _not_ready_logged = now
    if due:
        log.warning("not ready, answering 503: %s", e)
    return NOT_READY


def not_ready(e: Exception) -> Response:
    return error(503, "not_ready", not_ready_message(e), {"Retry-After": "5"})


def metrics_response(text: str, content_type: str) -> Response:
    """`GET /metrics`: the Prometheus text exposition, never cached."""
    return {"statusCode": 200, "body": text, "headers": {"Content-Type": content_type, "Cache-Control": "no-store"}}
