"""Where the signing keyset lives: a Kubernetes Secret, or a local folder for `make run`.

Both offer the same compare-and-swap: `read()` returns the keyset with a version, and
`write(keyset, version)` succeeds only if nobody wrote in between, raising
ConflictError otherwise. That is what makes two concurrent rotations apply one step.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ConflictError, StoreError
from ..keyset import Keyset, parse_keyset
from .kubernetes import KubernetesClient


@dataclass(frozen=True)
class Versioned:
    keyset: Keyset
    version: str


class KeysetStore(Protocol):
    name: str

    def read(self) -> Versioned: ...
    def write(self, keyset: Keyset, version: str) -> str: ...


class LocalFolderStore:
    """A file in the local secret folder; the version is a hash of its content."""

    def __init__(self, path: str) -> None:
        self.path = os.path.realpath(path)
        self.name = f"local file {self.path}"

    def read(self) -> Versioned:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise StoreError(
                f"{self.name}: cannot read ({e.strerror}); create it with `openfaas-iam keys init -o {self.path}`"
            ) from None
        return Versioned(parse_keyset(raw, self.name), hashlib.sha256(raw).hexdigest())

    def write(self, keyset: Keyset, version: str) -> str:
        lock_path = self.path + ".lock"
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(self.path, "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != version:
                        raise ConflictError(f"{self.name} changed since it was read")
            except FileNotFoundError:
                pass
            data = keyset.to_json().encode()
            tmp = f"{self.path}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)  # atomic: readers see the old or the new keyset, never half
            return hashlib.sha256(data).hexdigest()


class KubernetesSecretStore:
    """One key of one Secret, written with `resourceVersion` compare-and-swap (409 on conflict)."""

    def __init__(self, client: KubernetesClient, namespace: str, secret: str, key: str) -> None:
        self.client = client
        self.namespace = namespace
        self.secret = secret
        self.key = key
        self.name = f"Secret {namespace}/{secret}"
        self._path = f"/api/v1/namespaces/{namespace}/secrets/{secret}"

    def read(self) -> Versioned:
        doc = self.client.request("GET", self._path, what=f"reading {self.name}")
        data = (doc.get("data") or {}).get(self.key)
        if not data:
            hint = "openfaas-iam keys init --format manifest | kubectl apply -f -"
            raise StoreError(f"{self.name} has no key {self.key!r}; create it with `{hint}`")
        try:
            raw = base64.b64decode(data)
        except ValueError:
            raise StoreError(f"{self.name}: key {self.key!r} is not base64") from None
        return Versioned(parse_keyset(raw, self.name), str(doc.get("metadata", {}).get("resourceVersion", "")))

    def write(self, keyset: Keyset, version: str) -> str:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": self.secret, "namespace": self.namespace, "resourceVersion": version},
            "type": "Opaque",
            "data": {self.key: base64.b64encode(keyset.to_json().encode()).decode()},
        }
        # PUT replaces the whole Secret, so other keys would be lost: carry them over.
        current = self.client.request("GET", self._path, what=f"reading {self.name}")
        if str(current.get("metadata", {}).get("resourceVersion", "")) != version:
            raise ConflictError(f"{self.name} changed since it was read")
        for k, v in (current.get("data") or {}).items():
            if k != self.key:
                body["data"][k] = v
        if current.get("metadata", {}).get("labels"):
            body["metadata"]["labels"] = current["metadata"]["labels"]
        doc = self.client.request("PUT", self._path, body=body, what=f"writing {self.name}")
        return str(doc.get("metadata", {}).get("resourceVersion", ""))
