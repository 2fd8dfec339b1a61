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


def unmarshal(raw: bytes, fields: tuple[str, ...]) -> dict[str, Any]:
    """json.Unmarshal into a struct with these JSON field names; ValueError when Go would refuse the body."""
    if not raw.strip():
        return {}
    doc = json.loads(raw, object_pairs_hook=_Object)
    if not isinstance(doc, _Object):
        raise ValueError("json: cannot unmarshal into a struct")
    out: dict[str, Any] = {}
    for key, value in doc.pairs:
        field = next((f for f in fields if f == key), None) or next((f for f in fields if fold_equal(f, key)), None)
        if field is not None:
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
        body = unmarshal(raw, ("service", "namespace"))
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
