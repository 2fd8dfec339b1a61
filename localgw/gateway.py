"""The routing half of the local gateway: `/function/<name>[.<namespace>][/<path>]`.

Like the OpenFaaS gateway it strips `/function/<name>` and forwards the rest of the
path, the query, the method, the headers and the body unchanged, adds
`X-Forwarded-For`/`X-Forwarded-Host` (a client's own X-Forwarded-Host is kept, as the CE
gateway does)/`X-Call-Id`, streams the response back, and answers 404 for a function it
does not know and 502 when one is not answering.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class Backend:
    name: str
    namespace: str
    port: int
    image: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()


def _text(start_response: StartResponse, status: str, message: str) -> list[bytes]:
    body = (message + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def split_function_path(raw_path: str) -> tuple[str, str, str] | None:
    """`/function/name.ns/rest?q` -> (name, namespace or "", "/rest?q"); None when not a function route."""
    if not raw_path.startswith("/function/"):
        return None
    rest = raw_path[len("/function/") :]
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
        query = "?" + query
    target, _, sub = rest.partition("/")
    name, _, namespace = unquote(target).partition(".")
    return name, namespace, "/" + sub + query


class GatewayApp:
    """A WSGI application; `backends` may change while it runs (functions restart).

    With `root_function`, it plays an Ingress host route instead of the gateway: every
    path goes to that one function, and X-Forwarded-Host is always the Host it was asked
    for (the gateway, like the real one, keeps a client's own X-Forwarded-Host).
    """

    def __init__(
        self,
        backends: dict[str, Backend],
        *,
        timeout: float = 65.0,
        root_function: str | None = None,
        secrets: Any = None,
    ) -> None:
        """`secrets`: a local_secrets.SecretMounts answering `/system/secrets` (admin basic auth)."""
        self.backends = backends
        self.timeout = timeout
        self.root_function = root_function
        self.secrets = secrets

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raw = environ.get("REQUEST_URI") or (
            environ.get("PATH_INFO", "/") + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
        )
        if raw.startswith("http://") or raw.startswith("https://"):
            return _text(start_response, "400 Bad Request", "absolute-form request targets are not accepted")
        if self.root_function is not None:
            root = self.backends.get(self.root_function)
            if root is None:
                return _text(start_response, "503 Service Unavailable", f"{self.root_function} is not running")
            return self._forward(root, raw, environ, start_response)
        if raw in ("/healthz", "/healthz/"):
            return _text(start_response, "200 OK", "OK")
        if raw.split("?")[0] in ("/system/functions", "/system/functions/"):
            return self._list(environ, start_response)
        if raw.split("?")[0] == "/system/secrets" and self.secrets is not None:
            return self._secrets(environ, start_response)
        parts = split_function_path(raw)
        if parts is None:
            return _text(start_response, "404 Not Found", f"no route for {environ.get('PATH_INFO', '/')}")
        name, namespace, path = parts
        backend = self.backends.get(name)
        if backend is None or (namespace and namespace != backend.namespace):
            fq = f"{name}.{namespace or 'openfaas-fn'}"
            return _text(start_response, "404 Not Found", f"error finding function {fq}: not found")
        return self._forward(backend, path, environ, start_response)

    def _secrets(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if not self.secrets.authorized(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="Restricted"')])
            return [b"Unauthorized\n"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        status, doc = self.secrets.handle(environ.get("REQUEST_METHOD", "GET"), body, "openfaas-fn")
        reasons = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        line = f"{status} {reasons.get(status, 'Conflict' if status == 409 else 'Error')}"
        if isinstance(doc, list):
            raw = json.dumps(doc).encode()
            start_response(line, [("Content-Type", "application/json"), ("Content-Length", str(len(raw)))])
            return [raw]
        return _text(start_response, line, doc or "")

    def _list(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        items = [
            {
                "name": b.name,
                "namespace": b.namespace,
                "image": b.image,
                "replicas": 1,
                "availableReplicas": 1,
                "labels": dict(b.labels),
                "annotations": dict(b.annotations),
            }
            for b in self.backends.values()
        ]
        body = json.dumps(items).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _forward(
        self, backend: Backend, path: str, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        headers: dict[str, str] = {}
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").title()
                if name.lower() not in HOP_BY_HOP and name.lower() != "host":
                    headers[name] = value
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        client = environ.get("REMOTE_ADDR", "")
        headers["X-Forwarded-For"] = (
            f"{headers['X-Forwarded-For']}, {client}" if headers.get("X-Forwarded-For") else client
        )
        if self.root_function is not None or not headers.get("X-Forwarded-Host"):
            headers["X-Forwarded-Host"] = environ.get("HTTP_HOST", "")
        headers.setdefault("X-Call-Id", str(uuid.uuid4()))
        headers["X-Start-Time"] = str(time.time_ns())
        conn = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=self.timeout)
        try:
            conn.request(environ["REQUEST_METHOD"], path, body=body, headers=headers)
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            return _text(
                start_response, "502 Bad Gateway", f"function {backend.name}.{backend.namespace} is not answering: {e}"
            )
        out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
        out.append(("X-Call-Id", headers["X-Call-Id"]))
        start_response(f"{resp.status} {resp.reason}", out)
        return _stream(resp, conn)


def _stream(resp: http.client.HTTPResponse, conn: http.client.HTTPConnection) -> Iterator[bytes]:
    """Pass chunks on as they arrive (log streams are long-lived ndjson)."""
    try:
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                break
            yield chunk
    except OSError:
        pass
    finally:
        conn.close()
