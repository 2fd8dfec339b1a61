"""Secrets for the local gateway, laid out like Kubernetes secrets mounted by OpenFaaS.

The store is a folder with one sub-folder per secret and one file per key
(`.local/secrets/<secret>/<key>`, what `faas-cli secret create NAME` makes is
`<NAME>/<NAME>`). Each function gets its own mount folder holding a symlink per key
of each secret it lists, so it reads `/var/openfaas/secrets/<key>`-style paths and
sees a rotated key as soon as the store is written.
"""

from __future__ import annotations

import os
import secrets as pysecrets
from pathlib import Path

from openfaas_iam.keyset import initial_keyset

from .stack import Function, StackError


def ensure_defaults(store: Path, iam_config: Path) -> list[str]:
    """Create the secrets `make run` needs when absent; return what was created."""
    created: list[str] = []
    store.mkdir(parents=True, exist_ok=True)
    config_dir = store / "iam-config"
    config_dir.mkdir(exist_ok=True)
    link = config_dir / "iam-config"
    target = iam_config.resolve()
    if not target.is_file():
        raise StackError(f"IAM_CONFIG: {iam_config} is not a file")
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == target:
            pass
        else:
            link.unlink()
            link.symlink_to(target)
    else:
        link.symlink_to(target)
    keys = store / "iam-signing-keys" / "iam-signing-keys"
    if not keys.exists():
        keys.parent.mkdir(exist_ok=True)
        write_private(keys, initial_keyset().to_json())
        created.append("iam-signing-keys (a new ES256 keyset)")
    sso = store / "sso-client-secret"
    if not sso.exists():
        sso.mkdir()
        write_private(sso / "sso-client-secret", "set-me: the OAuth client secret of the sign-in page")
        created.append("sso-client-secret (a placeholder)")
    auth = store / "basic-auth"
    if not auth.exists():
        auth.mkdir()
        write_private(auth / "basic-auth-user", "admin")
        write_private(auth / "basic-auth-password", pysecrets.token_urlsafe(24))
        created.append("basic-auth (admin and a random password)")
    return created


def write_private(path: Path, text: str) -> None:
    """Write atomically with owner-only permissions (a rename, as the kubelet swaps mounts)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def project(store: Path, fn: Function, mount: Path) -> None:
    """Give one function its secrets: a symlink per key of every secret it lists."""
    if mount.exists():
        for entry in mount.iterdir():
            entry.unlink()
    mount.mkdir(parents=True, exist_ok=True)
    for name in fn.secrets:
        folder = store / name
        if not folder.is_dir():
            raise StackError(
                f"functions.{fn.name}.secrets: secret {name!r} not found in {store}; "
                f"create it with: mkdir -p {folder} && printf VALUE > {folder}/{name}"
            )
        for key in sorted(folder.iterdir()):
            if key.name.startswith("."):
                continue
            (mount / key.name).symlink_to(key.resolve() if not key.is_symlink() else key.absolute())
