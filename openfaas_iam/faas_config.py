"""faas-cli's own config file, so `faas-cli` picks up the token by itself.

Layout (faas-cli `config` package): `config.yml` in `~/.openfaas/`, in the directory named
by `OPENFAAS_CONFIG`, or in `./.openfaas/` when `CI=true`; the directory is created 0700.
`auths: [{gateway, auth: oauth2, token, options: [{name, value}]}]`, one entry per gateway.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("OPENFAAS_CONFIG"):
        return Path(env["OPENFAAS_CONFIG"]).expanduser()
    if env.get("CI", "").lower() == "true":
        return Path.cwd() / ".openfaas"
    return Path(env.get("HOME") or Path.home()) / ".openfaas"


def normalize_gateway(url: str) -> str:
    """faas-cli compares gateways without a trailing slash."""
    return url.strip().rstrip("/")


def save_token(gateway: str, token: str, options: Mapping[str, str], env: Mapping[str, str] | None = None) -> Path:
    """Replace this gateway's entry (or add one), leaving every other entry untouched."""
    folder = config_dir(env)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "config.yml"
    doc: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if isinstance(loaded, dict):
            doc = loaded
    auths = [a for a in doc.get("auths") or [] if isinstance(a, dict)]
    gw = normalize_gateway(gateway)
    entry = {
        "gateway": gw,
        "auth": "oauth2",
        "token": token,
        "options": [{"name": k, "value": v} for k, v in options.items()],
    }
    replaced = False
    for i, a in enumerate(auths):
        if normalize_gateway(str(a.get("gateway", ""))) == gw:
            auths[i] = entry
            replaced = True
    if not replaced:
        auths.append(entry)
    # Keep one entry per gateway even if an older file had duplicates.
    seen: set[str] = set()
    unique = []
    for a in auths:
        key = normalize_gateway(str(a.get("gateway", "")))
        if key not in seen:
            seen.add(key)
            unique.append(a)
    doc["auths"] = unique
    tmp = path.with_name(".config.yml.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, path)
    return path
