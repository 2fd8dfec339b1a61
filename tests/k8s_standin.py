"""A stand-in for the Kubernetes API (no kube-apiserver can run here).

Written from the API's documented semantics (platform.md, test-peers.md): Secrets with
base64 `data`; `metadata.resourceVersion` compare-and-swap on PUT (409 Conflict on a
stale version); PUT never creates (404); POST creates (409 AlreadyExists); merge-patch;
errors as `Status` objects; a bearer token is required; the discovery documents kubectl
reads (`/api`, `/api/v1`, `/apis`); the iam.openfaas.com/v1 custom resources, listed.
Faults can be injected: an HTTP error or a delay for the next matching requests, and a
concurrent writer that bumps a Secret just before a PUT lands.

RBAC can be enforced from the project's own manifests (`enforce_rbac`): the token is then
the `default` service account of `openfaas-fn` (what every CE function runs as) and a
request is allowed only by a Role bound to it, as the API server decides (resourceNames
limit get/update/patch/delete; list and create are never limited by name).
`KubeletStandIn` projects Secrets into a pod's mount folder the way the kubelet does:
each key a file, swapped whole, and only `delay` seconds after the Secret changed.
"""

from __future__ import annotations

import base64
import copy
import http.server
import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TOKEN = "test-service-account-token"
GROUP = "iam.openfaas.com"
PLURALS = {"jwtissuers": "JwtIssuer", "policies": "Policy", "roles": "Role"}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class KubeStandIn:
    def __init__(self, tls: tuple[str, str] | None = None, clock: Callable[[], float] = time.time) -> None:
        """tls: (certificate, key) to serve https, as a real API server does (kubectl sends no token over http)."""
        self.clock = clock
        self.changed_at: dict[tuple[str, str], float] = {}
        self.history: dict[tuple[str, str], list[tuple[float, dict[str, Any]]]] = {}
        self.rbac: list[dict[str, Any]] | None = None  # rules bound to the token's account, when enforced
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.custom: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.version = 100
        self.lock = threading.Lock()
        self.log: list[tuple[str, str]] = []
        self.faults: list[dict[str, Any]] = []
        self.bump_before_put = 0
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def reply(self, code: int, doc: Any) -> None:
                raw = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                stand_in.log.append((self.command, path))
                for fault in list(stand_in.faults):
                    if fault["method"] in (None, self.command) and fault["count"] > 0:
                        fault["count"] -= 1
                        if fault.get("delay"):
                            time.sleep(fault["delay"])
                        if fault.get("code"):
                            return self.reply(fault["code"], status(fault["code"], "InternalError", "injected fault"))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.reply(401, status(401, "Unauthorized", "Unauthorized"))
                denied = stand_in.authorize(self.command, path)
                if denied:
                    return self.reply(403, status(403, "Forbidden", denied))
                code, doc = stand_in.route(self.command, path, self.headers.get("Content-Type", ""), raw)
                self.reply(code, doc)

            do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        scheme = "http"
        if tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> KubeStandIn:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def inject(self, *, method: str | None = None, code: int | None = None, delay: float = 0.0, count: int = 1) -> None:
        self.faults.append({"method": method, "code": code, "delay": delay, "count": count})

    def _next_version(self) -> str:
        self.version += 1
        return str(self.version)

    def _remember(self, key: tuple[str, str]) -> None:
        """Every version with the time it was written (called under the lock, after the write)."""
        self.history.setdefault(key, []).append((self.clock(), copy.deepcopy(self.secrets[key])))

    def as_of(self, key: tuple[str, str], when: float) -> dict[str, Any] | None:
        """The Secret as it was at `when` (what a kubelet that synced then would have)."""
        with self.lock:
            versions = [doc for t, doc in self.history.get(key, []) if t <= when]
        return versions[-1] if versions else None

    def enforce_rbac(
        self, manifests: list[dict[str, Any]], account: tuple[str, str] = ("openfaas-fn", "default")
    ) -> None:
        """Allow only what the Roles bound (by RoleBindings in `manifests`) to `account` allow."""
        roles = {(m["metadata"]["namespace"], m["metadata"]["name"]): m for m in manifests if m.get("kind") == "Role"}
        rules: list[dict[str, Any]] = []
        for m in manifests:
            if m.get("kind") != "RoleBinding":
                continue
            if not any(
                s.get("kind") == "ServiceAccount" and (s.get("namespace"), s.get("name")) == account
                for s in m.get("subjects") or []
            ):
                continue
            role = roles.get((m["metadata"]["namespace"], m["roleRef"]["name"]))
            for rule in (role or {}).get("rules") or []:
                rules.append({**rule, "namespace": m["metadata"]["namespace"]})
        self.rbac = rules

    def authorize(self, method: str, path: str) -> str | None:
        """None when allowed; the API server's Forbidden message otherwise."""
        if self.rbac is None:
            return None
        # Core resources (/api/v1/...) are API group ""; custom ones are /apis/<group>/<version>/...
        m = re.fullmatch(r"/(?:api/v1|apis/([^/]+)/[^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?", path)
        if not m:
            return None  # discovery documents are readable by any authenticated account
        group, ns, resource, name = m.group(1) or "", m.group(2), m.group(3), m.group(4)
        verb = {"GET": "get" if name else "list", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, "create"
        )
        for rule in self.rbac:
            if rule["namespace"] != ns or group not in rule.get("apiGroups", []):
                continue
            if resource not in rule.get("resources", []) or verb not in rule.get("verbs", []):
                continue
            names = rule.get("resourceNames")
            if names and (name is None or name not in names):
                continue
            return None
        return (
            f'{resource} "{name or ""}" is forbidden: User "system:serviceaccount:openfaas-fn:default" cannot '
            f'{verb} resource "{resource}" in API group "{group}" in the namespace "{ns}"'
        )

    def put_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        with self.lock:
            self.changed_at[(namespace, name)] = self.clock()
            self.secrets[(namespace, name)] = {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "resourceVersion": self._next_version(),
                    "uid": f"uid-{name}",
                },
                "data": data,
            }
            self._remember((namespace, name))

    def route(self, method: str, path: str, content_type: str, raw: bytes) -> tuple[int, Any]:
        if path == "/version":
            return 200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-standin", "platform": "linux/amd64"}
        if path == "/api":
            return 200, {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}],
            }
        if path == "/api/v1":
            return 200, {
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [
                    {
                        "name": "secrets",
                        "singularName": "secret",
                        "namespaced": True,
                        "kind": "Secret",
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                        "shortNames": [],
                    }
                ],
            }
        if path == "/apis":
            return 200, {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": GROUP,
                        "versions": [{"groupVersion": f"{GROUP}/v1", "version": "v1"}],
                        "preferredVersion": {"groupVersion": f"{GROUP}/v1", "version": "v1"},
                    }
                ],
            }
        if path == f"/apis/{GROUP}/v1":
            return 200, {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{GROUP}/v1",
                "resources": [
                    {"name": p, "singularName": k.lower(), "namespaced": True, "kind": k, "verbs": ["get", "list"]}
                    for p, k in PLURALS.items()
                ],
            }
        m = re.fullmatch(rf"/apis/{GROUP}/v1/namespaces/([^/]+)/([^/]+)", path)
        if m and method == "GET" and m.group(2) in PLURALS:
            items = self.custom.get((m.group(1), m.group(2)), [])
            return 200, {
                "apiVersion": f"{GROUP}/v1",
                "kind": f"{PLURALS[m.group(2)]}List",
                "metadata": {"resourceVersion": str(self.version)},
                "items": items,
            }
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets(?:/([^/]+))?", path)
        if not m:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        ns, name = m.group(1), m.group(2)
        with self.lock:
            if name is None:
                if method != "POST":
                    return 405, status(405, "MethodNotAllowed", "method not allowed")
                doc = json.loads(raw)
                key = (ns, doc["metadata"]["name"])
                if key in self.secrets:
                    return 409, status(409, "AlreadyExists", f'secrets "{key[1]}" already exists')
                doc["metadata"].update(namespace=ns, resourceVersion=self._next_version())
                self.secrets[key] = doc
                self.changed_at[key] = self.clock()
                self._remember(key)
                return 201, doc
            current = self.secrets.get((ns, name))
            if current is None:
                return 404, status(404, "NotFound", f'secrets "{name}" not found')
            if method == "GET":
                return 200, copy.deepcopy(current)
            if method == "PUT":
                if self.bump_before_put > 0:
                    self.bump_before_put -= 1
                    current["metadata"]["resourceVersion"] = self._next_version()  # a concurrent writer won
                doc = json.loads(raw)
                sent = doc.get("metadata", {}).get("resourceVersion")
                if sent and sent != current["metadata"]["resourceVersion"]:
                    return 409, status(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on secrets "{name}": the object has been modified; please apply your changes to the latest version and try again',
                    )
                doc["metadata"].update(
                    namespace=ns, name=name, resourceVersion=self._next_version(), uid=current["metadata"].get("uid")
                )
                self.secrets[(ns, name)] = doc
                self.changed_at[(ns, name)] = self.clock()
                self._remember((ns, name))
                return 200, copy.deepcopy(doc)
            if method == "PATCH" and content_type.startswith("application/merge-patch+json"):
                patch = json.loads(raw)
                current.setdefault("data", {}).update(patch.get("data") or {})
                current["metadata"]["resourceVersion"] = self._next_version()
                self.changed_at[(ns, name)] = self.clock()
                self._remember((ns, name))
                return 200, copy.deepcopy(current)
            return 405, status(405, "MethodNotAllowed", "method not allowed")


