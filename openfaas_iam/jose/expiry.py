"""Saying that a token expired: when, how long ago, and the command that gets a new one.

Shared by the proxy's 401 and the CLI, so a person sees the same sentence wherever an
expired token stops them ("the token expired at ... (5 minutes ago); run: ...").
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from openfaas_iam.jose.jws import JwsError, decode_json


def rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(seconds: float) -> str:
    """A rough duration for people: "40 seconds", "5 minutes", "3 hours", "2 days"."""
    seconds = max(0, int(seconds))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def refresh_command(gateway: str) -> str:
    return f"openfaas-iam auth --gateway {gateway or '<gateway>'} --refresh"


def expired_message(exp: float, gateway: str, now: float | None = None) -> str:
    now = time.time() if now is None else now
    return f"the token expired at {rfc3339(exp)} ({ago(now - exp)} ago); run: {refresh_command(gateway)}"


# The range of `exp` a message can show (1970 to the end of year 9999). The token is the caller's,
# unverified: an `exp` of -1e308 or 10**400 must not reach datetime, where it raises (a 500).
LATEST_EXP = 253402300799.0


def token_exp(token: str) -> float | None:
    """The `exp` claim of a compact JWT, unverified (for messages only), or None when it cannot be shown."""
    try:
        payload: Any = decode_json(token.split(".")[1])
    except (JwsError, ValueError, IndexError, UnicodeDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        return None
    return float(exp) if 0 <= exp <= LATEST_EXP else None
