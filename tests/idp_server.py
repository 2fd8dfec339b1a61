"""Start, drive and stop the real OpenID Provider in tests/idp (oidc-provider on Node)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

IDP_DIR = Path(__file__).resolve().parent / "idp"


def _b64(n: int, length: int | None = None) -> str:
    raw = n.to_bytes(length or (n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def private_jwk(kind: str = "RS256", kid: str | None = None) -> dict[str, str]:
    """A private JWK made with `cryptography`, as oidc-provider takes them."""
    kid = kid or f"{kind.lower()}-{uuid.uuid4().hex[:8]}"
    if kind == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        pub = key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(pub.x, 32),
            "y": _b64(pub.y, 32),
            "d": _b64(key.private_numbers().private_value, 32),
            "kid": kid,
            "use": "sig",
            "alg": "ES256",
        }
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    n = key.private_numbers()
    return {
        "kty": "RSA",
        "n": _b64(n.public_numbers.n),
        "e": _b64(n.public_numbers.e),
        "d": _b64(n.d),
        "p": _b64(n.p),
        "q": _b64(n.q),
        "dp": _b64(n.dmp1),
        "dq": _b64(n.dmq1),
        "qi": _b64(n.iqmp),
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
    }


DEFAULT_CLIENTS: list[dict[str, Any]] = [
    {
        # Minting arbitrary claims; aud of its id_tokens is this client_id (the gateway URL,
        # as GitHub Actions, GitLab and Kubernetes tokens carry when asked for it).
        "client_id": "https://gateway.test",
        "client_secret": "mint-secret",
        "grant_types": ["urn:openfaas-iam:test:mint"],
        "response_types": [],
        "redirect_uris": [],
        "id_token_signed_response_alg": "RS256",
    },
    {
        "client_id": "openfaas",
        "client_secret": "openfaas-secret",
        "grant_types": ["authorization_code", "urn:openfaas-iam:test:mint"],
        "response_types": ["code"],
        "redirect_uris": ["http://127.0.0.1:31111/oauth/callback"],
        "id_token_signed_response_alg": "RS256",
    },
    {
        "client_id": "ci-machine",
        "client_secret": "ci-machine-secret",
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
    },
]


class OidcProvider:
    def __init__(
        self,
        port: int,
        keys: list[dict[str, str]] | None = None,
        tls: dict[str, str] | None = None,
        redirect_uris: list[str] | None = None,
    ) -> None:
        self.port = port
        self.redirect_uris = redirect_uris or []
        self.keys = keys or [private_jwk("RS256"), private_jwk("ES256")]
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="idp-"))
        self.verify: str | bool = tls["ca"] if tls else True

    @property
    def issuer(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, accounts: dict[str, Any] | None = None) -> OidcProvider:
        node = shutil.which("node")
        if node is None or not (IDP_DIR / "node_modules" / "oidc-provider").is_dir():
            pytest.skip("the test OpenID Provider needs Node.js and `npm ci` in tests/idp (make test does it)")
        cfg = {
            "port": self.port,
            "keys": self.keys,
            "clients": [
                {**c, "redirect_uris": c["redirect_uris"] + self.redirect_uris} if c["client_id"] == "openfaas" else c
                for c in DEFAULT_CLIENTS
            ],
            "tls": {"cert": self.tls["cert"], "key": self.tls["key"]} if self.tls else None,
            "accounts": accounts or {},
        }
        (self.dir / "config.json").write_text(json.dumps(cfg))
        self.proc = subprocess.Popen(
            [node, str(IDP_DIR / "server.mjs"), str(self.dir / "config.json")],
            cwd=IDP_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode()
            if line.startswith("listening"):
                return self
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError("the test OpenID Provider did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def admin(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        method = "POST" if body is not None else "GET"
        r = requests.request(method, f"{self.issuer}/__admin/{path}", json=body, verify=self.verify, timeout=10)
        r.raise_for_status()
        return r.json()

    def set_keys(self, keys: list[dict[str, str]]) -> None:
        self.keys = keys
        self.admin("keys", {"keys": keys})

    def stats(self) -> dict[str, int]:
        """Requests the provider has answered per endpoint: {"jwks": n, "discovery": n}."""
        return self.admin("stats")

    # A key rotation as an IdP operator does it (Keycloak, Okta, Entra ID all follow it): the new
    # key is published before it signs, and the old one stays published until its tokens expire.

    def stage(self, key: dict[str, str]) -> None:
        """Publish `key` in the JWKS without signing with it yet (appended: the first key signs)."""
        self.set_keys([*self.keys, key])

    def activate(self, kid: str) -> None:
        """Sign with the published key `kid` from now on (moved first; the others stay published)."""
        chosen = [k for k in self.keys if k["kid"] == kid]
        if not chosen:
            raise KeyError(f"key {kid} is not published: stage it first")
        self.set_keys([*chosen, *(k for k in self.keys if k["kid"] != kid)])

    def retire(self, kid: str) -> None:
        """Stop publishing `kid`: tokens it signed no longer verify anywhere that refetches."""
        self.set_keys([k for k in self.keys if k["kid"] != kid])

    def mint(
        self, claims: dict[str, Any], ttl: int = 600, client: str = "https://gateway.test", secret: str = "mint-secret"
    ) -> str:
        r = requests.post(
            f"{self.issuer}/token",
            data={"grant_type": "urn:openfaas-iam:test:mint", "claims": json.dumps(claims), "ttl": str(ttl)},
            # RFC 6749 §2.3.1: the client id is form-urlencoded inside Basic auth (it has a ':').
            auth=(quote(client, safe=""), quote(secret, safe="")),
            verify=self.verify,
            timeout=10,
        )
        r.raise_for_status()
        return r.json()["id_token"]


def scripted_login(
    provider: OidcProvider,
    *,
    login: str,
    client_id: str = "openfaas",
    client_secret: str = "openfaas-secret",
    redirect_uri: str = "http://127.0.0.1:31111/oauth/callback",
    scope: str = "openid email profile groups",
) -> dict[str, Any]:
    """Walk the provider's real login and consent pages as a browser would; return the token response."""
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
    s = requests.Session()
    s.verify = provider.verify
    params = {
        "client_id": client_id,
        "response_type": "code",
        "scope": scope,
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
        "nonce": nonce,
    }
    location = drive_login(
        f"{provider.issuer}/auth?{urlencode(params)}", login=login, redirect_uri=redirect_uri, session=s
    )
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert query["state"] == state
    tokens = s.post(
        f"{provider.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
        auth=(client_id, client_secret),
        timeout=10,
    )
    tokens.raise_for_status()
    return {**tokens.json(), "nonce": nonce}


