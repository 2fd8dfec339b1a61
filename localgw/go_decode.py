"""Request bodies and targets read the way the OpenFaaS providers (Go) read them.

Go's `encoding/json` matches an object's keys to struct fields exactly first, else
case-insensitively with Unicode simple folding, and every matching key assigns, so the
last one wins; unknown keys are ignored. faas-netes (CE) and faasd then take a call's
namespace from different places (see `openfaas_iam/proxy/rest_api.py`). The local provider acts
on what these functions return, and the tests use them as the oracle for what a real
provider would do with a request the proxy forwarded.
"""

from __future__ import annotations

import json
from typing import Any

DEFAULT_NAMESPACE = "openfaas-fn"
# FunctionDeployment's JSON fields: faas-netes decodes a deploy's whole body into it, so a
# wrong type in any of them refuses the request, whichever field decides the target.
DEPLOYMENT_FIELDS = (
    "service",
    "image",
    "namespace",
    "envProcess",
    "envVars",
    "constraints",
    "secrets",
    "labels",
    "annotations",
    "limits",
    "requests",
    "readOnlyRootFilesystem",
)


def fold_equal(a: str, b: str) -> bool:
    """bytes.EqualFold: same length in runes, each pair equal under simple case folding."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x == y:
            continue
        xs = {c for c in (x, x.lower(), x.upper(), x.casefold()) if len(c) == 1}
        ys = {c for c in (y, y.lower(), y.upper(), y.casefold()) if len(c) == 1}
        if not xs & ys:  # Go's simple folding never maps one rune to two
            return False
    return True


class _Object(dict[str, Any]):
    """A JSON object as Go sees a map (the last of a repeated key wins), keeping its pairs for struct matching."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


# The Go types of faas-provider's request fields (FunctionDeployment, DeleteFunctionRequest,
# ScaleServiceRequest, Secret): a value of another JSON type is an UnmarshalTypeError, a 400.
_STRING = ("service", "image", "namespace", "envProcess", "functionName", "serviceName", "name", "value", "rawValue")
_STRING_MAP = ("envVars", "labels", "annotations")
_STRING_LIST = ("secrets", "constraints")


def _go_type_ok(field: str, value: Any) -> bool:
    if value is None:  # null leaves any Go field at its zero value
        return True
    if field in _STRING:
        return isinstance(value, str)
    if field in _STRING_MAP:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if field in _STRING_LIST:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if field == "replicas":  # uint64
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if field == "readOnlyRootFilesystem":
        return isinstance(value, bool)
    if field in ("limits", "requests"):
        return isinstance(value, dict)
    return True


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def unmarshal(raw: bytes, fields: tuple[str, ...]) -> dict[str, Any]:
    """json.Unmarshal into a struct with these JSON field names; ValueError when Go would refuse the body.

    Read as Go reads it: UTF-8 only (Python's json would detect UTF-16/32 bodies Go refuses),
    no NaN or Infinity, and each field's value of its Go type.
    """
    if not raw.strip():
        return {}
    doc = json.loads(raw.decode("utf-8", "replace"), object_pairs_hook=_Object, parse_constant=_no_constant)
    if not isinstance(doc, _Object):
        raise ValueError("json: cannot unmarshal into a struct")
    out: dict[str, Any] = {}
    for key, value in doc.pairs:
        field = next((f for f in fields if f == key), None) or next((f for f in fields if fold_equal(f, key)), None)
        if field is not None:
            if not _go_type_ok(field, value):
                raise ValueError(f"json: cannot unmarshal {type(value).__name__} into Go struct field {field}")
            out[field] = dict(value) if isinstance(value, dict) else value
    return out


def _ns(value: Any) -> str:
    return value if isinstance(value, str) and value else DEFAULT_NAMESPACE


def faas_netes_target(method: str, path: str, query: dict[str, str], raw: bytes) -> tuple[str, str] | None:
    """(namespace, name) that faas-netes acts on, or None for calls without a single target."""
    if path == "/system/functions" and method == "DELETE":
        body = unmarshal(raw, ("functionName", "namespace"))
        return _ns(query.get("namespace")), str(body.get("functionName") or "")
    if path == "/system/functions" and method in ("POST", "PUT"):
        body = unmarshal(raw, DEPLOYMENT_FIELDS)
        return _ns(body.get("namespace")), str(body.get("service") or "")
    if path.startswith("/system/scale-function/") and method == "POST":
        return _ns(query.get("namespace")), path.rsplit("/", 1)[1]
    if path == "/system/secrets" and method in ("POST", "PUT", "DELETE"):
        body = unmarshal(raw, ("name", "namespace"))
        return _ns(body.get("namespace")), str(body.get("name") or "")
    if path.startswith("/system/function/") and method == "GET":
        return _ns(query.get("namespace")), path.rsplit("/", 1)[1]
    if path == "/system/logs":
        return _ns(query.get("namespace")), query.get("name", "")
    return None


def faasd_target(method: str, path: str, query: dict[str, str], raw: bytes) -> tuple[str, str] | None:
    """(namespace, name) that faasd acts on."""
    if path == "/system/functions" and method == "DELETE":
        body = unmarshal(raw, ("functionName", "namespace"))
        return _ns(body.get("namespace")), str(body.get("functionName") or "")
    if path.startswith("/system/scale-function/") and method == "POST":
        body = unmarshal(raw, ("serviceName", "namespace"))
        return _ns(body.get("namespace")), path.rsplit("/", 1)[1]
    if path == "/system/secrets" and method == "DELETE":
        body = unmarshal(raw, ("name",))
        return _ns(query.get("namespace")), str(body.get("name") or "")
    return faas_netes_target(method, path, query, raw)


def secrets_mounted(raw: bytes) -> list[str]:
    """The secrets a deploy mounts, as faas-netes reads them."""
    value = unmarshal(raw, ("secrets",)).get("secrets")
    return [s for s in value if isinstance(s, str)] if isinstance(value, list) else []
