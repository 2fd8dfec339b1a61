"""openfaas-iam's python3-http-iam template: the HTTP edge of every function.

The contract is OpenFaaS's python3-http one: `function/handler.py` exposes
`handle(event, context)`; `event` has `body` (bytes), `headers`, `method`, `query`
and `path`; `context.hostname`. The return value is `None` (empty 200), a `str` or
`bytes` body, or a dict with `statusCode` (default 200), `body` and `headers`, where a
dict or list body is sent as JSON and an iterator of bytes is streamed.

of-watchdog forwards to `upstream_url` (default http://127.0.0.1:5000), so that is
where we listen; the local gateway starts each function with its own upstream_url.
A handler that raises gets a 500 with a JSON body and its traceback in the log,
never a crashed process or a trace in the response.

Safer than OpenFaaS's own python3-http template, on purpose: every function shares the
gateway's browser origin, so a `str` body is `text/plain; charset=utf-8` unless the handler
sets a Content-Type (the official template sends Flask's default, `text/html`, which makes
`return "Hello " + name` a reflected XSS on that origin), and every response carries
`X-Content-Type-Options: nosniff` so a browser never guesses HTML from a body either.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit


def _bind_early() -> socket.socket:
    """Listen before Flask and the handler load (most of the start-up time).

    On CE, faas-netes probes the watchdog's `/_/health`, which turns healthy when the child
    is forked, not when it listens; a request in that gap met a refused connection and an
    empty 500. Bound first, the port queues such requests until waitress serves them.
    """
    upstream = urlsplit(os.getenv("upstream_url", "http://127.0.0.1:5000"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((upstream.hostname or "127.0.0.1", upstream.port or 5000))
    sock.listen(1024)
    return sock


EARLY_SOCKET = _bind_early() if __name__ == "__main__" else None

from flask import Flask, Response, abort, request  # noqa: E402
from werkzeug.exceptions import HTTPException  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FUNCTION_DIR = os.path.join(HERE, "function")
# The handler and the library copied next to it by `configuration.copy` import as top-level modules.
sys.path.insert(0, FUNCTION_DIR)

from function import handler  # noqa: E402

log = logging.getLogger("template")
TEXT = "text/plain; charset=utf-8"
BINARY = "application/octet-stream"  # a bytes body without a handler Content-Type
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
    """The request as the handler sees it; parts a handler may not need are computed on first use."""

    def __init__(self) -> None:
        req = self._request = request._get_current_object()  # one context look-up, not one per field
        self.body: bytes = _read_body(req)
        self.headers: Mapping[str, str] = req.headers
        self.method: str = req.method
        self.path: str = req.path

    @cached_property
    def query(self) -> Query:
        return Query(self._request.args.items(multi=True))

    @cached_property
    def remote_addr(self) -> str:
        """The caller's address as the request claims it: X-Forwarded-For's first entry.

        Nothing here is verified. The OpenFaaS gateway sets X-Forwarded-For to the address it
        saw only when the request has none, and passes a client's own value through unchanged;
        so this is the caller's claim unless an ingress in front overwrites the header. Record
        it as a claim (`peer_addr` is the one address this process saw for itself).
        """
        forwarded = self.headers.get("X-Forwarded-For", "")
        first = forwarded.split(",")[0].strip() if forwarded else ""
        return first or (self._request.remote_addr or "")

    @cached_property
    def peer_addr(self) -> str:
        """The TCP peer (the watchdog, or the local gateway): verified, but never the end client."""
        return self._request.remote_addr or ""


MAX_BODY = int(os.getenv("max_request_bytes", str(1024 * 1024)))


def _read_body(req: Any) -> bytes:
    """The request body, read straight from the server's input when its length is known.

    waitress hands over exactly Content-Length bytes (it buffers and de-chunks bodies
    itself), so the length-limited stream werkzeug would wrap around it only costs time.
    """
    length = req.content_length
    if length is None or "wsgi.input" not in req.environ:
        return req.get_data()
    if length > MAX_BODY:
        abort(413)
    return req.environ["wsgi.input"].read(length) if length else b""


def transport_error(status: int, description: str) -> dict[str, str]:
    """A refusal made before the handler could answer (body too large, malformed HTTP).

    The template cannot know which protocol the function speaks, so the body is read by
    both: RFC 6749 §5.2's `error`/`error_description` (the token endpoint's clients must
    ignore members they do not know) and the `message` every other bundle error carries.
    """
    code = "invalid_request" if 400 <= status < 500 else "server_error"
    return {"error": code, "error_description": description, "message": description}


class Context:
    def __init__(self, hostname: str) -> None:
        self.hostname = hostname


CONTEXT = Context(os.getenv("HOSTNAME", socket.gethostname()))


try:  # orjson when the function has it: several times faster than json for response bodies
    from orjson import dumps as _dumps
except ImportError:

    def _dumps(value: Any) -> bytes:
        return json.dumps(value).encode()


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(_dumps(body), status=status, headers=_headers("application/json", headers))


def _headers(content_type: str | None, extra: Any) -> list[tuple[str, str]]:
    """One header list, built once: the handler's headers win over the default content type.

    `headers` may be a dict, or a list of (name, value) pairs when a name repeats (Set-Cookie).
    """
    pairs = extra.items() if isinstance(extra, Mapping) else (extra or [])
    out = [(str(k), str(v)) for k, v in pairs]
    if content_type and not any(k.lower() == "content-type" for k, _ in out):
        out.append(("Content-Type", content_type))
    return out


def format_response(res: Any) -> Response:
    """Turn any return shape of the contract into a Flask response."""
    if res is None:
        return Response(b"", status=200)
    if isinstance(res, str):
        return Response(res, status=200, headers=_headers(TEXT, None))
    if isinstance(res, bytes):
        # Not Flask's default text/html: `return event.body` would be a reflected XSS (issue 20).
        return Response(res, status=200, headers=_headers(BINARY, None))
    if not isinstance(res, dict):
        raise TypeError(f"handler returned {type(res).__name__}; expected None, str, bytes or a dict")
    status = int(res.get("statusCode", 200))
    extra = res.get("headers")
    body = res.get("body")
    if isinstance(body, (dict, list)):
        return Response(_dumps(body), status=status, headers=_headers("application/json", extra))
    if body is None:
        return Response(b"", status=status, headers=_headers(None, extra))
    if isinstance(body, str):
        return Response(body, status=status, headers=_headers(TEXT, extra))
    if isinstance(body, bytes):
        return Response(body, status=status, headers=_headers(BINARY, extra))  # issue 20: never text/html
    if isinstance(body, Iterable):
        return Response(_stream(body), status=status, headers=_headers(BINARY, extra), direct_passthrough=True)
    return Response(str(body), status=status, headers=_headers(TEXT, extra))


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
    """The function-token check when enabled (`iam_auth=true`, `iam_auth_issuer=<issuer URL>`).

    `jwt_auth` belongs to of-watchdog: set, the real watchdog verifies tokens itself against a
    fixed gateway address and fails to start on CE. The template never reads it, and says so.
    """
    if os.getenv("jwt_auth", "").lower() == "true":
        log.warning(
            "jwt_auth is of-watchdog's own setting and does not work with openfaas-iam on CE; "
            "use iam_auth=true and iam_auth_issuer=<issuer URL> instead"
        )
    if os.getenv("iam_auth", "").lower() != "true":
        return None
    from function_auth import FunctionAuth, function_identity

    issuer = os.getenv("iam_auth_issuer", "")
    if not issuer:
        raise SystemExit("iam_auth=true needs iam_auth_issuer (the openfaas-iam issuer URL)")
    name, namespace = function_identity()
    return FunctionAuth(issuer, name, namespace)


def create_app() -> Flask:
    app = Flask(__name__)
    auth = _function_auth()
    app.config["MAX_CONTENT_LENGTH"] = int(os.getenv("max_request_bytes", str(1024 * 1024)))

    @app.after_request
    def no_sniffing(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        return resp

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        return _json(e.code or 500, transport_error(e.code or 500, e.description or e.name or "error"))

    @app.route(READY_PATH, methods=["GET"])
    def ready() -> Response:
        """of-watchdog's `ready_path`: answered by the template itself once waitress listens."""
        return Response("ready\n", status=200, content_type=TEXT)

    @app.route("/", defaults={"path": ""}, methods=METHODS)
    @app.route("/<path:path>", methods=METHODS)
    def call_handler(path: str) -> Response:
        if auth is not None:
            from function_auth import CHALLENGE, AuthError

            try:
                auth.check(request.headers.get("Authorization"))
            except AuthError as e:
                if e.status == 401:
                    return Response(
                        f"Unauthorized: {e}\n", status=401, headers={"WWW-Authenticate": CHALLENGE}, content_type=TEXT
                    )
                return Response(f"{e}\n", status=403, content_type=TEXT)
        try:
            res = handler.handle(Event(), CONTEXT)
            return format_response(res)
        except HTTPException:
            raise
        except Exception:
            log.exception("handler failed for %s %s", request.method, request.path)
            return _json(500, {"error": "internal_error", "message": "the function failed; its log has the details"})

    return app


