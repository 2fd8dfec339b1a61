"""Go-style duration strings (`30m`, `1h30m`, `1.5h`, `300ms`).

OpenFaaS IAM objects are read by Go code with `time.ParseDuration`, so the same
YAML must mean the same lifetime here.
"""

from __future__ import annotations

import re

_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ValueError with a readable reason."""
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string like '30m' or '1h30m', got {type(text).__name__}")
    s = text.strip()
    if s in ("0",):
        return 0.0
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if not s:
        raise ValueError(f"invalid duration {text!r}: expected a number with a unit, like '30m' or '1h30m'")
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(
                f"invalid duration {text!r}: expected numbers with units ns, us, ms, s, m or h, like '30m' or '1h30m'"
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total
