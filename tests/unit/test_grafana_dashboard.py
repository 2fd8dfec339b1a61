"""deploy/grafana-dashboard.json: valid JSON whose every expression names metrics the functions export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from openfaas_iam.observability.metrics import SPECS, metric_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json"


def expressions() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    out = []
    for panel in doc["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bopenfaas_iam_[a-z0-9_]+", expr))


def test_dashboard_is_json_with_unique_panels() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["title"] == "openfaas-iam" and doc["panels"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["type"] == "prometheus" for p in doc["panels"])


def test_every_expression_names_only_exported_metrics() -> None:
    exported = metric_names()
    for title, expr in expressions():
        used = names_in(expr)
        assert used, (title, expr, "names no openfaas-iam metric")
        assert used <= exported, (title, used - exported)


def test_every_metric_has_a_panel() -> None:
    used = set().union(*(names_in(e) for _, e in expressions()))
    for name, spec in SPECS.items():
        forms = {name} if spec.kind != "histogram" else {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        assert forms & used, f"{name} has no panel"
