"""Prometheus metrics for one function process, exposed with prometheus-client.

Every metric the bundle exports is declared once in `SPECS` (name, type, help, label
names), so the exposition, the Grafana dashboard's test and the docs agree on names, and a
call with a misspelt name or label fails in the tests instead of silently starting a new
series. Labels never carry anything secret or per-user (no subjects, no tokens, no raw
issuer URLs from a token): only configured names (issuers, actions from the fixed
vocabulary), outcomes and status codes, so a caller cannot grow the series.

Each replica is its own process with its own registry; Prometheus scrapes every pod and
sums (`sum by (...)`) across them, so no multi-process mode is needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Spec:
    """One metric family: its type, help text and label names."""

    kind: str  # "counter", "gauge" or "histogram"
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


# Proxy latency: from a request's arrival to the gateway's response headers (log streams included).
PROXY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

SPECS: dict[str, Spec] = {
    # JWKS cache (iam-discovery fetches; every verifier reads).
    "openfaas_iam_jwks_fetches_total": Spec("counter", "JWKS fetches from identity providers", ("issuer",)),
    "openfaas_iam_jwks_fetch_failures_total": Spec("counter", "JWKS or discovery fetches that failed", ("issuer",)),
    "openfaas_iam_jwks_cache_hits_total": Spec("counter", "key look-ups answered from the cache", ("issuer",)),
    "openfaas_iam_jwks_cache_misses_total": Spec(
        "counter", "key look-ups for a kid the cached JWKS did not have", ("issuer",)
    ),
    "openfaas_iam_jwks_shared_reads_total": Spec("counter", "JWKS entries adopted from the shared Redis cache"),
    "openfaas_iam_jwks_stale_serves_total": Spec(
        "counter", "key look-ups served from stale keys while the IdP failed", ("issuer",)
    ),
    # Redis.
    "openfaas_iam_cache_rejected_total": Spec(
        "counter", "shared cache entries ignored: not authentic or out of bounds", ("kind",)
    ),
    "openfaas_iam_redis_up": Spec(
        "gauge", "1 when the configured Redis answers, 0 when it is misconfigured or unreachable"
    ),
    "openfaas_iam_redis_configured": Spec("gauge", "1 when a Redis is configured for this function (REDIS_URL)"),
    # Configuration (every function).
    "openfaas_iam_config_generation": Spec("gauge", "how many valid IAM configurations this process has loaded"),
    "openfaas_iam_config_valid": Spec(
        "gauge", "1 when the newest IAM configuration is valid, 0 when it is not (the last good one is in force)"
    ),
    "openfaas_iam_config_loaded": Spec("gauge", "1 when an IAM configuration is in force, 0 before the first good one"),
    # The bundle's signing keys, from this function's mounted keysets.
    "openfaas_iam_keyset_generation": Spec("gauge", "the generation (rotation steps) of a mounted keyset", ("keyset",)),
    "openfaas_iam_signing_key_age_seconds": Spec(
        "gauge", "age of the current signing key, from a mounted keyset", ("keyset",)
    ),
    "openfaas_iam_signing_key_last_rotation_timestamp_seconds": Spec(
        "gauge", "when the current signing key started signing (Unix time), from a mounted keyset", ("keyset",)
    ),
    # iam-token.
    "openfaas_iam_token_exchanges_total": Spec(
        "counter", "token exchanges by JwtIssuer name and outcome (ok or the OAuth error code)", ("issuer", "outcome")
    ),
    # iam-authz.
    "openfaas_iam_authz_decisions_total": Spec(
        "counter", "authorization decisions by action and effect (allow or deny)", ("action", "effect")
    ),
    "openfaas_iam_proxy_request_duration_seconds": Spec(
        "histogram",
        "proxied REST API calls: seconds from arrival to the gateway's response headers",
        buckets=PROXY_BUCKETS,
    ),
    "openfaas_iam_would_deny_total": Spec(
        "counter", "calls a report-only Policy (or the report-only proxy) would have denied, by action", ("action",)
    ),
    "openfaas_iam_proxy_upstream_responses_total": Spec(
        "counter", "answers from the real gateway to forwarded calls, by status code (unreachable: none)", ("code",)
    ),
    # iam-rotate.
    "openfaas_iam_rotation_runs_total": Spec(
        "counter", "rotation runs by outcome (rotated, unchanged, refused, failed)", ("outcome",)
    ),
}


def metric_names() -> frozenset[str]:
    """Every sample name the functions can export (histograms add _bucket, _sum and _count)."""
    out: set[str] = set()
    for name, spec in SPECS.items():
        out.add(name)
        if spec.kind == "histogram":
            out.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    return frozenset(out)


class Metrics:
    """One process's metrics in a registry of its own (tests build many side by side).

    `inc`, `set` and `observe` take the label values as keywords; `on_collect` registers a
    callback run before each scrape, for gauges that are cheaper to read then (key ages,
    the configuration's state) than to keep up to date.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, MetricWrapperBase] = {}
        self._collect: list[Callable[[Metrics], None]] = []
        self._lock = threading.Lock()
        for name, spec in SPECS.items():
            self._metrics[name] = _make(name, spec, self.registry)

    def _child(self, name: str, labels: dict[str, str]) -> MetricWrapperBase:
        metric = self._metrics[name]
        spec = SPECS[name]
        if set(labels) != set(spec.labels):
            raise ValueError(f"{name} takes labels {spec.labels}, got {tuple(labels)}")
        return metric.labels(**labels) if spec.labels else metric

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._child(name, labels).inc(amount)  # type: ignore[attr-defined]

    def set(self, name: str, value: float, **labels: str) -> None:
        """A gauge: the last value set."""
        self._child(name, labels).set(value)  # type: ignore[attr-defined]

    def observe(self, name: str, value: float, **labels: str) -> None:
        """A histogram observation (seconds)."""
        self._child(name, labels).observe(value)  # type: ignore[attr-defined]

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when never set): for tests and the status endpoints."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else float(found)

    def on_collect(self, callback: Callable[[Metrics], None]) -> None:
        self._collect.append(callback)

    def render(self) -> str:
        """The Prometheus text exposition, after the scrape-time callbacks have run."""
        with self._lock:
            for callback in self._collect:
                callback(self)
        return generate_latest(self.registry).decode("utf-8")


def _make(name: str, spec: Spec, registry: CollectorRegistry) -> MetricWrapperBase:
    if spec.kind == "counter":
        return Counter(name, spec.help, spec.labels, registry=registry)
    if spec.kind == "gauge":
        return Gauge(name, spec.help, spec.labels, registry=registry)
    return Histogram(name, spec.help, spec.labels, registry=registry, buckets=spec.buckets)


def _drop_created_samples() -> None:
    """`*_created` samples double the series for no use here (Prometheus has the scrape times)."""
    from prometheus_client import disable_created_metrics

    disable_created_metrics()


_drop_created_samples()
