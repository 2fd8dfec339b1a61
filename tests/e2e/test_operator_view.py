"""What operators see: every function's /metrics (prometheus-client) and iam-authz's /status.

The bundle runs behind the local gateway with Redis, the test IdP and the gateway stand-in
(the same set-up as the confused-deputy tests). Functions run two replicas behind
round-robin, so a metric is read from as many scrapes as there are replicas and summed,
which is what Prometheus does across pods.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import requests
import test_confused_deputy as deputy
from conftest import make_project, start_gateway
from prometheus_client.parser import text_string_to_metric_families
from test_confused_deputy import EXCHANGE, ID_TOKEN, Env

from openfaas_iam.observability.metrics import metric_names

env = deputy.env  # the same set-up, started once for this module

FUNCTIONS = ("iam-discovery", "iam-token", "iam-authz", "iam-rotate")
REPLICAS = {"iam-discovery": 1, "iam-token": 2, "iam-authz": 2, "iam-rotate": 1}


def scrape(env: Env, fn: str) -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], str]:
    """Every replica's samples summed (round-robin: one scrape per replica), and the raw text."""
    total: dict[tuple[str, frozenset[tuple[str, str]]], float] = defaultdict(float)
    texts = []
    for _ in range(REPLICAS[fn]):
        r = requests.get(f"{env.base}/function/{fn}/metrics", timeout=10)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
        texts.append(r.text)
        for family in text_string_to_metric_families(r.text):
            for sample in family.samples:
                total[(sample.name, frozenset(sample.labels.items()))] += sample.value
    return total, "\n".join(texts)


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_every_function_serves_its_metrics_with_config_and_key_state(env: Env) -> None:
    for fn in FUNCTIONS:
        samples, text = scrape(env, fn)
        names = {name for name, _ in samples}
        assert names <= metric_names(), (fn, names - metric_names())
        assert value(samples, "openfaas_iam_config_valid") == REPLICAS[fn], fn
        assert value(samples, "openfaas_iam_config_loaded") == REPLICAS[fn], fn
        assert value(samples, "openfaas_iam_redis_configured") == REPLICAS[fn], fn
        assert value(samples, "openfaas_iam_redis_up") == REPLICAS[fn], fn
        # Every function mounts the public keyset: its generation and the current key's age.
        assert value(samples, "openfaas_iam_signing_key_age_seconds", keyset="public") > 0, (fn, text)
        assert value(samples, "openfaas_iam_signing_key_last_rotation_timestamp_seconds", keyset="public") > 0, fn
    token, _ = scrape(env, "iam-token")
    assert value(token, "openfaas_iam_signing_key_age_seconds", keyset="signing") > 0, "the signer sees its own keyset"
    authz, _ = scrape(env, "iam-authz")
    assert ("openfaas_iam_signing_key_age_seconds", frozenset({("keyset", "signing")})) not in authz, "not mounted"


def test_exchanges_are_counted_by_issuer_and_outcome_without_the_subject(env: Env) -> None:
    before, _ = scrape(env, "iam-token")
    subject = env.idp.mint({"sub": "metrics-person@example.com"}, ttl=600)
    data = {"grant_type": EXCHANGE, "subject_token": subject, "subject_token_type": ID_TOKEN}
    bad = {**data, "subject_token": "x.y.z"}
    assert requests.post(f"{env.base}/function/iam-token/oauth/token", data=data, timeout=10).status_code == 400
    assert requests.post(f"{env.base}/function/iam-token/oauth/token", data=bad, timeout=10).status_code == 400
    env.token("dev-user")
    after, text = scrape(env, "iam-token")

    def delta(**labels: str) -> float:
        name = "openfaas_iam_token_exchanges_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(issuer="idp", outcome="invalid_request") >= 1, text  # no role matches that person
    assert delta(issuer="unknown", outcome="invalid_request") >= 1, text  # not a JWT: no issuer
    assert value(after, "openfaas_iam_token_exchanges_total", issuer="idp", outcome="ok") >= 1, text
    assert "metrics-person" not in text and "x.y.z" not in text and subject not in text


