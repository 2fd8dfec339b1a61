"""Addressing claims of a verified token by condition keys.

`jwt:<claim>` names a top-level claim; claim names may themselves contain `:`, `/`
or be URLs. `jwt:/a/b` (a leading slash) is an RFC 6901 JSON pointer into nested
claims, e.g. `jwt:/kubernetes.io/namespace`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_MISSING = object()
KEY_PREFIX = "jwt:"


def claim_value(claims: Mapping[str, Any], key: str) -> Any:
    """The raw claim for a `jwt:` key, or None when the token does not carry it."""
    name = key[len(KEY_PREFIX) :]
    if not name.startswith("/"):
        return claims.get(name)
    node: Any = claims
    for raw in name[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.isdigit():
            idx = int(part)
            node = node[idx] if idx < len(node) else _MISSING
        else:
            return None
        if node is _MISSING:
            return None
    return node


def as_strings(value: Any) -> tuple[str, ...] | None:
    """A claim as a tuple of strings for comparison; None when it is absent.

    A single string becomes a one-item list (IdPs send `groups: "dev"` for one
    group). Booleans and numbers compare by their JSON spelling. Objects carry no
    comparable value and yield an empty tuple.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, bool):
        return ("true" if value else "false",)
    if isinstance(value, (int, float)):
        return (str(value),)
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            s = as_strings(item)
            if s:
                out.extend(s)
        return tuple(out)
    return ()


def lookup(claims: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    return as_strings(claim_value(claims, key))


def valid_key(key: str) -> bool:
    return key.startswith(KEY_PREFIX) and len(key) > len(KEY_PREFIX)
