"""A stand-in for the OpenFaaS gateway's REST API (no real gateway can run here).

Written from the documented contract (platform.md, real-peers.md): `/system/*` behind basic
auth (admin + the basic-auth secret), bodies decoded like Go's encoding/json
(case-insensitive keys, the last one wins), the namespace read where faas-netes reads it
(query for GET, delete and scale; body for deploys and secret writes; default
openfaas-fn), each request's target recorded as faas-netes and faasd would act on it, PUT on an unknown function answers 404 so
faas-cli falls back to POST, logs are a streamed ndjson body. It records every
request that reached it, so tests can prove that nothing denied ever did.

`/system/secrets` behaves as faas-netes does (pkg/handlers/secrets.go): POST creates (409
when it exists), PUT replaces the whole data with one key named like the secret (404 when
it does not exist), both answer 202; GET lists names only, a value is never returned. With a
Kubernetes stand-in given, secrets are Secrets there (one key, named like the secret), so
a KubeletStandIn can mount them late.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from go_reader import faas_netes_target, faasd_target, go_unmarshal, secrets_mounted

# Every field the routes below read, decoded the way Go does (case-insensitive, last key wins).
_FIELDS = ("service", "image", "namespace", "functionName", "serviceName", "replicas", "name", "value", "secrets")


class GatewayStandIn:
    def __init__(self, credentials: Callable[[], tuple[str, str]], kube: Any = None) -> None:
        self.credentials = credentials
        self.kube = kube
        self.requests: list[dict[str, Any]] = []
        self.functions: dict[tuple[str, str], dict[str, Any]] = {
            ("openfaas-fn", "figlet"): {"name": "figlet", "namespace": "openfaas-fn", "replicas": 1}
        }
        self.secrets: dict[tuple[str, str], str] = {}
        self.namespaces = ["openfaas-fn", "staging", "prod", "dev-alice", "dev-bob"]
        self.log_delay = 0.05
        self.log_lines = 3
        stand_in = self

        self.connections: set[Any] = set()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                stand_in.connections.add(self.connection)

            def finish(self) -> None:
                stand_in.connections.discard(self.connection)
                super().finish()

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: Any = None, content_type: str = "application/json") -> None:
                raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                user, password = stand_in.credentials()
                expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
                authed = self.headers.get("Authorization") == expected
                try:
                    body = go_unmarshal(raw, _FIELDS)
                    bad_body = False
                except (ValueError, RecursionError):
                    body, bad_body = {"_raw": raw.decode("utf-8", "replace")}, True
                try:
                    target = faas_netes_target(self.command, url.path, query, raw)
                    target_faasd = faasd_target(self.command, url.path, query, raw)
                    mounts = secrets_mounted(raw) if url.path == "/system/functions" else []
                except (ValueError, RecursionError):
                    target = target_faasd = None
                    mounts = []
                stand_in.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "query": query,
                        "raw_query": url.query,
                        "body": body,
                        "raw": raw,
                        "authed": authed,
                        "target": target,
                        "target_faasd": target_faasd,
                        "secrets": mounts,
                    }
                )
                if not authed:
                    self._reply(401, b"Unauthorized", "text/plain")
                    return
                if bad_body:  # encoding/json refuses it: the providers answer 400
                    self._reply(400, b"unable to unmarshal the request body", "text/plain")
                    return
                stand_in.route(self, self.command, url.path, query, body)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.handler_class = Handler
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayStandIn:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """The gateway goes down: the port is closed and open keep-alive connections are cut."""
        self.server.shutdown()
        self.server.server_close()
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def restart(self) -> None:
        """The gateway comes back on the same port."""
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self.handler_class)
        self.start()

    def route(self, h: Any, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> None:
        ns_q = query.get("namespace") or "openfaas-fn"
        ns_b = body.get("namespace") or "openfaas-fn"
        if path == "/system/info":
            return h._reply(
                200,
                {
                    "provider": {"provider": "faas-netes-standin", "orchestration": "kubernetes"},
                    "version": {"release": "0.0.0"},
                },
            )
        if path == "/system/functions":
            if method == "GET":
                return h._reply(200, [f for (ns, _), f in self.functions.items() if ns == ns_q])
            if method == "PUT":
                if (ns_b, body.get("service")) not in self.functions:
                    return h._reply(404, b"function not found", "text/plain")
                self.functions[(ns_b, body["service"])].update(image=body.get("image"))
                return h._reply(202)
            if method == "POST":
                self.functions[(ns_b, body["service"])] = {
                    "name": body["service"],
                    "namespace": ns_b,
                    "replicas": 1,
                    "image": body.get("image"),
                }
                return h._reply(202)
            if method == "DELETE":  # faas-netes reads this namespace from the query, never the body
                if self.functions.pop((ns_q, body.get("functionName")), None) is None:
                    return h._reply(404, b"function not found", "text/plain")
                return h._reply(202)
        if path.startswith("/system/function/") and method == "GET":
            fn = self.functions.get((ns_q, path.rsplit("/", 1)[1]))
            return h._reply(200, fn) if fn else h._reply(404, b"function not found", "text/plain")
        if path.startswith("/system/scale-function/") and method == "POST":  # namespace from the query
            fn = self.functions.get((ns_q, path.rsplit("/", 1)[1]))
            if fn is None:
                return h._reply(404, b"function not found", "text/plain")
            fn["replicas"] = body.get("replicas", 0)
            return h._reply(202)
        if path == "/system/logs" and method == "GET":
            h.send_response(200)
            h.send_header("Content-Type", "application/x-ndjson")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for i in range(self.log_lines):
                line = (
                    json.dumps(
                        {"name": query.get("name"), "namespace": ns_q, "text": f"line {i}", "timestamp": time.time()}
                    ).encode()
                    + b"\n"
                )
                h.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                h.wfile.flush()
                time.sleep(self.log_delay)
            h.wfile.write(b"0\r\n\r\n")
            return None
        if path == "/system/secrets":
            if method == "GET":
                return h._reply(200, [{"name": n, "namespace": ns} for (ns, n) in self.secrets if ns == ns_q])
            if method in ("POST", "PUT"):
                name = body.get("name")
                if not isinstance(name, str) or not name:
                    return h._reply(400, b"a secret needs a name", "text/plain")
                if "rawValue" in body:
                    value = base64.b64decode(body["rawValue"])
                elif isinstance(body.get("value"), str):
                    value = body["value"].encode()
                else:
                    return h._reply(400, b"a secret needs a value or rawValue", "text/plain")
                exists = (ns_b, name) in self.secrets
                if method == "POST" and exists:
                    return h._reply(409, f'secret "{name}" already exists'.encode(), "text/plain")
                if method == "PUT" and not exists:
                    return h._reply(404, f'secret "{name}" not found'.encode(), "text/plain")
                self.secrets[(ns_b, name)] = value.decode("utf-8", "replace")
                if self.kube is not None:
                    self.kube.put_secret(ns_b, name, {name: base64.b64encode(value).decode()})
                return h._reply(202)  # faas-netes answers 202 Accepted to both
            if method == "DELETE":
                self.secrets.pop((ns_b, body.get("name")), None)
                return h._reply(200)
        if path == "/system/namespaces" and method == "GET":
            return h._reply(200, self.namespaces)
        if path.startswith("/system/namespace"):
            return h._reply(200 if method == "GET" else 202, {"name": path.rsplit("/", 1)[-1] or body.get("name")})
        return h._reply(404, b"not found", "text/plain")
