"""Faults under load: Redis killed and restarted, the IdP down and slow, the webhook receiver down.

Each asserts what keeps working, what fails with which clear error, and that nothing is
lost. (Kubernetes API faults during rotation: tests/integration/test_rotation.py; the
gateway down behind the proxy: tests/e2e/test_authz_proxy.py.)
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import requests
from idp_server import OidcProvider

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


def docs(iss: str) -> list[dict]:
    return [
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "JwtIssuer",
            "metadata": {"name": "idp"},
            "spec": {"iss": iss, "aud": ["https://gateway.test"]},
        },
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "Policy",
            "metadata": {"name": "p"},
            "spec": {"statement": [{"sid": "s", "effect": "Allow", "action": ["Function:*"], "resource": ["dev:*"]}]},
        },
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "Role",
            "metadata": {"name": "r"},
            "spec": {"policy": ["p"], "principal": {"jwt:sub": ["alice"]}},
        },
    ]


def exchange(base: str, token: str) -> requests.Response:
    data = {"grant_type": EXCHANGE, "subject_token": token, "subject_token_type": ID_TOKEN}
    return requests.post(f"{base}/function/iam-token/oauth/token", data=data, timeout=30)


def test_redis_killed_and_restarted_under_load(
    local_gateway, idp: OidcProvider, throwaway_redis, tmp_path: Path
) -> None:
    (tmp_path / "iam.json").write_text(json.dumps(docs(idp.issuer)))
    prefix = f"fault-{uuid.uuid4().hex[:6]}:"
    gw = local_gateway(
        iam_config=tmp_path / "iam.json", env={"REDIS_URL": throwaway_redis.url}, function_env={"redis_prefix": prefix}
    )
    base = f"http://127.0.0.1:{gw.port}"
    subject = idp.mint({"sub": "alice"}, ttl=600)
    failures: list[str] = []
    done = threading.Event()
    counts = {"exchange": 0, "authorize": 0}

    def load() -> None:
        while not done.is_set():
            r = exchange(base, subject)
            if r.status_code != 200:
                failures.append(f"exchange {r.status_code} {r.text}")
                continue
            counts["exchange"] += 1
            token = r.json()["access_token"]
            a = requests.post(
                f"{base}/function/iam-authz/authorize",
                json={"action": "Function:Get", "resource": "dev:x"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            if a.status_code != 200 or not a.json()["allowed"]:
                failures.append(f"authorize {a.status_code} {a.text}")
            counts["authorize"] += 1

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        throwaway_redis.stop()  # killed mid-load
        during = dict(counts)
        time.sleep(2.0)
        assert counts["exchange"] > during["exchange"], "exchanges continue while Redis is down"
        throwaway_redis.start()  # back on the same port
        time.sleep(6.5)  # the circuit re-closes after 5 s
    finally:
        done.set()
        for t in threads:
            t.join()
    assert failures == []
    # After the restart the functions use Redis again by themselves: a prefetch lands there.
    requests.post(f"{base}/function/iam-discovery/refresh", timeout=30).raise_for_status()
    client = redis.Redis.from_url(throwaway_redis.url)
    assert client.get(f"{prefix}jwks:{idp.issuer}") is not None


def test_idp_slow_and_down_fails_fast_and_keeps_threads_free(local_gateway, idp: OidcProvider, tmp_path: Path) -> None:
    (tmp_path / "iam.json").write_text(json.dumps(docs(idp.issuer)))
    gw = local_gateway(
        iam_config=tmp_path / "iam.json", function_env={"fetch_timeout": "1", "jwks_refetch_interval": "1"}
    )
    base = f"http://127.0.0.1:{gw.port}"
    token = idp.mint({"sub": "alice"}, ttl=600)
    idp.admin("delay", {"ms": 5000})  # the IdP answers, but five seconds late
    try:
        # 16 exchanges at once, twice the function's threads: each fails within the fetch
        # timeout with a clear reason, and the function keeps answering its health check.
        start = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(exchange, base, token) for _ in range(16)]
            health = requests.get(f"{base}/function/iam-token/healthz", timeout=5)
            results = [f.result() for f in futures]
        elapsed = time.monotonic() - start
        assert health.status_code == 200
        assert elapsed < 12, f"requests were held for {elapsed:.1f}s"
        for r in results:
            # The IdP failed, not the request: 503 + Retry-After, so a CI job retries instead of giving up.
            assert r.status_code == 503 and r.headers["Retry-After"] == "5"
            assert r.json()["error"] == "temporarily_unavailable"
            assert "did not answer within 1s" in r.json()["error_description"]
    finally:
        idp.admin("delay", {"ms": 0})
    # The IdP answers again: the next exchange works (the failure was not cached for long).
    time.sleep(1.1)
    assert exchange(base, token).status_code == 200
    # Down for good: the cached keys keep verifying (within the maximum staleness).
    idp.stop()
    assert exchange(base, token).status_code == 200
