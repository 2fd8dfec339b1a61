"""A Kubernetes API stand-in with every kind the install applies, and a stub `kubectl` for it.

`ClusterStandIn` is tests/k8s_standin.py's `KubeStandIn` (Secrets with their semantics, the
IAM custom resources) plus a plain REST store for any other object: POST to a collection
creates (409 if it exists), GET/PUT/DELETE on an item read, replace and delete it (404 when
absent), GET on a collection lists. That is all `scripts/install.sh` needs of the API server.

The stub `kubectl` (`python tests/cluster_standin.py kubectl ...`, put on PATH as `kubectl` by
the install test) speaks to it over HTTP with the stand-in's token, and answers the few
commands the install script runs, printing what the real kubectl prints for them
(`ingress.networking.k8s.io/iam-authz created`, `Error from server (NotFound): ...`). Why a
stub rather than the real kubectl: `kubectl apply` needs the OpenAPI documents and strategic
merge of every kind, which no stand-in here serves. Kustomize rendering is the real
`kubectl kustomize` when REAL_KUBECTL names one, else tests/kustomize_lite.py.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from k8s_standin import GROUP, PLURALS, TOKEN, KubeStandIn, status

# kind (lower case, as typed or as in an object) -> (API prefix, plural, namespaced, the name kubectl prints)
KINDS: dict[str, tuple[str, str, bool, str]] = {
    "namespace": ("/api/v1", "namespaces", False, "namespace"),
    "secret": ("/api/v1", "secrets", True, "secret"),
    "service": ("/api/v1", "services", True, "service"),
    "deployment": ("/apis/apps/v1", "deployments", True, "deployment.apps"),
    "ingress": ("/apis/networking.k8s.io/v1", "ingresses", True, "ingress.networking.k8s.io"),
    "networkpolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True, "networkpolicy.networking.k8s.io"),
    "httproute": ("/apis/gateway.networking.k8s.io/v1", "httproutes", True, "httproute.gateway.networking.k8s.io"),
    "role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True, "role.rbac.authorization.k8s.io"),
    "rolebinding": (
        "/apis/rbac.authorization.k8s.io/v1",
        "rolebindings",
        True,
        "rolebinding.rbac.authorization.k8s.io",
    ),
    "customresourcedefinition": (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
        "customresourcedefinition.apiextensions.k8s.io",
    ),
    "jwtissuers.iam.openfaas.com": (f"/apis/{GROUP}/v1", "jwtissuers", True, f"jwtissuer.{GROUP}"),
    "policies.iam.openfaas.com": (f"/apis/{GROUP}/v1", "policies", True, f"policy.{GROUP}"),
    "roles.iam.openfaas.com": (f"/apis/{GROUP}/v1", "roles", True, f"role.{GROUP}"),
}
ALIASES = {"ns": "namespace", "deploy": "deployment", "ing": "ingress", "crd": "customresourcedefinition"}


class ClusterStandIn(KubeStandIn):
    """KubeStandIn plus a REST store for the other kinds (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, dict[str, Any]] = {}

    def route(self, method: str, path: str, content_type: str, raw: bytes) -> tuple[int, Any]:
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets/([^/]+)", path)
        if m and method == "DELETE":  # the base stand-in never deletes a Secret; an uninstall does
            with self.lock:
                gone = self.secrets.pop((m.group(1), m.group(2)), None)
            if gone is None:
                return 404, status(404, "NotFound", f'secrets "{m.group(2)}" not found')
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if re.fullmatch(r"/api/v1/namespaces/[^/]+/secrets(/[^/]+)?", path) or path in ("/version", "/api", "/apis"):
            return super().route(method, path, content_type, raw)
        m = re.fullmatch(rf"/apis/{GROUP}/v1/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?", path)
        if m and m.group(2) in PLURALS:
            return self._custom(method, m.group(1), m.group(2), m.group(3), raw)
        return self._generic(method, path, raw)

    def _custom(self, method: str, ns: str, plural: str, name: str | None, raw: bytes) -> tuple[int, Any]:
        """The IAM objects live in the base class's `custom` lists, which its config source reads."""
        if name is None and method == "GET":
            return super().route(method, f"/apis/{GROUP}/v1/namespaces/{ns}/{plural}", "", raw)
        with self.lock:
            items = self.custom.setdefault((ns, plural), [])
            found = next((o for o in items if o["metadata"]["name"] == name), None)
            if method == "POST":
                doc = json.loads(raw)
                if any(o["metadata"]["name"] == doc["metadata"]["name"] for o in items):
                    return 409, status(
                        409, "AlreadyExists", f'{plural}.{GROUP} "{doc["metadata"]["name"]}" already exists'
                    )
                doc["metadata"]["namespace"] = ns
                items.append(doc)
                self.version += 1
                return 201, doc
            if found is None:
                return 404, status(404, "NotFound", f'{plural}.{GROUP} "{name}" not found')
            if method == "GET":
                return 200, copy.deepcopy(found)
            items.remove(found)
            self.version += 1
            if method == "PUT":
                items.append(json.loads(raw))
                return 200, items[-1]
            return 200, status(200, "Success", "deleted") | {"status": "Success"}

    def _generic(self, method: str, path: str, raw: bytes) -> tuple[int, Any]:
        with self.lock:
            if method == "POST":
                doc = json.loads(raw)
                item = f"{path}/{doc['metadata']['name']}"
                if item in self.objects:
                    return 409, status(409, "AlreadyExists", f'"{doc["metadata"]["name"]}" already exists')
                doc["metadata"]["resourceVersion"] = self._next_version()
                self.objects[item] = doc
                return 201, doc
            if method == "GET" and _is_collection(path):
                items = [o for p, o in self.objects.items() if p.rsplit("/", 1)[0] == path]
                return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items}
            if path not in self.objects:
                return 404, status(404, "NotFound", f'"{path.rsplit("/", 1)[1]}" not found')
            if method == "GET":
                return 200, copy.deepcopy(self.objects[path])
            if method == "PUT":
                doc = json.loads(raw)
                doc["metadata"]["resourceVersion"] = self._next_version()
                self.objects[path] = doc
                return 200, doc
            if method == "DELETE":
                del self.objects[path]
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
            return 405, status(405, "MethodNotAllowed", "method not allowed")

    def add(self, obj: dict[str, Any]) -> None:
        """An object that exists before the install (OpenFaaS CE's namespaces and gateway, cron-connector)."""
        if obj["kind"] == "Secret":
            data = {k: base64.b64encode(v.encode()).decode() for k, v in obj.get("stringData", {}).items()}
            self.put_secret(obj["metadata"]["namespace"], obj["metadata"]["name"], data)
            return
        self.objects[_item_path(obj)] = obj