def drive_login(url: str, *, login: str, redirect_uri: str, session: requests.Session | None = None) -> str:
    """Walk the provider's real login and consent pages from an authorization URL, as a person would.

    Returns the URL the provider finally redirects to (the client's callback, with the code).
    """
    import re

    s = session or requests.Session()
    r = s.get(url, allow_redirects=False, timeout=10)
    for _ in range(12):
        location = r.headers.get("Location", "")
        if location.startswith(redirect_uri):
            return location
        if r.is_redirect:
            r = s.get(requests.compat.urljoin(r.url, location), allow_redirects=False, timeout=10)
            continue
        action = re.search(r'action="([^"]+)"', r.text)
        assert action, r.text[:500]
        prompt = re.search(r'name="prompt" value="([^"]+)"', r.text).group(1)
        data = {"prompt": prompt, "login": login, "password": "any"} if prompt == "login" else {"prompt": prompt}
        r = s.post(requests.compat.urljoin(r.url, action.group(1)), data=data, allow_redirects=False, timeout=10)
    raise AssertionError("the provider never redirected back to the client")


def client_credentials(
    provider: OidcProvider, resource: str, client_id: str = "ci-machine", secret: str = "ci-machine-secret"
) -> str:
    r = requests.post(
        f"{provider.issuer}/token",
        data={"grant_type": "client_credentials", "resource": resource, "scope": "deploy"},
        auth=(client_id, secret),
        verify=provider.verify,
        timeout=10,
    )
    r.raise_for_status()
    return r.json()["access_token"]
