"""How the real providers read a /system/* request, for stand-ins that must be as strict as they are.

Independent of the code under test (openfaas_iam.go_json): this follows Go's
`encoding/json` (object keys match struct fields exactly first, else case-insensitively
with Unicode simple folding; every matching key assigns, so the last one wins) and the
handlers of faas-netes (CE) and faasd, as read from their sources (real-peers.md).
"""

from __future__ import annotations

import json
from typing import Any

DEFAULT_NAMESPACE = "openfaas-fn"


def _fold_eq(a: str, b: str) -> bool:
    """bytes.EqualFold: same length in runes, each pair equal under simple case folding."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x == y:
            continue
        xs = {x, x.lower(), x.upper(), x.casefold()}
        ys = {y, y.lower(), y.upper(), y.casefold()}
        # Keep only one-rune foldings: Go's simple folding never maps one rune to two.
        if not {c for c in xs if len(c) == 1} & {c for c in ys if len(c) == 1}:
            return False
    return True


def go_unmarshal(raw: bytes, fields: tuple[str, ...]) -> dict[str, Any]:
    """json.Unmarshal into a struct with these JSON field names; unknown keys are ignored, last match wins."""
    if not raw.strip():
        return {}
    pairs = json.loads(raw, object_pairs_hook=list)
    if not isinstance(pairs, list):
        raise ValueError("json: cannot unmarshal into a struct")
    out: dict[str, Any] = {}
    for key, value in pairs:
        field = next((f for f in fields if f == key), None) or next((f for f in fields if _fold_eq(f, key)), None)
        if field is not None:
            out[field] = value
    return out


def _ns(value: Any) -> str:
    return value if isinstance(value, str) and value else DEFAULT_NAMESPACE


def faas_netes_target(method: str, path: str, query: dict[str, str], raw: bytes) -> tuple[str, str] | None:
    """(namespace, name) that faas-netes acts on, or None for calls without a single target."""
    if path == "/system/functions" and method == "DELETE":
        body = go_unmarshal(raw, ("functionName", "namespace"))
        return _ns(query.get("namespace")), str(body.get("functionName") or "")
    if path == "/system/functions" and method in ("POST", "PUT"):
        body = go_unmarshal(raw, ("service", "namespace"))
        return _ns(body.get("namespace")), str(body.get("service") or "")
    if path.startswith("/system/scale-function/") and method == "POST":
        return _ns(query.get("namespace")), path.rsplit("/", 1)[1]
    if path == "/system/secrets" and method in ("POST", "PUT", "DELETE"):
        body = go_unmarshal(raw, ("name", "namespace"))
        return _ns(body.get("namespace")), str(body.get("name") or "")
    if path.startswith("/system/function/") and method == "GET":
        return _ns(query.get("namespace")), path.rsplit("/", 1)[1]
    if path == "/system/logs":
        return _ns(query.get("namespace")), query.get("name", "")
    return None


def faasd_target(method: str, path: str, query: dict[str, str], raw: bytes) -> tuple[str, str] | None:
    """(namespace, name) that faasd acts on."""
    if path == "/system/functions" and method == "DELETE":
        body = go_unmarshal(raw, ("functionName", "namespace"))
        return _ns(body.get("namespace")), str(body.get("functionName") or "")
    if path.startswith("/system/scale-function/") and method == "POST":
        body = go_unmarshal(raw, ("serviceName", "namespace"))
        return _ns(body.get("namespace")), path.rsplit("/", 1)[1]
    if path == "/system/secrets" and method == "DELETE":
        body = go_unmarshal(raw, ("name",))
        return _ns(query.get("namespace")), str(body.get("name") or "")
    return faas_netes_target(method, path, query, raw)


def secrets_mounted(raw: bytes) -> list[str]:
    """The secrets a deploy mounts, as faas-netes reads them."""
    value = go_unmarshal(raw, ("secrets",)).get("secrets")
    return [s for s in value if isinstance(s, str)] if isinstance(value, list) else []