def test_decisions_latency_and_upstream_status_are_counted(env: Env) -> None:
    before, _ = scrape(env, "iam-authz")
    auth = {"Authorization": env.auth("dev-user")}
    allowed = requests.get(f"{env.authz}/system/functions", params={"namespace": "dev"}, headers=auth, timeout=10)
    denied = requests.get(
        f"{env.authz}/system/functions", params={"namespace": "openfaas-fn"}, headers=auth, timeout=10
    )
    assert allowed.status_code == 200 and denied.status_code == 403, (allowed.text, denied.text)
    checked = requests.post(
        f"{env.authz}/authorize", json=[{"action": "Made:Up", "resource": "*"}], headers=auth, timeout=10
    )
    assert checked.status_code == 200, checked.text
    after, text = scrape(env, "iam-authz")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    decisions = "openfaas_iam_authz_decisions_total"
    assert delta(decisions, action="Function:List", effect="allow") >= 1, text
    assert delta(decisions, action="Function:List", effect="deny") >= 1, text
    assert delta(decisions, action="other", effect="deny") >= 1, "a caller's made-up action is not a label"
    assert "Made:Up" not in text
    assert delta("openfaas_iam_proxy_request_duration_seconds_count") >= 1, text
    assert delta("openfaas_iam_proxy_request_duration_seconds_bucket", le="+Inf") >= 1, text
    assert delta("openfaas_iam_proxy_upstream_responses_total", code="200") >= 1, text
    assert "dev-user" not in text and env.token("dev-user") not in text


def test_status_shows_config_keys_redis_and_each_function(env: Env) -> None:
    r = requests.get(f"{env.authz}/status", headers={"Authorization": env.auth("admin")}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["config"]["generation"] >= 1 and body["config"]["in_force"] == "current"
    assert body["redis"] == {"state": "ok"}
    public = body["keys"]["public"]
    assert public["generation"] >= 0 and public["current_kid"] and public["age_seconds"] >= 0
    assert set(body["functions"]) == {"iam-discovery", "iam-token", "iam-rotate"}
    assert r.headers["Cache-Control"] == "no-store"
    # The public health of each function says whether its configuration is valid, never why.
    health = requests.get(f"{env.base}/function/iam-token/healthz", timeout=10).json()
    assert health["config"] == {"loaded": True, "valid": True, "generation": health["config"]["generation"]}
    assert "signing" in health["keys"] and "problems" not in health["config"]


def test_status_collects_each_functions_health_through_the_gateway(tmp_path: Path) -> None:
    """With the gateway the functions are really behind (not the stand-in), each answers for itself."""
    (tmp_path / "iam.json").write_text(json.dumps(deputy.docs("https://idp.example.com")))
    gw = start_gateway(tmp_path, stack=make_project(tmp_path), iam_config=tmp_path / "iam.json")
    try:
        folder = tmp_path / "state" / "secrets" / "basic-auth"
        admin = ((folder / "basic-auth-user").read_text(), (folder / "basic-auth-password").read_text())
        r = requests.get(f"http://127.0.0.1:{gw.port}/function/iam-authz/status", auth=admin, timeout=15)
        assert r.status_code == 200, r.text
        peers = r.json()["functions"]
        assert set(peers) == {"iam-discovery", "iam-token", "iam-rotate"}
        for name, health in peers.items():
            assert health["status"] == "ok", (name, health)
            assert health["config"]["valid"] is True and health["redis"] == {"state": "not configured"}
            assert health["keys"]["public"]["current_kid"], (name, health)
        assert "signing" in peers["iam-token"]["keys"] and "signing" not in peers["iam-discovery"]["keys"]
    finally:
        gw.stop()
