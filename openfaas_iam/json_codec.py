"""JSON in and out for the whole bundle: orjson when present, and one failure type.

orjson is several times faster on the small documents of the hot paths (token segments,
decisions, audit lines). Whatever the parser, hostile input fails as ValueError:
nesting deeper than orjson's limit (or the stdlib's recursion limit) included, so
`[[[[...` can never escape as a RecursionError and a 500.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - the stdlib keeps everything working, only slower
    orjson = None  # type: ignore[assignment]


def loads(raw: bytes | str) -> Any:
    """Parse JSON; ValueError for anything that is not a reasonable JSON document."""
    try:
        if orjson is not None:
            return orjson.loads(raw)
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except TypeError:
        raise ValueError("not JSON") from None


def dumps(value: Any) -> bytes:
    if orjson is not None:
        return orjson.dumps(value)
    return json.dumps(value, separators=(",", ":")).encode()
