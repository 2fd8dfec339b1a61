"""Bounded HTTP fuzzing of every function behind the local gateway: never a 5xx, never a hang."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import requests
from bundle_harness import Running, start_bundle
from fuzz.http_cases import random_case, send
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    running = start_bundle(tmp_path_factory.mktemp("fuzz"))
    try:
        yield running
    finally:
        running.stop()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.randoms(use_true_random=False))
def test_no_endpoint_ever_answers_5xx(bundle: Running, rng: random.Random) -> None:
    case = random_case(rng, bundle.tokens)
    resp = send(requests, bundle.base, case)
    assert resp.status_code < 500, f"{case.method} {case.function}{case.path} -> {resp.status_code}: {resp.text[:300]}"
    if case.check is not None:
        decision = resp.json()
        ns = case.check["resource"].split(":")[0]
        if decision["allowed"]:
            assert ns == "dev" or (case.check["resource"] == "*" and case.check["action"] == "System:Info")
