"""openfaas_iam.observability.metrics over prometheus-client, and the scrape-time gauges a Runtime exports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from openfaas_iam.jose.keyset import initial_keyset, parse_public_keys
from openfaas_iam.observability.metrics import SPECS, Metrics, metric_names
from openfaas_iam.service.runtime import Runtime
from openfaas_iam.settings import Settings

CONFIG = [
    {
        "apiVersion": "iam.openfaas.com/v1",
        "kind": "Policy",
        "metadata": {"name": "p"},
        "spec": {"statement": [{"sid": "s", "effect": "Allow", "action": ["Function:List"], "resource": ["*"]}]},
    }
]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_existing_names_and_callers_keep_working() -> None:
    m = Metrics()
    m.inc("openfaas_iam_jwks_fetches_total", issuer="a")
    m.inc("openfaas_iam_cache_rejected_total", kind="jwks")
    m.inc("openfaas_iam_jwks_shared_reads_total")
    m.set("openfaas_iam_redis_up", 0.0)
    text = m.render()
    assert 'openfaas_iam_jwks_fetches_total{issuer="a"} 1.0' in text
    assert "# TYPE openfaas_iam_redis_up gauge" in text and "openfaas_iam_redis_up 0.0" in text
    assert "# TYPE openfaas_iam_cache_rejected_total counter" in text
    assert m.value("openfaas_iam_cache_rejected_total", kind="jwks") == 1
    assert "_created" not in text, "no creation-time series"


def test_labels_are_fixed_per_metric_so_a_typo_fails() -> None:
    m = Metrics()
    with pytest.raises(ValueError, match="takes labels"):
        m.inc("openfaas_iam_token_exchanges_total", issuer="a", subject="someone")
    with pytest.raises(KeyError):
        m.inc("openfaas_iam_no_such_metric_total")


def test_no_metric_takes_a_per_user_label() -> None:
    for name, spec in SPECS.items():
        assert not {"sub", "subject", "user", "token", "jti", "email"} & set(spec.labels), name


def test_histogram_exports_buckets_sum_and_count() -> None:
    m = Metrics()
    m.observe("openfaas_iam_proxy_request_duration_seconds", 0.02)
    got = samples(m.render())
    assert got[("openfaas_iam_proxy_request_duration_seconds_count", ())] == 1
    assert got[("openfaas_iam_proxy_request_duration_seconds_bucket", (("le", "0.025"),))] == 1
    assert got[("openfaas_iam_proxy_request_duration_seconds_bucket", (("le", "0.01"),))] == 0
    assert {n for n, _ in got} <= metric_names()


def test_each_process_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.inc("openfaas_iam_jwks_shared_reads_total")
    assert b.value("openfaas_iam_jwks_shared_reads_total") == 0


def test_runtime_exports_config_state_and_key_ages_at_scrape_time(tmp_path: Path) -> None:
    now = time.time()
    keyset = initial_keyset(now - 600)
    (tmp_path / "iam-signing-keys").write_text(keyset.to_json())
    (tmp_path / "iam-public-keys").write_text(keyset.public_json())
    (tmp_path / "iam-config").write_text(json.dumps(CONFIG))
    rt = Runtime.build(Settings(secret_mount_path=str(tmp_path)))
    got = samples(rt.metrics.render())
    assert got[("openfaas_iam_config_valid", ())] == 1 and got[("openfaas_iam_config_loaded", ())] == 1
    assert got[("openfaas_iam_config_generation", ())] == 1
    assert got[("openfaas_iam_redis_configured", ())] == 0
    for keyset_name in ("public", "signing"):
        age = got[("openfaas_iam_signing_key_age_seconds", (("keyset", keyset_name),))]
        assert 595 <= age <= 700, (keyset_name, age)
        since = got[("openfaas_iam_signing_key_last_rotation_timestamp_seconds", (("keyset", keyset_name),))]
        assert since == pytest.approx(now - 600, abs=2)
    # A broken new configuration: invalid, the last good one still in force.
    time.sleep(1.1)
    (tmp_path / "iam-config").write_text("kind: [")
    # The configuration reloads off the request path (a background parse): wait for its verdict.
    deadline = time.monotonic() + 10
    got = samples(rt.metrics.render())
    while got[("openfaas_iam_config_valid", ())] != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
        got = samples(rt.metrics.render())
    assert got[("openfaas_iam_config_valid", ())] == 0 and got[("openfaas_iam_config_loaded", ())] == 1
    state = rt.status()["config"]
    assert state["in_force"] == "last good" and state["problems"]


def test_public_keyset_carries_the_current_keys_times_and_old_ones_still_parse() -> None:
    keyset = initial_keyset(1000.0)
    public = parse_public_keys(keyset.public_json())
    assert public.current == {"kid": keyset.current.kid, "created_at": 1000.0, "activated_at": 1000.0}
    assert set(json.loads(keyset.public_json())) == {"generation", "current", "keys"}
    old = parse_public_keys(json.dumps({"generation": 3, "keys": keyset.public_jwks()["keys"]}))
    assert old.current is None and old.generation == 3
    planted = parse_public_keys(json.dumps({"generation": 3, "keys": [], "current": {"created_at": "x"}}))
    assert planted.current is None
