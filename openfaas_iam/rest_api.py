"""The OpenFaaS REST API, call by call, as (action, resource) for a policy decision.

The table is the one in OpenFaaS IAM's docs. Anything not in it is refused, never
forwarded. The namespace comes from the query for GET and from the JSON body for
writes, where the gateway itself reads it; a request naming two different
namespaces is refused, so a decision can never be made on one namespace and the
operation carried out on another. Names are validated, and the proxy forwards the
canonical path built from the parsed names, never the raw one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from . import json_codec
from .custody import PROTECTED_SECRETS, field_values, listed_secrets, reserved_in

DEFAULT_NAMESPACE = "openfaas-fn"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_METHOD_ACTIONS = {"GET": "List", "POST": "Create", "PUT": "Update", "DELETE": "Delete"}
_NAMESPACE_ACTIONS = {"GET": "Get", "POST": "Create", "PUT": "Update", "DELETE": "Delete"}


class BadApiRequest(Exception):
    """A request the proxy cannot decide on safely: 400 with this reason."""


class NotCovered(Exception):
    """A path or method outside the permission table: refused, never forwarded."""


@dataclass(frozen=True)
class ApiCall:
    action: str
    resource: str
    namespace: str
    path: str  # the canonical path to forward
    filter_namespaces: bool = False


def _body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        doc = json_codec.loads(raw)
    except ValueError:
        raise BadApiRequest("the request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadApiRequest("the request body must be a JSON object")
    return doc


def _name(value: Any, what: str, pattern: re.Pattern[str] = _DNS_LABEL) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise BadApiRequest(f"{what} {value!r} is not a valid name (lowercase letters, digits and '-')")
    return value


def _namespace(method: str, query: Mapping[str, str], body: dict[str, Any]) -> str:
    q = query.get("namespace") or None
    b = body.get("namespace") or None
    if q is not None and b is not None and q != b:
        raise BadApiRequest(
            f"the namespace is given twice with different values ({q!r} in the query, {b!r} in the body)"
        )
    ns = (b if method != "GET" else q) or q or b or DEFAULT_NAMESPACE
    return _name(ns, "namespace")


def map_call(
    method: str, path: str, query: Mapping[str, str], raw_body: bytes, repeated: frozenset[str] = frozenset()
) -> ApiCall:
    """Map one /system/* request; raises NotCovered or BadApiRequest.

    `query` holds each parameter's first value; `repeated` names those given more than once.
    A repeated namespace or name is refused: the gateway must act on exactly what was decided.
    """
    for key in ("namespace", "name"):
        if key in repeated:
            raise BadApiRequest(f"the query names {key} more than once")
    if "\\" in path or "//" in path or any(seg in (".", "..") for seg in path.split("/")):
        raise NotCovered(f"path {path!r} is not a canonical API path")
    parts = path.strip("/").split("/")
    if not parts or parts[0] != "system" or len(parts) < 2:
        raise NotCovered(f"{path} is not an OpenFaaS API path")
    kind, rest = parts[1], parts[2:]
    body = _body(raw_body) if method in ("POST", "PUT", "DELETE") else {}

    if kind == "info" and not rest and method == "GET":
        return ApiCall("System:Info", "*", "", "/system/info")

    if kind == "functions" and not rest and method in _METHOD_ACTIONS:
        ns = _namespace(method, query, body)
        if method == "GET":
            return ApiCall("Function:List", f"{ns}:*", ns, "/system/functions")
        field = "functionName" if method == "DELETE" else "service"
        fn = _name(body.get(field), f"{field}")
        if reserved := reserved_in(listed_secrets(body)):  # key custody: see custody.py
            raise NotCovered(f"a deploy through the proxy may not mount the bundle's secrets ({', '.join(reserved)})")
        action = {"POST": "Function:Create", "PUT": "Function:Update", "DELETE": "Function:Delete"}[method]
        return ApiCall(action, f"{ns}:{fn}", ns, "/system/functions")

    if kind == "function" and len(rest) == 1 and method == "GET":
        fn = _name(rest[0], "function")
        ns = _namespace(method, query, body)
        return ApiCall("Function:Get", f"{ns}:{fn}", ns, f"/system/function/{quote(fn)}")

    if kind == "scale-function" and len(rest) == 1 and method == "POST":
        fn = _name(rest[0], "function")
        if body.get("serviceName") not in (None, fn):
            raise BadApiRequest(f"serviceName {body.get('serviceName')!r} in the body differs from {fn!r} in the path")
        ns = _namespace(method, query, body)
        return ApiCall("Function:Scale", f"{ns}:{fn}", ns, f"/system/scale-function/{quote(fn)}")

    if kind == "logs" and not rest and method == "GET":
        fn = _name(query.get("name"), "function")
        ns = _namespace(method, query, body)
        return ApiCall("Function:Logs", f"{ns}:{fn}", ns, "/system/logs")

    if kind == "secrets" and not rest and method in _METHOD_ACTIONS:
        ns = _namespace(method, query, body)
        if method == "GET":
            return ApiCall("Secret:List", f"{ns}:*", ns, "/system/secrets")
        secret = _name(body.get("name"), "secret", _SECRET_NAME)
        if protected := PROTECTED_SECRETS.intersection(v for v in field_values(body, "name") if isinstance(v, str)):
            # replacing one would plant a key: operators use the gateway itself
            raise NotCovered(
                f"secret {sorted(protected)[0]!r} belongs to openfaas-iam and is not changed through the proxy"
            )
        return ApiCall(f"Secret:{_METHOD_ACTIONS[method]}", f"{ns}:{secret}", ns, "/system/secrets")

    if kind == "namespaces" and not rest and method == "GET":
        return ApiCall("Namespace:List", "*", "", "/system/namespaces", filter_namespaces=True)

    if kind in ("namespace", "namespaces") and len(rest) <= 1 and method in _NAMESPACE_ACTIONS:
        name = rest[0] if rest else body.get("name")
        if rest and body.get("name") not in (None, rest[0]):
            raise BadApiRequest(f"namespace {body.get('name')!r} in the body differs from {rest[0]!r} in the path")
        if not rest and method == "GET":
            raise NotCovered(f"GET {path} names no namespace")
        ns = _name(name, "namespace")
        forward = f"/system/{kind}/{quote(ns)}" if rest else f"/system/{kind}/"
        return ApiCall(f"Namespace:{_NAMESPACE_ACTIONS[method]}", f"{ns}:*", ns, forward)

    raise NotCovered(f"{method} {path} is not in openfaas-iam's permission table")
