"""The routing half of the local gateway: `/function/<name>[.<namespace>][/<path>]`.

Like the OpenFaaS gateway it strips `/function/<name>` and forwards the rest of the
path, the query, the method, the headers and the body unchanged, adds
`X-Forwarded-For`/`X-Forwarded-Host` (a client's own X-Forwarded-Host is kept, as the CE
gateway does)/`X-Call-Id`, streams the response back, and answers 404 for a function it
does not know and 502 when one is not answering.
"""

from __future__ import annotations

import http.client
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
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


class Backend:
    """One function's replicas: requests go round-robin over their ports, as a Service spreads them."""

    def __init__(self, name: str, namespace: str, ports: list[int]) -> None:
        self.name = name
        self.namespace = namespace
        self.ports = list(ports)
        self._next = itertools.count()

    def port(self) -> int | None:
        ports = self.ports
        return ports[next(self._next) % len(ports)] if ports else None


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
    """A WSGI application; `backends` may change while it runs (functions restart, scale).

    `/system/*` goes to the provider (`localgw.provider`), which checks the admin's basic
    auth like the real gateway. With `root_function`, it plays an Ingress host route
    instead of the gateway: every path goes to that one function, and X-Forwarded-Host is
    always the Host it was asked for. Which Host values a listener answers for is
    `host_guard`'s job.
    """

    def __init__(
        self,
        backends: dict[str, Backend],
        *,
        timeout: float = 65.0,
        root_function: str | None = None,
        provider: Any = None,
    ) -> None:
        self.backends = backends
        self.timeout = timeout
        self.root_function = root_function
        self.provider = provider

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
        if raw.startswith("/system/") and self.provider is not None:
            return self.provider(environ, start_response)
        parts = split_function_path(raw)
        if parts is None:
            return _text(start_response, "404 Not Found", f"no route for {environ.get('PATH_INFO', '/')}")
        name, namespace, path = parts
        backend = self.backends.get(name)
        if backend is None or (namespace and namespace != backend.namespace):
            fq = f"{name}.{namespace or 'openfaas-fn'}"
            return _text(start_response, "404 Not Found", f"error finding function {fq}: not found")
        return self._forward(backend, path, environ, start_response)

    def _forward(
        self, backend: Backend, path: str, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        port = backend.port()
        if port is None:
            return _text(
                start_response, "502 Bad Gateway", f"function {backend.name}.{backend.namespace} has no replica running"
            )
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
        # As the CE gateway: X-Forwarded-For is set to the caller's address only when the request has
        # none; a client's own value is passed through unchanged (real-peers.md).
        if not headers.get("X-Forwarded-For"):
            headers["X-Forwarded-For"] = f"{environ.get('REMOTE_ADDR', '')}:{environ.get('REMOTE_PORT', '')}"
        if self.root_function is not None or not headers.get("X-Forwarded-Host"):
            headers["X-Forwarded-Host"] = environ.get("HTTP_HOST", "")
        headers.setdefault("X-Call-Id", str(uuid.uuid4()))
        headers["X-Start-Time"] = str(time.time_ns())
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
        try:
            if body:
                # The gateway forwards request bodies chunked (Transfer-Encoding: chunked), as the real one does.
                headers["Transfer-Encoding"] = "chunked"
                conn.request(environ["REQUEST_METHOD"], path, body=iter((body,)), headers=headers, encode_chunked=True)
            else:
                conn.request(environ["REQUEST_METHOD"], path, headers=headers)
        except OSError:
            pass  # the function may have answered (413) and closed before reading the whole body
        try:
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
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
