"""Secrets for the local gateway, laid out and updated like Kubernetes secrets mounted by OpenFaaS.

The store is a folder with one sub-folder per secret and one file per key
(`.local/secrets/<secret>/<key>`, what `faas-cli secret create NAME` makes is
`<NAME>/<NAME>`). Each function gets its own mount folder holding a *copy* of each key
of each secret it lists, refreshed `sync_delay` seconds after the store changes, as the
kubelet does (late, never half-written), so the bundle is exercised against late
mounts here too. The bundle's private secrets are mounted only into the functions
`openfaas_iam.model.custody` names: any other function listing them is refused. Secrets are
written through the gateway's `/system/secrets` (admin basic auth; values never
returned), as on OpenFaaS.
"""

from __future__ import annotations

import os
import re
import secrets as pysecrets
import threading
import time
from pathlib import Path

from openfaas_iam.jose.keyset import initial_keyset
from openfaas_iam.model.custody import may_mount

from .stack import Function, StackError

_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


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
    public = store / "iam-public-keys" / "iam-public-keys"
    if not keys.exists():
        keys.parent.mkdir(exist_ok=True)
        public.parent.mkdir(exist_ok=True)
        keyset = initial_keyset()
        write_private(public, keyset.public_json())
        write_private(keys, keyset.to_json())
        created.append("iam-signing-keys and iam-public-keys (a new ES256 keyset)")
    elif not public.exists():
        from openfaas_iam.jose.keyset import read_keyset_file

        public.parent.mkdir(exist_ok=True)
        write_private(public, read_keyset_file(str(keys)).public_json())
        created.append("iam-public-keys (from iam-signing-keys)")
    cache_key = store / "iam-cache-key"
    if not cache_key.exists():
        cache_key.mkdir()
        write_private(cache_key / "iam-cache-key", pysecrets.token_urlsafe(32))
        created.append("iam-cache-key (random)")
    redis_password = store / "redis-password"
    if not redis_password.exists():
        redis_password.mkdir()
        write_private(redis_password / "redis-password", "")
        created.append("redis-password (empty: a local Redis without a password)")
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
    """Give one function its secrets now: a copy of each key of every secret it lists."""
    if mount.exists():
        for entry in mount.iterdir():
            entry.unlink()
    mount.mkdir(parents=True, exist_ok=True)
    for name in fn.secrets:
        folder = store / name
        if not may_mount(fn.name, name):
            raise StackError(
                f"functions.{fn.name}.secrets: secret {name!r} belongs to openfaas-iam and is mounted only into "
                "the functions that need it (see docs/rotation.md, Where each key lives)"
            )
        if not folder.is_dir():
            raise StackError(
                f"functions.{fn.name}.secrets: secret {name!r} not found in {store}; "
                f"create it with: mkdir -p {folder} && printf VALUE > {folder}/{name}"
            )
        for key in sorted(folder.iterdir()):
            if key.name.startswith("."):
                continue
            _copy(key, mount / key.name)


def _copy(source: Path, target: Path) -> None:
    data = source.read_bytes()
    tmp = target.with_name(f".{target.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)  # swapped whole, as the kubelet swaps its symlink


class SecretMounts:
    """The local provider's secrets: the store, each function's mount, and the late sync between them.

    A key changed in the store reaches each mount `sync_delay` seconds later (the
    kubelet's sync), not before. Writes come through the local provider's
    `/system/secrets` (this is its SecretStore); nothing here ever returns a secret's value.
    """

    def __init__(self, store: Path, sync_delay: float = 1.0) -> None:
        self.store = store
        self.sync_delay = sync_delay
        self.mounts: list[tuple[Function, Path]] = []
        self._copied: dict[Path, tuple[int, int, int]] = {}  # mount file -> the store file's stat it holds
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def add(self, fn: Function, mount: Path) -> None:
        project(self.store, fn, mount)
        self.mounts.append((fn, mount))

    def delete(self, namespace: str, name: str) -> bool:
        folder = self.store / name
        if not self.exists(namespace, name):
            return False
        with self._lock:
            for key in folder.iterdir():
                key.unlink()
            folder.rmdir()
        return True

    def sync_once(self, now: float | None = None) -> int:
        """Copy every store key that changed at least `sync_delay` ago into the mounts; how many copied."""
        now = time.time() if now is None else now
        copied = 0
        for fn, mount in self.mounts:
            for name in fn.secrets:
                folder = self.store / name
                if not folder.is_dir():
                    continue  # a deleted secret stays mounted until a redeploy, as in Kubernetes
                for key in folder.iterdir():
                    if key.name.startswith("."):
                        continue
                    target = mount / key.name
                    try:
                        st = key.stat()
                        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                        if self._copied.get(target) == stamp or now - st.st_mtime < self.sync_delay:
                            continue
                        if not target.exists():
                            continue  # keys added later appear only after a redeploy
                        if target.read_bytes() != key.read_bytes():
                            _copy(key, target)
                            copied += 1
                        self._copied[target] = stamp
                    except OSError:
                        continue
        return copied

    def run(self, interval: float = 0.1) -> None:
        while not self._stop.wait(interval):
            self.sync_once()

    def stop(self) -> None:
        self._stop.set()

    def admin(self) -> tuple[str, str] | None:
        try:
            user = (self.store / "basic-auth" / "basic-auth-user").read_text().strip()
            password = (self.store / "basic-auth" / "basic-auth-password").read_text().strip()
        except OSError:
            return None
        return user, password

    # The provider's SecretStore (localgw.provider): one namespace, values never returned.

    def names(self, namespace: str = "openfaas-fn") -> list[str]:
        return sorted(p.name for p in self.store.iterdir() if p.is_dir() and not p.name.startswith("."))

    def exists(self, namespace: str, name: str) -> bool:
        return _SECRET_NAME.fullmatch(name) is not None and (self.store / name).is_dir()

    def put(self, namespace: str, name: str, value: bytes) -> None:
        folder = self.store / name
        with self._lock:
            folder.mkdir(exist_ok=True)
            tmp = folder / f".{name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(value)
            os.replace(tmp, folder / name)
