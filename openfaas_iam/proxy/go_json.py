"""JSON bodies read the way the OpenFaaS providers (Go `encoding/json`) read them.

Go matches an object's keys to struct fields case-insensitively, and when several keys
match one field the last one wins (golang/go#43664): `{"service":"a","Service":"b"}`
deploys `b`. A proxy that reads keys exactly would decide on `a` and let the provider act
on `b`. So the proxy never forwards what the caller sent: it decodes the body against the
provider's own struct shape (faas-provider's `types` package), refuses anything whose
reading could differ (two keys for one field, a key that is not ASCII, which Go may fold
onto a field name through Unicode case folding, a duplicate key anywhere, a value of the
wrong type), and re-serialises the canonical document that was decided on.

Unknown fields are dropped: Go ignores them too, so dropping them changes nothing the
provider does and keeps the forwarded body to exactly what was read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Union

MAX_DEPTH = 32  # FunctionDeployment is 3 levels deep; nothing legitimate comes near this


class BodyError(ValueError):
    """The body cannot be read unambiguously; the message names the field at fault."""


# A field's type: "str", "bool", "uint", "strlist", "strmap", "bytes" (a base64 string), or a nested Struct.
FieldType = Union[str, "Struct"]


@dataclass(frozen=True)
class Struct:
    """A Go struct as `encoding/json` sees it: JSON field names and their types."""

    name: str
    fields: tuple[tuple[str, FieldType], ...]

    def field_by_fold(self) -> dict[str, tuple[str, FieldType]]:
        return {name.lower(): (name, kind) for name, kind in self.fields}


RESOURCES = Struct(
    "FunctionResources",
    (("memory", "str"), ("cpu", "str"), ("nvidia.com/gpu", "str"), ("amd.com/gpu", "str"), ("intel.com/gpu", "str")),
)
FUNCTION_DEPLOYMENT = Struct(
    "FunctionDeployment",
    (
        ("service", "str"),
        ("image", "str"),
        ("namespace", "str"),
        ("envProcess", "str"),
        ("envVars", "strmap"),
        ("constraints", "strlist"),
        ("secrets", "strlist"),
        ("labels", "strmap"),
        ("annotations", "strmap"),
        ("limits", RESOURCES),
        ("requests", RESOURCES),
        ("readOnlyRootFilesystem", "bool"),
    ),
)
DELETE_FUNCTION = Struct("DeleteFunctionRequest", (("functionName", "str"), ("namespace", "str")))
SCALE_SERVICE = Struct("ScaleServiceRequest", (("serviceName", "str"), ("replicas", "uint"), ("namespace", "str")))
SECRET = Struct("Secret", (("name", "str"), ("namespace", "str"), ("value", "str"), ("rawValue", "bytes")))
FUNCTION_NAMESPACE = Struct("FunctionNamespace", (("name", "str"), ("annotations", "strmap"), ("labels", "strmap")))


class _Pairs(list[tuple[str, Any]]):
    """An object as its key/value pairs in order, duplicates kept, so nothing is lost before checking."""


def parse_pairs(raw: bytes) -> Any:
    """Parse JSON keeping every object's pairs; BodyError on malformed, non-UTF-8 or too deep input."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("the request body is not UTF-8") from None
    try:
        doc = json.loads(text, object_pairs_hook=_Pairs)
    except RecursionError:
        raise BodyError("the request body is nested too deeply") from None
    except ValueError:
        raise BodyError("the request body is not valid JSON") from None
    if _depth(doc) > MAX_DEPTH:
        raise BodyError("the request body is nested too deeply")
    return doc


def _depth(node: Any, level: int = 1) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(node, _Pairs):
        return max((_depth(v, level + 1) for _, v in node), default=level)
    if isinstance(node, list):
        return max((_depth(v, level + 1) for v in node), default=level)
    return level


def decode(raw: bytes, struct: Struct) -> dict[str, Any]:
    """The body as `struct`, keys canonical; an empty body is an empty document (Go: zero values)."""
    if not raw.strip():
        return {}
    doc = parse_pairs(raw)
    if not isinstance(doc, _Pairs):
        raise BodyError(f"the request body must be a JSON object ({struct.name})")
    return _struct(doc, struct, "")


def _struct(pairs: _Pairs, struct: Struct, where: str) -> dict[str, Any]:
    by_fold = struct.field_by_fold()
    out: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for key, value in pairs:
        path = f"{where}{key}"
        if not key.isascii():
            # Go folds some non-ASCII letters onto ASCII ones (U+017F to 's', U+212A to 'k').
            raise BodyError(f"field {path!r} is not ASCII; field names must be spelled as the API documents them")
        fold = key.lower()
        if fold not in by_fold:
            if fold in seen:
                raise BodyError(f"field {path!r} is given twice")
            seen[fold] = key
            continue
        name, kind = by_fold[fold]
        if fold in seen:
            raise BodyError(
                f"field {where}{name!r} is given twice ({seen[fold]!r} and {key!r}); "
                "the provider would read the last one, so the call is refused"
            )
        seen[fold] = key
        if value is None:
            continue  # Go leaves the zero value for null
        out[name] = _value(value, kind, f"{where}{name}")
    return out


def _value(value: Any, kind: FieldType, path: str) -> Any:
    if isinstance(kind, Struct):
        if not isinstance(value, _Pairs):
            raise BodyError(f"field {path!r} must be an object ({kind.name})")
        return _struct(value, kind, path + ".")
    if kind in ("str", "bytes"):
        if not isinstance(value, str):
            raise BodyError(f"field {path!r} must be a string")
        return _text(value, path)
    if kind == "bool":
        if not isinstance(value, bool):
            raise BodyError(f"field {path!r} must be true or false")
        return value
    if kind == "uint":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
            raise BodyError(f"field {path!r} must be a whole number of at least 0")
        return value
    if kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BodyError(f"field {path!r} must be a list of strings")
        return [_text(v, path) for v in value]
    if kind == "strmap":
        if not isinstance(value, _Pairs):
            raise BodyError(f"field {path!r} must be an object of strings")
        out: dict[str, str] = {}
        for k, v in value:
            # Map keys are exact in Go, but a repeated one still means "last wins": refuse it.
            if k in out:
                raise BodyError(f"key {k!r} of {path!r} is given twice")
            if not isinstance(v, str):
                raise BodyError(f"{path}[{k!r}] must be a string")
            out[_text(k, path)] = _text(v, f"{path}[{k!r}]")
        return out
    raise AssertionError(f"unknown field type {kind!r}")


def _text(value: str, path: str) -> str:
    """A string that is valid Unicode: a lone UTF-16 surrogate (`"\\ud800"`) is refused.

    Go replaces it with U+FFFD while Python keeps it (and cannot encode it back to UTF-8),
    so the two would read different values.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BodyError(f"field {path!r} holds an unpaired UTF-16 surrogate") from None
    return value


def encode(doc: dict[str, Any]) -> bytes:
    """The canonical body that is forwarded: exactly the fields that were read and decided on."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