def _is_collection(path: str) -> bool:
    """`/api/v1/namespaces/ns/things` or `/apis/g/v/things` (a list), not `.../things/name` (an item)."""
    rest = re.sub(r"^/api/v1|^/apis/[^/]+/[^/]+", "", path).strip("/").split("/")
    return len(rest) in (1, 3)


# -- the stub kubectl ---------------------------------------------------------------------------


def _kind(typed: str) -> tuple[str, str, bool, str]:
    key = ALIASES.get(typed.lower(), typed.lower())
    key = key[:-1] if key.endswith("s") and key[:-1] in KINDS else key
    key = {"ingresse": "ingress", "policie": "policy"}.get(key, key)
    if key in KINDS:
        return KINDS[key]
    for full, spec in KINDS.items():
        if "." in full and typed.lower() in (full, full.split(".")[0], spec[3]):
            return spec
    raise SystemExit(f'error: the server doesn\'t have a resource type "{typed}"')


def _object_kind(obj: dict[str, Any]) -> tuple[str, str, bool, str]:
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    if group == GROUP:
        plural = {v: k for k, v in PLURALS.items()}[obj["kind"]]
        return KINDS[f"{plural}.{GROUP}"]
    return _kind(obj["kind"])


def _item_path(obj: dict[str, Any], namespace: str | None = None) -> str:
    prefix, plural, namespaced, _ = _object_kind(obj)
    ns = obj["metadata"].get("namespace") or namespace or "default"
    middle = f"/namespaces/{ns}" if namespaced else ""
    return f"{prefix}{middle}/{plural}/{obj['metadata']['name']}"


