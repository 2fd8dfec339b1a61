"""openfaas-iam's python3-http template: the HTTP edge of every function.

The contract is OpenFaaS's python3-http one: `function/handler.py` exposes
`handle(event, context)`; `event` has `body` (bytes), `headers`, `method`, `query`
and `path`; `context.hostname`. The return value is `None` (empty 200), a `str` or
`bytes` body, or a dict with `statusCode` (default 200), `body` and `headers`, where a
dict or list body is sent as JSON and an iterator of bytes is streamed.

of-watchdog forwards to `upstream_url` (default http://127.0.0.1:5000), so that is
where we listen; the local gateway starts each function with its own upstream_url.
A handler that raises gets a 500 with a JSON body and its traceback in the log,
never a crashed process or a trace in the response.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

HERE = os.path.dirname(os.path.abspath(__file__))
FUNCTION_DIR = os.path.join(HERE, "function")
# The handler and the library copied next to it by `configuration.copy` import as top-level modules.
sys.path.insert(0, FUNCTION_DIR)

from function import handler  # noqa: E402

log = logging.getLogger("template")
METHODS = ["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class Query(dict):
    """Query parameters: `event.query["x"]` is the first value, `getlist("x")` all of them."""

    def __init__(self, pairs: Iterable[tuple[str, str]]):
        lists: dict[str, list[str]] = {}
        for k, v in pairs:
            lists.setdefault(k, []).append(v)
        super().__init__({k: v[0] for k, v in lists.items()})
        self._lists = lists

    def getlist(self, key: str) -> list[str]:
        return list(self._lists.get(key, []))


class Event:
    def __init__(self) -> None:
        self.body: bytes = request.get_data()
        self.headers: Mapping[str, str] = request.headers
        self.method: str = request.method
        self.query = Query(request.args.items(multi=True))
        self.path: str = request.path
        # The gateway appends the caller it saw to X-Forwarded-For; earlier entries are the client's word.
        forwarded = request.headers.get("X-Forwarded-For", "")
        self.remote_addr: str = forwarded.split(",")[-1].strip() if forwarded else (request.remote_addr or "")


class Context:
    def __init__(self) -> None:
        self.hostname: str = os.getenv("HOSTNAME", socket.gethostname())


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    resp = Response(json.dumps(body), status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def format_response(res: Any) -> Response:
    """Turn any return shape of the contract into a Flask response."""
    if res is None:
        return Response(b"", status=200)
    if isinstance(res, (str, bytes)):
        return Response(res, status=200)
    if not isinstance(res, dict):
        raise TypeError(f"handler returned {type(res).__name__}; expected None, str, bytes or a dict")
    status = int(res.get("statusCode", 200))
    headers = res.get("headers") or {}
    body = res.get("body")
    if isinstance(body, (dict, list)):
        resp = Response(json.dumps(body), status=status, mimetype="application/json")
    elif body is None:
        resp = Response(b"", status=status)
    elif isinstance(body, (str, bytes)):
        resp = Response(body, status=status)
    elif isinstance(body, Iterable):
        resp = Response(_stream(body), status=status, direct_passthrough=True)
    else:
        resp = Response(str(body), status=status)
    for k, v in headers.items():
        resp.headers[k] = v
    return resp


def _stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Pass a streamed body through; a failure mid-stream ends it and is logged."""
    try:
        yield from chunks
    except Exception:
        log.exception("streamed response failed part-way")
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()


def _function_auth():
    """The jwt_auth check when enabled (`jwt_auth=true`, `jwt_auth_issuer=<issuer URL>`)."""
    if os.getenv("jwt_auth", "").lower() != "true":
        return None
    from jwt_auth import FunctionAuth, function_identity

    issuer = os.getenv("jwt_auth_issuer", "")
    if not issuer:
        raise SystemExit("jwt_auth=true needs jwt_auth_issuer (the openfaas-iam issuer URL)")
    name, namespace = function_identity()
    return FunctionAuth(issuer, name, namespace)


def create_app() -> Flask:
    app = Flask(__name__)
    auth = _function_auth()
    app.config["MAX_CONTENT_LENGTH"] = int(os.getenv("max_request_bytes", str(1024 * 1024)))

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        return _json(e.code or 500, {"error": (e.name or "error").lower().replace(" ", "_"), "message": e.description})

    @app.route("/", defaults={"path": ""}, methods=METHODS)
    @app.route("/<path:path>", methods=METHODS)
    def call_handler(path: str) -> Response:
        if auth is not None:
            from jwt_auth import CHALLENGE, AuthError

            try:
                auth.check(request.headers.get("Authorization"))
            except AuthError as e:
                if e.status == 401:
                    return Response(f"Unauthorized: {e}\n", status=401, headers={"WWW-Authenticate": CHALLENGE})
                return Response(f"{e}\n", status=403)
        try:
            res = handler.handle(Event(), Context())
            return format_response(res)
        except HTTPException:
            raise
        except Exception:
            log.exception("handler failed for %s %s", request.method, request.path)
            return _json(500, {"error": "internal_error", "message": "the function failed; its log has the details"})

    return app


def main() -> None:
    from waitress import serve

    logging.basicConfig(level=os.getenv("log_level", "INFO").upper(), format="%(message)s", stream=sys.stderr)
    upstream = urlsplit(os.getenv("upstream_url", "http://127.0.0.1:5000"))
    host, port = upstream.hostname or "127.0.0.1", upstream.port or 5000
    serve(
        create_app(),
        host=host,
        port=port,
        threads=int(os.getenv("threads", "8")),
        max_request_body_size=int(os.getenv("max_request_bytes", str(1024 * 1024))) + 1024,
        channel_timeout=int(os.getenv("channel_timeout", "60")),
        ident=None,
        # Only the watchdog (or the local gateway) reaches us; keep the X-Forwarded-* it sets.
        clear_untrusted_proxy_headers=False,
        _quiet=True,
    )


if __name__ == "__main__":
    main()