READY_PATH = "/_/ready"


def _seconds(name: str, default: float) -> float:
    """A watchdog duration setting (`30s`, `1m`, or plain seconds)."""
    value = os.getenv(name, "").strip().lower()
    try:
        if value.endswith("ms"):
            return float(value[:-2]) / 1000
        if value.endswith("s"):
            return float(value[:-1])
        if value.endswith("m"):
            return float(value[:-1]) * 60
        return float(value) if value else default
    except ValueError:
        return default


def json_transport_errors(server: Any) -> None:
    """Have waitress answer what it refuses itself in the same JSON as the template.

    waitress refuses a body over `max_request_body_size`, a malformed request line or
    oversized headers before any application code runs, with a text/plain page of its
    own: a token endpoint client would get a 413 that is not RFC 6749 JSON. The channel's
    error task is the one place those answers are made; the server builds a channel per
    connection from `channel_class`.
    """
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    class JsonErrorTask(ErrorTask):  # type: ignore[misc]
        def execute(self) -> None:
            e = self.request.error
            body = json.dumps(transport_error(e.code, f"{e.reason}: {e.body}")).encode()
            self.status = f"{e.code} {e.reason}"
            self.response_headers.extend([("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff")])
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonErrorChannel(HTTPChannel):  # type: ignore[misc]
        error_task_class = JsonErrorTask

    servers = getattr(server, "map", {}).values() if not hasattr(server, "channel_class") else [server]
    for each in servers:
        if hasattr(each, "channel_class"):
            each.channel_class = JsonErrorChannel


