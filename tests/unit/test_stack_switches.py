"""stack.yml switches every optional feature by environment, as faas-cli reads it.

Each switch is checked with localgw's reading of stack.yml (what `make run` and the tests
deploy) and, when faas-cli is on PATH, with `faas-cli generate` (offline: it prints the
Function objects faas-cli would deploy), which must agree: faas-cli's substitution treats an
empty value as unset and cannot drop a list item, which is why the switches look as they do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from localgw.stack import load_stack

ROOT = Path(__file__).resolve().parents[2]
BASE = {
    "iam-discovery": ["iam-public-keys", "iam-cache-key", "redis-password"],
    "iam-token": ["iam-signing-keys", "iam-public-keys", "iam-cache-key", "redis-password", "sso-client-secret"],
    "iam-authz": ["iam-public-keys", "iam-cache-key", "redis-password", "basic-auth"],
    "iam-rotate": ["iam-signing-keys", "iam-public-keys", "iam-cache-key", "redis-password", "basic-auth"],
}
CASES = {
    "default": ({}, {fn: [*s, "iam-config"] for fn, s in BASE.items()}, "iam-config"),
    "crd-source": ({"IAM_CONFIG_SOURCE": "kubernetes", "IAM_CONFIG_MOUNT": " "}, BASE, "kubernetes"),
    "ca-bundle+redis-ca+audit": (
        {
            "EXTRA_SECRETS": ", ca-bundle, redis-ca",
            "AUTHZ_EXTRA_SECRETS": ", audit-webhook-secret",
            "AUDIT_WEBHOOK_URL": "https://audit.example.com/hook",
        },
        {
            fn: [*s, "iam-config", "ca-bundle", "redis-ca", *(["audit-webhook-secret"] if fn == "iam-authz" else [])]
            for fn, s in BASE.items()
        },
        "iam-config",
    ),
}


def faas_cli_view(env: dict[str, str]) -> dict[str, tuple[list[str], dict[str, str]]]:
    faas_cli = shutil.which("faas-cli")
    if not faas_cli:
        pytest.skip("faas-cli is not on PATH: only localgw's reading of stack.yml was checked")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("IAM_", "EXTRA_", "AUTHZ_", "AUDIT_"))}
    out = subprocess.run(
        [faas_cli, "generate", "-f", "stack.yml"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    return {d["metadata"]["name"]: (d["spec"].get("secrets") or [], d["spec"]["environment"]) for d in docs}


@pytest.mark.parametrize("case", CASES)
def test_each_switch_mounts_exactly_its_secrets(case: str) -> None:
    env, secrets, source = CASES[case]
    stack = load_stack(ROOT / "stack.yml", env)
    for fn, expected in secrets.items():
        got = stack.functions[fn]
        assert list(got.secrets) == expected, f"{fn}: secrets with {env}"
        assert got.environment["iam_config"] == source
    assert stack.functions["iam-authz"].environment.get("audit_webhook_url", "") == env.get("AUDIT_WEBHOOK_URL", "")


@pytest.mark.parametrize("case", CASES)
def test_faas_cli_reads_the_switches_the_same_way(case: str) -> None:
    env, secrets, source = CASES[case]
    view = faas_cli_view(env)
    for fn, expected in secrets.items():
        assert view[fn][0] == expected, f"faas-cli: {fn}: secrets with {env}"
        assert view[fn][1]["iam_config"] == source
