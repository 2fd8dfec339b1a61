"""Audit events: one structured JSON line per exchange or API operation, never a token.

API operations use OpenFaaS's event format: `{"actor": {"sub", "name", "issuer",
"fed_issuer"}, "path", "method", "actions", "response_code", "time"}`. Every event goes
to the log; optionally to a capped Redis stream and to a webhook that receives
batched JSON arrays signed like OpenFaaS's (`X-Openfaas-Signature-256`). Sinks other
than the log run in the background and never block or fail a request; so, in the
functions, does the log line itself (`LineWriter`): writing and flushing stdout cost
iam-token 10% of its time per exchange (issue 16), and a slow log pipe must never hold
a request. Lines lost because the queue was full are counted, and the count is logged.
"""

from __future__ import annotations

import atexit
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

from openfaas_iam.json_codec import dumps

log = logging.getLogger("openfaas_iam.observability.audit")


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


class LineWriter:
    """Log lines written by a background thread from a bounded queue: a request only enqueues.

    When the queue is full (the log pipe is stuck) a line is dropped and counted, never
    waited for; the writer logs how many were lost before the next line it writes, so a
    gap in the audit trail is itself on the record. Lines still queued at exit are
    written (`flush`, registered with atexit).
    """

    def __init__(self, stream: TextIO | None = None, max_queue: int = 10000, batch: int = 256) -> None:
        self.stream = stream
        self.batch = batch
        self.queue: queue.Queue[str] = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self._reported = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="audit-log", daemon=True)
        self._thread.start()
        atexit.register(self.flush)

    def write(self, line: str) -> None:
        """Enqueue one line; never blocks (a full queue counts the line as lost)."""
        try:
            self.queue.put_nowait(line)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def _run(self) -> None:
        while True:
            lines = [self.queue.get()]
            while len(lines) < self.batch:
                try:
                    lines.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            lost = self.dropped - self._reported
            if lost:
                self._reported += lost
                lines.insert(0, dumps({"time": rfc3339_nano(), "event": "audit_lost", "lost": lost}).decode())
                log.error("audit log: %d line(s) lost because the log could not keep up", lost)
            try:
                stream = self.stream or sys.stdout
                stream.write("\n".join(lines) + "\n")
                stream.flush()
            except (OSError, ValueError):  # a closed stdout at exit: nothing left to write to
                pass
            finally:
                for _ in range(len(lines) - (1 if lost else 0)):
                    self.queue.task_done()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued line is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)


class AuditLog:
    """The log line always; the other sinks when configured.

    `background`: write the line from a `LineWriter` (the functions do); without it the
    line is written before `emit` returns (the CLI, and tests reading their own output).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        sinks: list[Sink] | None = None,
        verbs: frozenset[str] | None = None,
        *,
        background: bool = False,
        max_queue: int = 10000,
    ) -> None:
        self.stream = stream
        self.sinks = sinks or []
        self.verbs = verbs if verbs is not None else frozenset({"PUT", "POST", "DELETE"})
        self.writer = LineWriter(stream, max_queue) if background else None

    def emit(self, event: dict[str, Any]) -> None:
        line = dumps(event).decode()
        if self.writer is not None:
            self.writer.write(line)
            return
        stream = self.stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

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