class KubeletStandIn:
    """One pod's secret volume: every key of each listed Secret as a file, updated `delay` late.

    Like the kubelet, it swaps the files whole (never half-written) and only once the
    Secret has been changed for at least `delay` seconds (its sync period plus cache),
    so a pod sees each write late, and different pods (different delays) disagree for a while.
    """

    def __init__(self, api: KubeStandIn, namespace: str, secrets: list[str], folder: Path, delay: float) -> None:
        self.api = api
        self.namespace = namespace
        self.secrets = secrets
        self.folder = folder
        self.delay = delay
        self.seen: dict[str, str] = {}
        folder.mkdir(parents=True, exist_ok=True)
        self.sync(force=True)

    def sync(self, now: float | None = None, force: bool = False) -> None:
        """Show each Secret as it was `delay` ago (the latest version when `force`, as at pod start)."""
        now = self.api.clock() if now is None else now
        for name in self.secrets:
            key = (self.namespace, name)
            doc = self.api.as_of(key, float("inf") if force else now - self.delay)
            if doc is None:
                continue
            version = doc["metadata"]["resourceVersion"]
            if name in self.seen and int(self.seen[name]) >= int(version):
                continue  # never older than what the pod already has
            for k, v in (doc.get("data") or {}).items():
                tmp = self.folder / f".{k}.tmp"
                tmp.write_bytes(base64.b64decode(v))
                os.replace(tmp, self.folder / k)
            self.seen[name] = version
