"""The OpenFaaS REST API, call by call: what it asks for, and exactly what is forwarded.

The permission table is the one in OpenFaaS IAM's docs. Anything not in it is refused,
never forwarded. The proxy never forwards the caller's raw request: it reads the call
the way the providers read it, decides on that, and builds the upstream request from
the decision (canonical path, canonical query, re-serialised body), so the gateway can
only act on what was decided.

Which field decides the target, as the providers read it (faas-netes CE and faasd):

| call | faas-netes reads the namespace from | faasd reads it from | name from |
|---|---|---|---|
| `GET /system/functions`, `GET /system/function/{n}`, `GET /system/logs` | query | query | path / query `name` |
| `POST`/`PUT /system/functions` (deploy, update) | body `namespace` | body `namespace` | body `service` |
| `DELETE /system/functions` | **query** (body ignored) | body `namespace` | body `functionName` |
| `POST /system/scale-function/{n}` | **query** (body ignored) | body `namespace` | path; faasd: body `serviceName` |
| `GET /system/secrets` | query | query | - |
| `POST`/`PUT /system/secrets` | body `namespace` | body `namespace` | body `name` |
| `DELETE /system/secrets` | body `namespace` | **query** | body `name` |
| `/system/namespace/{n}` (Enterprise) | path | path | path, body `name` |

Bodies are decoded by Go's `encoding/json`: keys match case-insensitively and the last
one wins (see `go_json`). So the namespace is read from wherever the caller put it
(query or body, any spelling; two different values are refused), and the forwarded
request carries the decided namespace in both places: `?namespace=<decided>` always,
and the body's `namespace` field where the provider's struct has one. Whichever place
a provider reads, it reads the decision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from openfaas_iam.model.custody import PROTECTED_SECRETS, reserved_in
from openfaas_iam.proxy import go_json
from openfaas_iam.proxy.go_json import BodyError, Struct

DEFAULT_NAMESPACE = "openfaas-fn"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_METHOD_ACTIONS = {"GET": "List", "POST": "Create", "PUT": "Update", "DELETE": "Delete"}
_NAMESPACE_ACTIONS = {"GET": "Get", "POST": "Create", "PUT": "Update", "DELETE": "Delete"}
# Query parameters forwarded per call (everything else is dropped; a repeated one is refused).
_LOG_PARAMS = ("name", "namespace", "instance", "since", "tail", "follow")
# Labels the platform itself uses to find a function's pods: faas-netes copies a deploy's labels
# over its own, so `faas_function: iam-token` would put a caller's pod behind iam-token's Service.
RESERVED_LABELS = frozenset({"faas_function", "app", "controller", "uid"})
RESERVED_LABEL_PREFIXES = ("iam.openfaas.com/", "openfaas-iam/")
SCALE_LABEL_PREFIX = "com.openfaas.scale."
# Annotations faas-netes turns into the pod's identity: `com.openfaas.serviceaccount` becomes the pod's
# serviceAccountName, so a deploy could run as any service account in the namespace (one an operator
# bound to Secrets for a trusted function), not the shared `default` the threat model assumes.
RESERVED_ANNOTATIONS = frozenset({"com.openfaas.serviceaccount"})


class BadApiRequest(Exception):
    """A request the proxy cannot decide on safely: 400 with this reason."""


class NotCovered(Exception):
    """A path or method outside the permission table: refused, never forwarded."""


@dataclass(frozen=True)
class Check:
    """One more permission a call needs besides its own action (a mounted secret, a scale label)."""

    action: str
    resource: str
    why: str


@dataclass(frozen=True)
class ApiCall:
    action: str
    resource: str
    namespace: str
    path: str  # the canonical path to forward
    name: str = ""  # the function, secret or namespace acted on ("" for lists and info)
    query: tuple[tuple[str, str], ...] = ()  # the canonical query to forward
    body: bytes | None = None  # the canonical body to forward (None: none)
    checks: tuple[Check, ...] = ()
    filter_namespaces: bool = False
    stream: bool = False  # long-lived (log streams): counted against the caller's fair share

    @property
    def all_checks(self) -> tuple[Check, ...]:
        return (Check(self.action, self.resource, "the call itself"), *self.checks)


def _name(value: Any, what: str, pattern: re.Pattern[str] = _DNS_LABEL) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise BadApiRequest(f"{what} {value!r} is not a valid name (lowercase letters, digits and '-')")
    return value


def _decode(raw: bytes, struct: Struct) -> dict[str, Any]:
    try:
        return go_json.decode(raw, struct)
    except BodyError as e:
        raise BadApiRequest(str(e)) from None


def _namespace(query: Mapping[str, str], body: Mapping[str, Any]) -> str:
    """The one namespace the caller named (query or body), or the default; two different ones are refused."""
    q = query.get("namespace") or None
    b = body.get("namespace") or None
    if q is not None and b is not None and q != b:
        raise BadApiRequest(
            f"the namespace is given twice with different values ({q!r} in the query, {b!r} in the body)"
        )
    return _name(q or b or DEFAULT_NAMESPACE, "namespace")


def _deploy_checks(doc: dict[str, Any], ns: str, fn: str) -> tuple[Check, ...]:
    if reserved := reserved_in(doc.get("secrets", [])):  # key custody: see custody.py
        raise NotCovered(f"a deploy through the proxy may not mount the bundle's secrets ({', '.join(reserved)})")
    checks: list[Check] = []
    for secret in doc.get("secrets", []):
        _name(secret, "secret", _SECRET_NAME)
        checks.append(Check("Secret:Mount", f"{ns}:{secret}", f"the deploy mounts secret {secret}"))
    for key in doc.get("annotations", {}):
        if key in RESERVED_ANNOTATIONS:
            raise BadApiRequest(
                f"annotation {key!r} is reserved: the platform runs the function's pod as that service account, "
                "so a deploy through openfaas-iam may not set it (the operator deploys such functions)"
            )
    for key in doc.get("labels", {}):
        if key in RESERVED_LABELS or key.startswith(RESERVED_LABEL_PREFIXES):
            raise BadApiRequest(
                f"label {key!r} is reserved: the platform uses it to find a function's pods, "
                "so a deploy through openfaas-iam may not set it"
            )
        if key.startswith(SCALE_LABEL_PREFIX) and not any(c.action == "Function:Scale" for c in checks):
            checks.append(Check("Function:Scale", f"{ns}:{fn}", f"the deploy sets the scaling label {key}"))
    return tuple(checks)


def map_call(
    method: str, path: str, query: Mapping[str, str], raw_body: bytes, repeated: frozenset[str] = frozenset()
) -> ApiCall:
    """Map one /system/* request; raises NotCovered or BadApiRequest.

    `query` holds each parameter's first value; `repeated` names those given more than once.
    A repeated parameter that is forwarded is refused: the gateway must act on exactly what was decided.
    """
    if "\\" in path or "//" in path or any(seg in (".", "..") for seg in path.split("/")):
        raise NotCovered(f"path {path!r} is not a canonical API path")
    parts = path.strip("/").split("/")
    if not parts or parts[0] != "system" or len(parts) < 2:
        raise NotCovered(f"{path} is not an OpenFaaS API path")
    for key in ("namespace", "name", *_LOG_PARAMS):
        if key in repeated:
            raise BadApiRequest(f"the query names {key} more than once")
    kind, rest = parts[1], parts[2:]

    if kind == "info" and not rest and method == "GET":
        return ApiCall("System:Info", "*", "", "/system/info")

    if kind == "functions" and not rest and method in _METHOD_ACTIONS:
        if method == "GET":
            ns = _namespace(query, {})
            return ApiCall("Function:List", f"{ns}:*", ns, "/system/functions", query=(("namespace", ns),))
        if method == "DELETE":
            doc = _decode(raw_body, go_json.DELETE_FUNCTION)
            ns = _namespace(query, doc)
            fn = _name(doc.get("functionName"), "functionName")
            body = go_json.encode({"functionName": fn, "namespace": ns})
            return ApiCall("Function:Delete", f"{ns}:{fn}", ns, "/system/functions", fn, (("namespace", ns),), body)
        doc = _decode(raw_body, go_json.FUNCTION_DEPLOYMENT)
        ns = _namespace(query, doc)
        fn = _name(doc.get("service"), "service")
        checks = _deploy_checks(doc, ns, fn)
        body = go_json.encode({**doc, "namespace": ns})
        action = "Function:Create" if method == "POST" else "Function:Update"
        return ApiCall(action, f"{ns}:{fn}", ns, "/system/functions", fn, (("namespace", ns),), body, checks)

    if kind == "function" and len(rest) == 1 and method == "GET":
        fn = _name(rest[0], "function")
        ns = _namespace(query, {})
        return ApiCall("Function:Get", f"{ns}:{fn}", ns, f"/system/function/{quote(fn)}", fn, (("namespace", ns),))

    if kind == "scale-function" and len(rest) == 1 and method == "POST":
        fn = _name(rest[0], "function")
        doc = _decode(raw_body, go_json.SCALE_SERVICE)
        if doc.get("serviceName") not in (None, "", fn):
            raise BadApiRequest(f"serviceName {doc.get('serviceName')!r} in the body differs from {fn!r} in the path")
        ns = _namespace(query, doc)
        body = go_json.encode({"serviceName": fn, "replicas": doc.get("replicas", 0), "namespace": ns})
        return ApiCall(
            "Function:Scale", f"{ns}:{fn}", ns, f"/system/scale-function/{quote(fn)}", fn, (("namespace", ns),), body
        )

    if kind == "logs" and not rest and method == "GET":
        fn = _name(query.get("name"), "function")
        ns = _namespace(query, {})
        forwarded = {k: query[k] for k in _LOG_PARAMS if k in query}
        forwarded.update(name=fn, namespace=ns)
        return ApiCall("Function:Logs", f"{ns}:{fn}", ns, "/system/logs", fn, tuple(forwarded.items()), stream=True)

    if kind == "secrets" and not rest and method in _METHOD_ACTIONS:
        if method == "GET":
            ns = _namespace(query, {})
            return ApiCall("Secret:List", f"{ns}:*", ns, "/system/secrets", query=(("namespace", ns),))
        doc = _decode(raw_body, go_json.SECRET)
        ns = _namespace(query, doc)
        secret = _name(doc.get("name"), "secret", _SECRET_NAME)
        if secret in PROTECTED_SECRETS:
            # Replacing one would plant a key or a configuration: operators use the gateway itself.
            raise NotCovered(f"secret {secret!r} belongs to openfaas-iam and is not changed through the proxy")
        body = go_json.encode({**doc, "name": secret, "namespace": ns})
        return ApiCall(
            f"Secret:{_METHOD_ACTIONS[method]}",
            f"{ns}:{secret}",
            ns,
            "/system/secrets",
            secret,
            (("namespace", ns),),
            body,
        )

    if kind == "namespaces" and not rest and method == "GET":
        return ApiCall("Namespace:List", "*", "", "/system/namespaces", filter_namespaces=True)

    if kind in ("namespace", "namespaces") and len(rest) <= 1 and method in _NAMESPACE_ACTIONS:
        doc = _decode(raw_body, go_json.FUNCTION_NAMESPACE) if method != "GET" else {}
        name = rest[0] if rest else doc.get("name")
        if rest and doc.get("name") not in (None, "", rest[0]):
            raise BadApiRequest(f"namespace {doc.get('name')!r} in the body differs from {rest[0]!r} in the path")
        if not rest and method == "GET":
            raise NotCovered(f"GET {path} names no namespace")
        ns = _name(name, "namespace")
        forward = f"/system/{kind}/{quote(ns)}" if rest else f"/system/{kind}/"
        ns_body = go_json.encode({**doc, "name": ns}) if method in ("POST", "PUT") else None
        return ApiCall(f"Namespace:{_NAMESPACE_ACTIONS[method]}", f"{ns}:*", ns, forward, ns, (), ns_body)

    raise NotCovered(f"{method} {path} is not in openfaas-iam's permission table")
