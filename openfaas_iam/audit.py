"""Audit events: one structured JSON line per exchange or API operation, never a token.

API operations use OpenFaaS's event format: `{"actor": {"sub", "name", "issuer",
"fed_issuer"}, "path", "method", "actions", "response_code", "time"}`. Every event goes
to the log; optionally to a capped Redis stream and to a webhook that receives
batched JSON arrays signed like OpenFaaS's (`X-Openfaas-Signature-256`). Sinks other
than the log run in the background and never block or fail a request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TextIO

import requests

from .json_codec import dumps

log = logging.getLogger("openfaas_iam.audit")


def rfc3339_nano(ts: float | None = None) -> str:
    ns = time.time_ns() if ts is None else int(ts * 1e9)
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def actor(claims: Mapping[str, Any] | None) -> dict[str, str]:
    """OpenFaaS's actor object; empty when the caller was not authenticated."""
    if not claims:
        return {}
    return {
        "sub": str(claims.get("sub", "")),
        "name": str(claims.get("name") or claims.get("preferred_username") or claims.get("email") or ""),
        "issuer": str(claims.get("iss", "")),
        "fed_issuer": str(claims.get("fed:iss", "")),
    }


def api_event(
    claims: Mapping[str, Any] | None,
    path: str,
    method: str,
    actions: list[str],
    response_code: int,
    *,
    namespace: str = "",
    name: str = "",
    decision: str = "",
    reason: str = "",
) -> dict[str, Any]:
    """OpenFaaS's API event, plus what openfaas-iam decided: the target and why.

    `decision` is `allow` (forwarded), `deny` (refused by policy), `invalid` (refused before a
    decision: 400, 401, 403 for a path outside the table, 429) and empty otherwise.
    """
    event: dict[str, Any] = {
        "actor": actor(claims),
        "path": path,
        "method": method,
        "actions": actions,
        "response_code": response_code,
        "time": rfc3339_nano(),
    }
    if namespace:
        event["namespace"] = namespace
    if name:
        event["name"] = name
    if decision:
        event["decision"] = decision
    if reason:
        event["reason"] = reason
    return event


class Sink(Protocol):
    def send(self, event: dict[str, Any]) -> None: ...


class RedisStreamSink:
    """XADD to a capped stream; a failing Redis is skipped (the log line is already written)."""

    def __init__(self, client: Any, stream: str, maxlen: int = 10000) -> None:
        self.client = client
        self.stream = stream
        self.maxlen = maxlen
        self.failures = 0

    def send(self, event: dict[str, Any]) -> None:
        try:
            self.client.xadd(self.stream, {"event": json.dumps(event)}, maxlen=self.maxlen, approximate=True)
        except Exception as e:  # any Redis failure: counted and logged, never raised into a request
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning(
                    "audit stream %s: redis write failed (%s); %d so far", self.stream, type(e).__name__, self.failures
                )


def sign_body(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookSink:
    """Batches events and POSTs them from a background thread, retrying with backoff.

    The queue is bounded: when the receiver is down for long, the oldest events are
    dropped (and counted) rather than memory growing or requests waiting.
    """

    def __init__(
        self,
        url: str,
        secret: Callable[[], bytes],
        *,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_queue: int = 10000,
        retries: int = 5,
        backoff: float = 0.5,
        timeout: float = 5.0,
        verify: str | bool = True,
    ) -> None:
        self.url = url
        self.secret = secret
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.verify = verify
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self.delivered = 0
        self.session = requests.Session()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-webhook", daemon=True)
        self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        while True:
            try:
                self.queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._collect()
            if batch:
                self._deliver(batch)

    def _collect(self) -> list[dict[str, Any]]:
        try:
            first = self.queue.get(timeout=self.flush_interval)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        body = json.dumps(batch).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Openfaas-Event": "api_access",
            "X-Openfaas-Delivery": str(uuid.uuid4()),
            "X-Openfaas-Signature-256": sign_body(self.secret(), body),
        }
        delay = self.backoff
        for attempt in range(1, self.retries + 1):
            try:
                resp = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout, verify=self.verify)
                if resp.status_code < 300:
                    self.delivered += len(batch)
                    return
                reason = f"HTTP {resp.status_code}"
            except requests.RequestException as e:
                reason = type(e).__name__
            if attempt < self.retries and not self._stop.wait(delay):
                delay *= 2
        self.dropped += len(batch)
        log.error(
            "audit webhook %s: dropped %d event(s) after %d attempts (%s)", self.url, len(batch), self.retries, reason
        )

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until the queue is empty (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()


class AuditLog:
    """The log line always; the other sinks when configured."""

    def __init__(
        self, stream: TextIO | None = None, sinks: list[Sink] | None = None, verbs: frozenset[str] | None = None
    ) -> None:
        self.stream = stream
        self.sinks = sinks or []
        self.verbs = verbs if verbs is not None else frozenset({"PUT", "POST", "DELETE"})

    def emit(self, event: dict[str, Any]) -> None:
        line = dumps(event).decode()
        stream = self.stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def api(self, event: dict[str, Any], *, denied: bool = False) -> None:
        """An API operation: logged when its verb is audited, and every denial whatever its verb."""
        if event["method"] not in self.verbs and not denied:
            return
        self.emit({"event": "api_access", **event})
        for sink in self.sinks:
            sink.send(event)

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
            # X-Forwarded-For's first entry: the OpenFaaS gateway passes a client's own value through,
            # so this is the caller's claim (subject and issuer are verified; the address is not).
            "client": client,
            "client_verified": False,
        }
        if scope:
            event["scope"] = scope
        if granted:
            event["policies"] = policies or []
            event["jti"] = jti
        else:
            event["reason"] = reason
        self.emit(event)
