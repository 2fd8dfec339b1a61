"""Audit events: one structured JSON line per decision or operation, never a token.

Token exchanges are logged here; API operations through the proxy use OpenFaaS's
event format (see `api_event`). Sinks beyond the log (a Redis stream, a signed
webhook) are added by the policy-evaluation function.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO


def rfc3339_nano(ts: float | None = None) -> str:
    ns = time.time_ns() if ts is None else int(ts * 1e9)
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


class AuditLog:
    """Writes JSON lines to a stream (standard output by default, as OpenFaaS functions log)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._log = logging.getLogger("openfaas_iam.audit")

    def emit(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":"), sort_keys=False)
        stream = self.stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def exchange(
        self,
        *,
        granted: bool,
        subject: str | None,
        issuer: str | None,
        client: str,
        policies: list[str] | None = None,
        reason: str | None = None,
        jti: str | None = None,
        scope: str | None = None,
    ) -> None:
        event: dict[str, Any] = {
            "time": rfc3339_nano(),
            "event": "token_exchange",
            "outcome": "granted" if granted else "refused",
            "subject": subject,
            "issuer": issuer,
            "client": client,
        }
        if scope:
            event["scope"] = scope
        if granted:
            event["policies"] = policies or []
            event["jti"] = jti
        else:
            event["reason"] = reason
        self.emit(event)
