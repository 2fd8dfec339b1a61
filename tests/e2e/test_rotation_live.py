"""Rotation under load: tokens are exchanged and verified continuously while keys rotate.

The local provider mounts secrets late (LOCAL_SECRET_SYNC_DELAY), iam-rotate writes the
keysets through the local gateway's /system/secrets and reads its own late mount; forced
rotations that come before the next key has been published long enough are refused (409).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import jwt
import requests
from idp_server import OidcProvider

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
LIFETIME = 4  # seconds: short, so retirement can be watched end to end


def docs(iss: str) -> list[dict]:
    return [
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "JwtIssuer",
            "metadata": {"name": "idp"},
            "spec": {"iss": iss, "aud": ["https://gateway.test"], "tokenExpiry": f"{LIFETIME}s"},
        },
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "Policy",
            "metadata": {"name": "p"},
            "spec": {"statement": [{"sid": "s", "effect": "Allow", "action": ["Function:List"], "resource": ["*"]}]},
        },
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "Role",
            "metadata": {"name": "r"},
            "spec": {"policy": ["p"], "principal": {"jwt:sub": ["alice"]}},
        },
    ]


def test_no_token_fails_while_keys_rotate(local_gateway, idp: OidcProvider, redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "iam.json").write_text(json.dumps(docs(idp.issuer)))
    gw = local_gateway(
        iam_config=tmp_path / "iam.json",
        env={"REDIS_URL": redis_url, "LOCAL_SECRET_SYNC_DELAY": "0.3"},
        function_env={
            "leeway_seconds": "1",
            # the late mount (0.3 s) + the functions' once-a-second stat of their mounts
            "mount_sync_allowance": "1.5",
            "own_jwks_max_age": "0",
            "rotation_interval": "1s",
            "redis_prefix": f"rot-{uuid.uuid4().hex[:6]}:",
        },
    )
    base = f"http://127.0.0.1:{gw.port}"
    secrets = gw.secret_store / "basic-auth"
    admin = ((secrets / "basic-auth-user").read_text(), (secrets / "basic-auth-password").read_text())
    subject = idp.mint({"sub": "alice"}, ttl=600)

    def exchange() -> str:
        r = requests.post(
            f"{base}/function/iam-token/oauth/token",
            data={"grant_type": EXCHANGE, "subject_token": subject, "subject_token_type": ID_TOKEN},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def verify_everywhere(token: str) -> list[str]:
        """iam-authz (server side) and PyJWT from the published JWKS (what any client does)."""
        problems = []
        r = requests.get(f"{base}/function/iam-authz/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        if r.status_code != 200:
            problems.append(f"iam-authz: {r.status_code} {r.text}")
        keys = requests.get(f"{base}/function/iam-discovery/.well-known/jwks.json", timeout=10).json()["keys"]
        kid = jwt.get_unverified_header(token)["kid"]
        match = [k for k in keys if k["kid"] == kid]
        if not match:
            problems.append(f"kid {kid} not in the published JWKS")
        else:
            issuer = f"{base}/function/iam-discovery"
            jwt.decode(token, jwt.PyJWK(match[0]).key, algorithms=["ES256"], audience=issuer, issuer=issuer, leeway=1)
        return problems

    first = exchange()
    first_kid = jwt.get_unverified_header(first)["kid"]
    first_exp = jwt.decode(first, options={"verify_signature": False})["exp"]
    failures: list[str] = []
    kids: set[str] = set()
    stop = threading.Event()

    rotations: list[int] = []

    def rotate_repeatedly() -> None:
        """Forced runs every 0.4 s; anything unexpected goes into `failures`.

        Never an `assert` or an uncaught error here: raised in this thread it would only end the
        thread (pytest reports at most a warning), and the test could pass without it.
        """
        while not stop.wait(0.4):
            try:
                r = requests.post(f"{base}/function/iam-rotate/?force=true", auth=admin, timeout=10)
                if r.status_code == 409:
                    if r.json().get("error") != "rotation_not_safe_yet" or int(r.headers.get("Retry-After", "0")) < 1:
                        failures.append(f"rotation: 409 {r.text} (Retry-After {r.headers.get('Retry-After')})")
                    continue
                if r.status_code != 200:
                    failures.append(f"rotation: {r.status_code} {r.text}")
                elif r.json()["rotated"]:
                    rotations.append(r.json()["generation"])
            except Exception as e:  # reported below, in the test's own thread
                failures.append(f"rotation: {type(e).__name__}: {e}")
                return

    rotator = threading.Thread(target=rotate_repeatedly)
    rotator.start()
    checked = 0
    try:
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            token = exchange()
            kids.add(jwt.get_unverified_header(token)["kid"])
            failures.extend(verify_everywhere(token))
            if time.time() < first_exp - 0.2:
                failures.extend(f"first token: {p}" for p in verify_everywhere(first))
                checked += 1
    finally:
        stop.set()
        rotator.join()
    assert failures == []
    assert len(rotations) >= 2 and rotations == sorted(set(rotations)), f"one step at a time: {rotations}"
    assert len(kids) >= 3, f"tokens were signed by several keys in turn: {kids}"
    assert checked > 5, "the token minted before the rotations kept verifying until its exp"
    # Once every token the first key signed has expired (exp + leeway + mount allowance), a run removes it,
    # and the mounts show that a little later.
    time.sleep(max(0.0, first_exp + 1 + 1.5 - time.time()))

    def published() -> set[str]:
        keys = requests.get(f"{base}/function/iam-discovery/.well-known/jwks.json", timeout=10).json()["keys"]
        return {k["kid"] for k in keys}

    deadline = time.monotonic() + 20
    while first_kid in published() and time.monotonic() < deadline:
        requests.post(f"{base}/function/iam-rotate/", timeout=10).raise_for_status()  # the cron run prunes
        time.sleep(0.5)
    assert first_kid not in published()
    # Forcing is for operators only: anyone else gets a 401 and nothing rotates.
    denied = requests.post(f"{base}/function/iam-rotate/?force=true", timeout=10)
    assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
    assert (
        requests.post(f"{base}/function/iam-rotate/?force=true", auth=("admin", "guess"), timeout=10).status_code == 401
    )
    status = requests.get(f"{base}/function/iam-rotate/status", timeout=10).json()
    assert [k["state"] for k in status["keys"]].count("current") == 1
    deadline = time.monotonic() + 10
    while published() != {k["kid"] for k in status["keys"]} and time.monotonic() < deadline:
        time.sleep(0.3)
        status = requests.get(f"{base}/function/iam-rotate/status", timeout=10).json()
    assert published() == {k["kid"] for k in status["keys"]}