class Api:
    """HTTP to the stand-in, as kubectl does it (bearer token, JSON)."""

    def __init__(self) -> None:
        self.base = os.environ["KUBE_STANDIN_URL"]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        import http.client

        parts = urlsplit(self.base)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        raw = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        conn.request(method, path, body=raw, headers=headers)
        resp = conn.getresponse()
        doc = json.loads(resp.read() or b"null")
        conn.close()
        return resp.status, doc


def _render(folder: str) -> list[dict[str, Any]]:
    real = os.environ.get("REAL_KUBECTL")
    if real:
        out = subprocess.run([real, "kustomize", folder], capture_output=True, text=True, check=False)
        if out.returncode:
            raise SystemExit(out.stderr.strip())
        import yaml

        return [d for d in yaml.safe_load_all(out.stdout) if d]
    from kustomize_lite import render

    return render(Path(folder))


def _load(path: str) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d]


def _not_found(printed: str, name: str) -> int:
    resource = printed.split(".", 1)
    plural = resource[0] + ("es" if resource[0].endswith("s") else "s")
    full = ".".join([plural, *resource[1:]])
    print(f'Error from server (NotFound): {full} "{name}" not found', file=sys.stderr)
    return 1


def kubectl(argv: list[str]) -> int:
    """The stub: global -n/--namespace, then get/create/delete/apply/kustomize as install.sh uses them."""
    args: list[str] = []
    ns = "default"
    flags: dict[str, str] = {}
    multi: dict[str, list[str]] = {"--from-literal": [], "--from-file": []}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-n", "--namespace", "-o", "-l", "-k", "-f", "--raw", "--for"):
            value = argv[i + 1]
            if a in ("-n", "--namespace"):
                ns = value
            else:
                flags[a] = value
            i += 2
            continue
        m = re.fullmatch(r"(--[a-z-]+)=(.*)", a)
        if m and m.group(1) in multi:
            multi[m.group(1)].append(m.group(2))
        elif m:
            flags[m.group(1)] = m.group(2)
        elif a.startswith("--"):
            flags[a] = "true"
        else:
            args.append(a)
        i += 1
    api = Api()
    verb = args[0] if args else ""
    if verb == "kustomize":
        import yaml

        print(yaml.safe_dump_all(_render(args[1]), sort_keys=False), end="")
        return 0
    if verb == "get" and "--raw" in flags:
        code, doc = api.call("GET", flags["--raw"])
        print(json.dumps(doc))
        return 0 if code == 200 else 1
    if verb == "get":
        kinds = args[1].split(",")
        names = args[2:]
        selector = dict(p.split("=", 1) for p in flags["-l"].split(",")) if "-l" in flags else {}
        output = flags.get("-o", "")
        found: list[tuple[str, dict[str, Any]]] = []
        for typed in kinds:
            prefix, plural, namespaced, printed = _kind(typed)
            where = f"{prefix}/namespaces/{ns}/{plural}" if namespaced else f"{prefix}/{plural}"
            if names:
                for name in names:
                    code, doc = api.call("GET", f"{where}/{name}")
                    if code != 200:
                        return _not_found(printed, name)
                    found.append((printed, doc))
            else:
                code, doc = api.call("GET", where)
                for item in doc.get("items", []) if code == 200 else []:
                    labels = item.get("metadata", {}).get("labels") or {}
                    if all(labels.get(k) == v for k, v in selector.items()):
                        found.append((printed, item))
        if not found and not names:
            print(f"No resources found in {ns} namespace.", file=sys.stderr)
            return 0
        for printed, doc in found:
            if output == "name":
                print(f"{printed}/{doc['metadata']['name']}")
            elif output.startswith("jsonpath="):
                m = re.fullmatch(r"jsonpath=\{\.data\.([^}]+)\}", output)
                if not m:
                    raise SystemExit(f"stub kubectl: unsupported {output}")
                print((doc.get("data") or {}).get(m.group(1).replace("\\.", "."), ""), end="")
            else:
                print(json.dumps(doc))
        return 0
    if verb == "create" and args[1:3] == ["secret", "generic"]:
        name = args[3]
        data: dict[str, str] = {}
        for lit in multi["--from-literal"]:
            k, v = lit.split("=", 1)
            data[k] = base64.b64encode(v.encode()).decode()
        for f in multi["--from-file"]:
            k, _, path = f.partition("=")
            data[k] = base64.b64encode(Path(path).read_bytes()).decode()
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "data": data}
        code, doc = api.call("POST", f"/api/v1/namespaces/{ns}/secrets", body)
        if code == 409:
            print(f'error: failed to create secret secrets "{name}" already exists', file=sys.stderr)
            return 1
        print(f"secret/{name} created")
        return 0 if code == 201 else 1
    if verb == "delete" and len(args) == 3:
        prefix, plural, namespaced, printed = _kind(args[1])
        where = f"{prefix}/namespaces/{ns}/{plural}" if namespaced else f"{prefix}/{plural}"
        code, _ = api.call("DELETE", f"{where}/{args[2]}")
        if code == 404:
            return 0 if flags.get("--ignore-not-found") else _not_found(printed, args[2])
        print(f'{printed.split(".")[0]} "{args[2]}" deleted')
        return 0 if code == 200 else 1
    if verb in ("apply", "delete") and ("-k" in flags or "-f" in flags):
        objects = _render(flags["-k"]) if "-k" in flags else _load(flags["-f"])
        for obj in objects:
            path = _item_path(obj, ns)
            printed = _object_kind(obj)[3]
            name = obj["metadata"]["name"]
            code, current = api.call("GET", path)
            if verb == "delete":
                if code == 200:
                    api.call("DELETE", path)
                    print(f'{printed} "{name}" deleted')
                elif not flags.get("--ignore-not-found"):
                    return _not_found(printed, name)
                continue
            if code == 404:
                code, doc = api.call("POST", path.rsplit("/", 1)[0], obj)
                if code != 201:
                    print(f"Error from server: {doc.get('message')}", file=sys.stderr)
                    return 1
                print(f"{printed}/{name} created")
            else:
                same = {k: v for k, v in current.items() if k != "metadata"} == {
                    k: v for k, v in obj.items() if k != "metadata"
                }
                api.call("PUT", path, obj)
                print(f"{printed}/{name} {'unchanged' if same else 'configured'}")
        return 0
    if verb == "wait":  # the stand-in's objects are ready as soon as they exist
        for ref in args[1:]:
            typed, _, name = ref.partition("/")
            prefix, plural, namespaced, printed = _kind(typed)
            where = f"{prefix}/namespaces/{ns}/{plural}" if namespaced else f"{prefix}/{plural}"
            if api.call("GET", f"{where}/{name}")[0] != 200:
                return _not_found(printed, name)
            print(f"{printed}/{name} condition met")
        return 0
    print(f"stub kubectl: unsupported command: kubectl {' '.join(argv)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if sys.argv[1:2] != ["kubectl"]:
        raise SystemExit("usage: cluster_standin.py kubectl ARGS...")
    sys.exit(kubectl(sys.argv[2:]))
