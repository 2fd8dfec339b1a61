"""Counters in Prometheus text format (one process's view; Prometheus sums replicas)."""

from __future__ import annotations

import threading
from collections import defaultdict

HELP = {
    "openfaas_iam_jwks_fetches_total": "JWKS fetches from identity providers",
    "openfaas_iam_jwks_fetch_failures_total": "JWKS or discovery fetches that failed",
    "openfaas_iam_jwks_cache_hits_total": "key look-ups answered from the cache",
    "openfaas_iam_jwks_cache_misses_total": "key look-ups for a kid the cached JWKS did not have",
    "openfaas_iam_jwks_shared_reads_total": "JWKS entries adopted from the shared Redis cache",
    "openfaas_iam_jwks_stale_serves_total": "key look-ups served from stale keys while the IdP failed",
    "openfaas_iam_cache_rejected_total": "shared cache entries ignored: not authentic or out of bounds",
    "openfaas_iam_redis_up": "1 when the configured Redis answers, 0 when it is misconfigured or unreachable",
}
GAUGES = frozenset({"openfaas_iam_redis_up"})


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())) if len(labels) > 1 else tuple(labels.items()))
        with self._lock:
            self._values[key] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        """A gauge (listed in GAUGES): the last value set."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._values[key] = value

    def value(self, name: str, **labels: str) -> float:
        return self._values.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        names = sorted({n for n, _ in self._values} | set(HELP))
        for name in names:
            lines.append(f"# HELP {name} {HELP.get(name, name)}")
            lines.append(f"# TYPE {name} {'gauge' if name in GAUGES else 'counter'}")
            for (n, labels), v in sorted(self._values.items()):
                if n != name:
                    continue
                lab = ",".join(f'{k}="{_escape(val)}"' for k, val in labels)
                lines.append(f"{name}{{{lab}}} {v:g}" if lab else f"{name} {v:g}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
