"""An in-memory OpenFaaS provider: the REST API faas-cli uses, answered as faas-netes (CE) answers it.

One implementation serves `make run` and the tests' gateway stand-in, so the two can never
drift apart and neither is kinder than the real thing (real-peers.md):

- `/system/*` needs the admin's basic auth (401 otherwise);
- bodies are read like Go's encoding/json (case-insensitive keys, the last one wins), and
  the namespace where faas-netes reads it (query for GET, delete and scale; body for
  deploys and secret writes); CE accepts only its one namespace (`namespace must be:
  openfaas-fn`, 400), unless the provider is built with several (faasd, Enterprise);
- deploy/update/delete/describe/list, scale (0 is refused on CE), secrets CRUD whose values
  are never returned (POST on an existing one 409, PUT on a missing one 404, writes 202),
  `/system/namespaces`, `/system/info`;
- logs as `application/x-ndjson` lines with RFC 3339 timestamps, from the functions' own
  output, `tail`/`since`/`follow` as faas-cli sends them.

Functions the local gateway runs (stack.yml) are scaled and removed through `runtime`;
functions deployed through the API are records only (their images are not run locally).
Faults are injectable: `log_source` replaces where log lines come from.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs

from .go_decode import DEPLOYMENT_FIELDS as _DEPLOYMENT
from .go_decode import unmarshal

DEFAULT_NAMESPACE = "openfaas-fn"
StartResponse = Callable[..., Any]
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 409: "Conflict"}
_REASONS.update({405: "Method Not Allowed", 500: "Internal Server Error"})


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_time(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class LogLine:
    ts: float
    instance: str
    text: str


class LogBook:
    """The last lines each function wrote, and a way to wait for the next ones (follow)."""

    def __init__(self, keep: int = 2000) -> None:
        self.keep = keep
        self._lines: dict[tuple[str, str], deque[LogLine]] = {}
        self._cond = threading.Condition()

    def add(self, namespace: str, name: str, instance: str, text: str) -> None:
        with self._cond:
            lines = self._lines.setdefault((namespace, name), deque(maxlen=self.keep))
            lines.append(LogLine(time.time(), instance, text))
            self._cond.notify_all()

    def lines(
        self, namespace: str, name: str, *, since: float | None, tail: int, follow: bool, stop: Callable[[], bool]
    ) -> Iterator[LogLine]:
        with self._cond:
            past = [ln for ln in self._lines.get((namespace, name), ()) if since is None or ln.ts >= since]
        if tail >= 0:
            past = past[-tail:] if tail else []
        yield from past
        if not follow:
            return
        seen = past[-1].ts if past else time.time()
        while not stop():
            with self._cond:
                self._cond.wait(timeout=0.5)
                new = [ln for ln in self._lines.get((namespace, name), ()) if ln.ts > seen]
            for ln in new:
                seen = ln.ts
                yield ln


class SecretStore(Protocol):
    def names(self, namespace: str) -> list[str]: ...
    def exists(self, namespace: str, name: str) -> bool: ...
    def put(self, namespace: str, name: str, value: bytes) -> None: ...
    def delete(self, namespace: str, name: str) -> bool: ...


class MemorySecrets:
    """Secrets in memory; `on_write(namespace, name, value)` mirrors writes elsewhere (a Kubernetes stand-in)."""

    def __init__(self, on_write: Callable[[str, str, bytes], None] | None = None) -> None:
        self.values: dict[tuple[str, str], bytes] = {}
        self.on_write = on_write

    def names(self, namespace: str) -> list[str]:
        return [n for (ns, n) in self.values if ns == namespace]

    def exists(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.values

    def put(self, namespace: str, name: str, value: bytes) -> None:
        self.values[(namespace, name)] = value
        if self.on_write is not None:
            self.on_write(namespace, name, value)

    def delete(self, namespace: str, name: str) -> bool:
        return self.values.pop((namespace, name), None) is not None


class Runtime(Protocol):
    """What runs the functions of the stack (the local gateway's processes)."""

    def scale(self, namespace: str, name: str, replicas: int) -> int: ...
    def remove(self, namespace: str, name: str) -> None: ...


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Provider:
    def __init__(
        self,
        credentials: Callable[[], tuple[str, str] | None],
        *,
        namespaces: Iterable[str] | None = None,
        secrets: SecretStore | None = None,
        runtime: Runtime | None = None,
        release: str = "0.0.0-local",
    ) -> None:
        """`namespaces`: None is CE (only openfaas-fn); a list models faasd or the Enterprise editions."""
        self.credentials = credentials
        self.multi_namespace = namespaces is not None
        self.namespaces = list(namespaces) if namespaces is not None else [DEFAULT_NAMESPACE]
        self.secrets: SecretStore = secrets if secrets is not None else MemorySecrets()
        self.runtime = runtime
        self.release = release
        self.functions: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs = LogBook()
        # Where log lines come from (fault injection): (namespace, name, since, tail, follow, stop) -> lines.
        self.log_source: Callable[..., Iterator[LogLine]] = self._book_lines
        self._lock = threading.Lock()

    # -- state ------------------------------------------------------------------------------

    def register(self, record: dict[str, Any]) -> None:
        """A function that exists without an API call (the stack's, started by the local gateway)."""
        record.setdefault("namespace", DEFAULT_NAMESPACE)
        record.setdefault("replicas", 1)
        record.setdefault("availableReplicas", record["replicas"])
        record.setdefault("createdAt", rfc3339(time.time()))
        self.functions[(record["namespace"], record["name"])] = record

    def _book_lines(self, namespace: str, name: str, since: float | None, tail: int, follow: bool, stop: Any):
        return self.logs.lines(namespace, name, since=since, tail=tail, follow=follow, stop=stop)

    # -- HTTP -------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        if not self._authorized(environ.get("HTTP_AUTHORIZATION")):
            start_response(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Basic realm="Restricted"'), ("Content-Type", "text/plain; charset=utf-8")],
            )
            return [b"Unauthorized\n"]
        raw = _read(environ)
        try:
            status, body, content_type = self.route(method, path, query, raw, environ)
        except ApiError as e:
            status, body, content_type = e.status, (str(e) + "\n").encode(), "text/plain; charset=utf-8"
        if isinstance(body, Iterator):
            start_response(f"{status} {_REASONS.get(status, 'OK')}", [("Content-Type", content_type)])
            return body
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = [("Content-Type", content_type), ("Content-Length", str(len(data)))]
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [data]

    def _authorized(self, header: str | None) -> bool:
        expected = self.credentials()
        if expected is None or not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user.encode(), expected[0].encode()) & hmac.compare_digest(
            password.encode(), expected[1].encode()
        )

    def _namespace(self, value: Any) -> str:
        ns = value if isinstance(value, str) and value else DEFAULT_NAMESPACE
        if ns not in self.namespaces:
            if not self.multi_namespace:
                raise ApiError(400, f"namespace must be: {DEFAULT_NAMESPACE}")
            raise ApiError(400, f"namespace {ns} is not valid")
        return ns

    def route(
        self, method: str, path: str, query: dict[str, str], raw: bytes, environ: dict[str, Any]
    ) -> tuple[int, Any, str]:
        js = "application/json"
        if path == "/system/info" and method == "GET":
            info = {
                "provider": {
                    "provider": "faas-netes (openfaas-iam local provider)",
                    "orchestration": "local",
                    "version": {"sha": "local", "release": self.release},
                },
                "version": {"sha": "local", "release": self.release},
                "arch": "x86_64",
            }
            return 200, info, js
        if path == "/system/functions":
            return self._functions(method, query, raw)
        if path.startswith("/system/function/") and method == "GET":
            ns = self._namespace(query.get("namespace"))
            fn = self.functions.get((ns, path.rsplit("/", 1)[1]))
            if fn is None:
                raise ApiError(404, "function not found")
            return 200, fn, js
        if path.startswith("/system/scale-function/") and method == "POST":
            return self._scale(path.rsplit("/", 1)[1], query, raw)
        if path == "/system/logs" and method == "GET":
            return self._logs(query, environ)
        if path == "/system/secrets":
            return self._secrets(method, query, raw)
        if path == "/system/namespaces" and method == "GET":
            return 200, list(self.namespaces), js
        if path.startswith("/system/namespace") and self.multi_namespace:
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if method == "GET":
                return (200, {"name": name}, js) if name in self.namespaces else (404, b"namespace not found\n", js)
            if method in ("POST", "PUT"):
                doc = self._body(raw, ("name",))
                name = doc.get("name") or name
                if name not in self.namespaces:
                    self.namespaces.append(name)
                return 202, b"", js
            if method == "DELETE" and name in self.namespaces:
                self.namespaces.remove(name)
                return 202, b"", js
        raise ApiError(404, "404 page not found")

    @staticmethod
    def _body(raw: bytes, fields: tuple[str, ...]) -> dict[str, Any]:
        try:
            return unmarshal(raw, fields)
        except (ValueError, RecursionError):
            raise ApiError(400, "unable to unmarshal the request body") from None

    def _functions(self, method: str, query: dict[str, str], raw: bytes) -> tuple[int, Any, str]:
        if method == "GET":
            ns = self._namespace(query.get("namespace"))
            return 200, [f for (n, _), f in self.functions.items() if n == ns], "application/json"
        if method == "DELETE":
            body = self._body(raw, ("functionName",))
            ns = self._namespace(query.get("namespace"))  # faas-netes: the query, never the body
            name = body.get("functionName")
            if not isinstance(name, str) or not name:
                raise ApiError(400, "Bad request: functionName is required")
            with self._lock:
                if self.functions.pop((ns, name), None) is None:
                    raise ApiError(404, f"function {name} not found")
            if self.runtime is not None:
                self.runtime.remove(ns, name)
            return 202, b"", "text/plain"
        if method not in ("POST", "PUT"):
            raise ApiError(405, "method not allowed")
        doc = self._body(raw, _DEPLOYMENT)
        name = doc.get("service")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "service: is required")
        if not _DNS_LABEL.fullmatch(name):  # faas-netes's ValidateDeployRequest
            raise ApiError(400, f"({name}) must be a valid DNS entry for service name")
        ns = self._namespace(doc.get("namespace"))
        with self._lock:
            existing = self.functions.get((ns, name))
            if method == "PUT" and existing is None:
                raise ApiError(404, f"deployment not found: {name}")
            if method == "POST" and existing is not None:
                raise ApiError(500, f'unable create Deployment: deployments.apps "{name}" already exists')
            record = {k: v for k, v in doc.items() if k not in ("service", "namespace") and v not in (None, "")}
            record.update(name=name, namespace=ns)
            replicas = existing["replicas"] if existing else 1
            min_scale = (record.get("labels") or {}).get("com.openfaas.scale.min")
            if isinstance(min_scale, str) and min_scale.isdigit():
                replicas = max(replicas, int(min_scale))
            record.update(replicas=replicas, availableReplicas=replicas)
            record["createdAt"] = (existing or {}).get("createdAt") or rfc3339(time.time())
            self.functions[(ns, name)] = record
        return 202, b"", "text/plain"

    def _scale(self, name: str, query: dict[str, str], raw: bytes) -> tuple[int, Any, str]:
        ns = self._namespace(query.get("namespace"))  # faas-netes: the query, never the body
        body = self._body(raw, ("replicas",))
        replicas = body.get("replicas", 0)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ApiError(400, "Cannot parse request. Please pass valid JSON.")
        if replicas == 0 and not self.multi_namespace:
            raise ApiError(400, "replicas cannot be set to 0 in OpenFaaS CE")
        fn = self.functions.get((ns, name))
        if fn is None:
            raise ApiError(500, f"Unable to lookup function deployment {name}")
        available = self.runtime.scale(ns, name, replicas) if self.runtime is not None else replicas
        fn.update(replicas=replicas, availableReplicas=available)
        return 202, b"", "text/plain"

    def _logs(self, query: dict[str, str], environ: dict[str, Any]) -> tuple[int, Any, str]:
        name = query.get("name", "")
        ns = self._namespace(query.get("namespace"))
        if (ns, name) not in self.functions:
            raise ApiError(404, f"function {name} not found")
        since = _parse_time(query["since"]) if query.get("since") else None
        tail = int(query["tail"]) if query.get("tail", "").lstrip("-").isdigit() else -1
        follow = query.get("follow", "").lower() == "true"
        instance = query.get("instance", "")
        closed = threading.Event()
        source = self.log_source(ns, name, since, tail, follow, closed.is_set)

        def ndjson() -> Iterator[bytes]:
            try:
                for ln in source:
                    if instance and ln.instance != instance:
                        continue
                    msg = {"name": name, "namespace": ns, "instance": ln.instance, "timestamp": rfc3339(ln.ts)}
                    msg["text"] = ln.text
                    yield json.dumps(msg).encode() + b"\n"
            finally:
                closed.set()

        return 200, _Closing(ndjson(), closed), "application/x-ndjson"

    def _secrets(self, method: str, query: dict[str, str], raw: bytes) -> tuple[int, Any, str]:
        if method == "GET":
            ns = self._namespace(query.get("namespace"))
            return 200, [{"name": n, "namespace": ns} for n in self.secrets.names(ns)], "application/json"
        if method not in ("POST", "PUT", "DELETE"):
            raise ApiError(405, "method not allowed")
        doc = self._body(raw, ("name", "namespace", "value", "rawValue"))
        ns = self._namespace(doc.get("namespace"))  # faas-netes' resolver reads the body for writes
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "a secret needs a name")
        with self._lock:
            exists = self.secrets.exists(ns, name)
            if method == "DELETE":
                if not exists:
                    raise ApiError(404, f'secret "{name}" not found')
                self.secrets.delete(ns, name)
                return 202, b"", "text/plain"
            if isinstance(doc.get("rawValue"), str):
                try:
                    value = base64.b64decode(doc["rawValue"], validate=True)
                except ValueError:
                    raise ApiError(400, "rawValue is not base64") from None
            elif isinstance(doc.get("value"), str):
                value = doc["value"].encode()
            else:
                raise ApiError(400, "a secret needs a value or rawValue")
            if method == "POST" and exists:
                raise ApiError(409, f'secret "{name}" already exists')
            if method == "PUT" and not exists:
                raise ApiError(404, f'secret "{name}" not found')
            self.secrets.put(ns, name, value)
        return 202, b"", "text/plain"


class _Closing:
    """A streamed body whose close() (the client went away) also ends a follow."""

    def __init__(self, body: Iterator[bytes], closed: threading.Event) -> None:
        self._body = body
        self._closed = closed

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def __next__(self) -> bytes:
        return next(self._body)

    def close(self) -> None:
        self._closed.set()
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


def _read(environ: dict[str, Any]) -> bytes:
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked" or environ.get("wsgi.input_terminated"):
        return stream.read()
    return b""