def drain_on_sigterm(server: Any) -> None:
    """Finish in-flight requests on SIGTERM, the way of-watchdog expects its child to.

    The watchdog forwards SIGTERM at once, then keeps sending requests for
    `healthcheck_interval` while Kubernetes takes the pod out of its Service, then waits up
    to `write_timeout` for what is in flight. So the child keeps serving through that window,
    then exits as soon as nothing is in flight (or the window has passed).

    The handler itself only writes a byte to a pipe. SIGTERM often comes twice (the watchdog
    forwards it and the kubelet or a dying parent sends it too), and a handler that logged or
    started a thread ran inside whatever the main thread was doing, logging included: it
    deadlocked against the drain thread's `logging.shutdown()` and the process never exited
    (seen under `make run`). Everything else happens in a thread started beforehand.
    """
    import signal
    import threading
    import time

    write_timeout = _seconds("write_timeout", 10.0)
    interval = _seconds("healthcheck_interval", write_timeout)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)

    def drain() -> None:
        os.read(wake_read, 1)  # the first SIGTERM
        log.info("SIGTERM: serving in-flight and new requests for %.0fs, then exiting", interval)
        deadline = time.monotonic() + interval + write_timeout
        time.sleep(min(interval, _seconds("drain_grace", interval)))
        dispatcher = server.task_dispatcher
        while time.monotonic() < deadline and (dispatcher.active_count or dispatcher.queue):
            time.sleep(0.05)
        log.info("SIGTERM: drained, exiting")
        # Flush the log, but never let a stuck writer (a full pipe nobody reads) keep us alive.
        threading.Timer(2.0, os._exit, args=(0,)).start()
        logging.shutdown()
        os._exit(0)

    def on_term(signum: int, frame: Any) -> None:
        try:  # noqa: SIM105 (plain try: nothing in a signal handler that need not be there)
            os.write(wake_write, b"x")  # no lock, no allocation that can block: safe however often
        except OSError:
            pass  # the pipe is full: the drain has been woken already

    threading.Thread(target=drain, name="drain", daemon=True).start()
    signal.signal(signal.SIGTERM, on_term)


def main() -> None:
    from waitress import create_server

    logging.basicConfig(level=os.getenv("log_level", "INFO").upper(), format="%(message)s", stream=sys.stderr)
    upstream = urlsplit(os.getenv("upstream_url", "http://127.0.0.1:5000"))
    host, port = upstream.hostname or "127.0.0.1", upstream.port or 5000
    sockets = {"sockets": [EARLY_SOCKET]} if EARLY_SOCKET is not None else {"host": host, "port": port}
    server = create_server(
        create_app(),
        **sockets,
        threads=int(os.getenv("threads", "8")),
        max_request_body_size=int(os.getenv("max_request_bytes", str(1024 * 1024))) + 1024,
        channel_timeout=int(os.getenv("channel_timeout", "60")),
        ident=None,
        # Only the watchdog (or the local gateway) reaches us; keep the X-Forwarded-* it sets.
        clear_untrusted_proxy_headers=False,
    )
    json_transport_errors(server)
    drain_on_sigterm(server)
    # From here `ready_path` (/_/ready) answers 200: the watchdog's own /_/ready says "ready" only now.
    server.print_listen("Serving on http://{}:{}")
    server.run()


if __name__ == "__main__":
    main()
