"""A minimal in-cluster Kubernetes API client: the pod's token (re-read per call), the cluster CA.

Only what the bundle needs: JSON requests with timeouts and errors that say what to
do (RBAC, a missing Secret, an unreachable API server). A 409 is a ConflictError so
callers can re-read and retry.
"""

from __future__ import annotations

import json
import os
from typing import Any

import requests

from openfaas_iam.errors import ConflictError, StoreError

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubernetesClient:
    def __init__(
        self,
        api_url: str | None = None,
        *,
        token_path: str = f"{SA_DIR}/token",
        ca_path: str | None = f"{SA_DIR}/ca.crt",
        timeout: float = 5.0,
    ) -> None:
        if api_url is None:
            host, port = (
                os.environ.get("KUBERNETES_SERVICE_HOST"),
                os.environ.get("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            )
            if not host:
                raise StoreError("not running in Kubernetes (KUBERNETES_SERVICE_HOST is not set); use the local store")
            api_url = f"https://{host}:{port}"
        self.api_url = api_url.rstrip("/")
        self.token_path = token_path
        self.verify: str | bool = ca_path if ca_path and os.path.exists(ca_path) else True
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False

    def _token(self) -> str:
        # The kubelet rotates projected tokens: read it for every call.
        try:
            with open(self.token_path) as f:
                return f.read().strip()
        except OSError as e:
            raise StoreError(f"cannot read the service-account token at {self.token_path}: {e.strerror}") from None

    def request(self, method: str, path: str, *, body: Any = None, what: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            resp = self.session.request(
                method,
                self.api_url + path,
                data=json.dumps(body) if body is not None else None,
                headers=headers,
                timeout=self.timeout,
                verify=self.verify,
            )
        except requests.exceptions.Timeout:
            raise StoreError(f"{what}: the Kubernetes API did not answer within {self.timeout:g}s") from None
        except requests.exceptions.RequestException as e:
            raise StoreError(
                f"{what}: the Kubernetes API at {self.api_url} is unreachable ({type(e).__name__})"
            ) from None
        if resp.status_code == 409:
            raise ConflictError(f"{what}: conflict (someone else wrote first)")
        if resp.status_code >= 400:
            raise StoreError(f"{what}: {_status_message(resp)}")
        try:
            return resp.json()
        except ValueError:
            raise StoreError(f"{what}: the Kubernetes API answered with something that is not JSON") from None


def _status_message(resp: requests.Response) -> str:
    try:
        message = resp.json().get("message") or resp.reason
    except ValueError:
        message = resp.reason
    hints = {
        401: "the service-account token was refused",
        403: "forbidden: apply deploy/rbac.yaml (get/update/patch on this Secret by resourceNames)",
        404: "not found",
    }
    hint = hints.get(resp.status_code)
    return f"HTTP {resp.status_code} {message}" + (f" ({hint})" if hint and hint not in message else "")
