"""Where the signing keysets live: two secrets, written through the gateway, read from mounts.

- `iam-signing-keys`: the private keyset, mounted only into iam-token (signs) and
  iam-rotate (rotates).
- `iam-public-keys`: the public keyset, mounted into every function that verifies.

iam-rotate writes both through the gateway's own secrets API (`PUT /system/secrets`,
falling back to `POST` when the secret does not exist yet) with the gateway's admin
credentials. That API never returns a value, so no Kubernetes RBAC grant on Secrets is
needed at all: the shared `default` service account of `openfaas-fn` can read nothing.
The price is that iam-rotate reads its own mounted copies, which the kubelet updates up
to a couple of minutes late; rotation.py is written for that (generation numbers, a
lease, and a schedule that advances only once the mounts have caught up).

The public keyset is always written first: a key must be published before any signer
can hold it, and a failure between the two writes leaves a harmless extra public key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import requests

from openfaas_iam.errors import StoreError
from openfaas_iam.jose.keyset import Keyset, PublicKeys, parse_keyset, parse_public_keys


class SecretWriter(Protocol):
    name: str

    def write(self, secret: str, value: str) -> None: ...


class GatewaySecretWriter:
    """Secrets written through `/system/secrets` of the OpenFaaS gateway (or the local one)."""

    def __init__(
        self,
        gateway_url: str,
        credentials: Callable[[], tuple[str, str] | None],
        namespace: str = "openfaas-fn",
        *,
        timeout: float = 5.0,
        verify: str | bool = True,
    ) -> None:
        self.url = gateway_url.rstrip("/") + "/system/secrets"
        self.credentials = credentials
        self.namespace = namespace
        self.timeout = timeout
        self.verify = verify
        self.name = f"the gateway's secrets API at {self.url}"
        self.session = requests.Session()
        self.session.trust_env = False

    def _send(self, method: str, secret: str, value: str) -> requests.Response:
        body: dict[str, Any] = {"name": secret, "namespace": self.namespace, "value": value}
        auth = self.credentials()
        if auth is None:
            raise StoreError(
                f"writing secret {secret}: the gateway's admin credentials are not mounted; "
                "list the basic-auth secret (basic-auth-user, basic-auth-password) in iam-rotate's secrets"
            )
        try:
            return self.session.request(
                method, self.url, json=body, auth=auth, timeout=self.timeout, verify=self.verify
            )
        except requests.exceptions.Timeout:
            raise StoreError(f"writing secret {secret}: {self.name} did not answer within {self.timeout:g}s") from None
        except requests.exceptions.RequestException as e:
            raise StoreError(f"writing secret {secret}: {self.name} is unreachable ({type(e).__name__})") from None

    def write(self, secret: str, value: str) -> None:
        resp = self._send("PUT", secret, value)
        if resp.status_code == 404:  # not created yet (faas-netes does not create on PUT)
            resp = self._send("POST", secret, value)
        if resp.status_code in (401, 403):
            raise StoreError(
                f"writing secret {secret}: the gateway refused the admin credentials (HTTP {resp.status_code}); "
                "mount the basic-auth secret (basic-auth-user, basic-auth-password) into iam-rotate"
            )
        if resp.status_code >= 300:
            raise StoreError(f"writing secret {secret}: HTTP {resp.status_code} {resp.text[:200].strip()}")


class MountedKeysetStore:
    """Reads the keysets from this pod's mounts (maybe late), writes them through a SecretWriter."""

    def __init__(
        self,
        private_path: str,
        public_path: str,
        writer: SecretWriter,
        *,
        private_secret: str = "iam-signing-keys",
        public_secret: str = "iam-public-keys",
    ) -> None:
        self.private_path = private_path
        self.public_path = public_path
        self.writer = writer
        self.private_secret = private_secret
        self.public_secret = public_secret
        self.name = f"secrets {private_secret} and {public_secret}"

    def read(self) -> Keyset:
        """The private keyset as mounted here (up to the kubelet sync delay behind what was written)."""
        try:
            with open(self.private_path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise StoreError(
                f"cannot read the mounted {self.private_secret} at {self.private_path} ({e.strerror}); create it "
                f"with `openfaas-iam keys init` and list it in iam-rotate's secrets"
            ) from None
        return parse_keyset(raw, f"mounted {self.private_secret}")

    def public_view(self) -> PublicKeys | None:
        """The public keyset as mounted here: what verifiers see (None when it is not mounted yet)."""
        try:
            with open(self.public_path, "rb") as f:
                return parse_public_keys(f.read(), f"mounted {self.public_secret}")
        except OSError:
            return None

    def write(self, keyset: Keyset) -> None:
        """Public first, then private: a key is published before anyone can sign with it."""
        self.writer.write(self.public_secret, keyset.public_json())
        self.writer.write(self.private_secret, keyset.to_json())
