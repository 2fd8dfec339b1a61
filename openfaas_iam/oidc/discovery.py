"""OIDC Discovery / RFC 8414 for a configured JwtIssuer, and JWKS parsing (RFC 7517).

Only issuers named in the configuration are ever fetched. Metadata whose `issuer`
differs from `spec.iss` is refused (RFC 8414 §3.3): it would let one IdP speak for
another. With `issInternal`, discovery and keys are fetched through that origin while
tokens still carry `spec.iss`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
from jwt.exceptions import InvalidKeyError, PyJWKError

from openfaas_iam.errors import DiscoveryError
from openfaas_iam.jose.jws import key_fits
from openfaas_iam.model.objects import JwtIssuer
from openfaas_iam.oidc.outbound import Fetcher

log = logging.getLogger("openfaas_iam.oidc.discovery")

# RFC 8725 §3.1: an explicit allowlist; no "none", no HMAC (a public key is no secret).
ALLOWED_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
_KTY_ALGS = {
    "RSA": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
    "EC": {"ES256", "ES384", "ES512"},
    "OKP": {"EdDSA"},
}
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)
K8S_HOSTS = ("kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "kubernetes.default")


@dataclass(frozen=True)
class ParsedKey:
    kid: str | None
    algorithms: frozenset[str]
    key: Any  # a cryptography public key


@dataclass
class IssuerKeys:
    """One issuer's keys as fetched at one moment; replaced whole on every refresh."""

    iss: str
    jwks: list[dict[str, Any]]
    fetched_at: float
    fresh_until: float
    by_kid: dict[str, ParsedKey] = field(default_factory=dict)
    unnamed: list[ParsedKey] = field(default_factory=list)
    skipped: int = 0

    @classmethod
    def build(cls, iss: str, jwks: list[dict[str, Any]], fetched_at: float, fresh_until: float) -> IssuerKeys:
        entry = cls(iss, [], fetched_at, fresh_until)
        for raw in jwks:
            parsed = parse_jwk(raw)
            if parsed is None:
                entry.skipped += 1
                continue
            entry.jwks.append(raw)
            if parsed.kid is None:
                entry.unnamed.append(parsed)
            else:
                entry.by_kid.setdefault(parsed.kid, parsed)
        return entry

    def find(self, kid: str | None) -> ParsedKey | None:
        if kid is not None:
            return self.by_kid.get(kid)
        return self.unnamed[0] if len(self.unnamed) == 1 else None

    @property
    def kids(self) -> list[str]:
        return sorted(self.by_kid)


def parse_jwk(raw: Any) -> ParsedKey | None:
    """A verification key, or None for anything we must not or cannot use (skipped, not fatal)."""
    if not isinstance(raw, dict):
        return None
    kty = raw.get("kty")
    if kty not in _KTY_ALGS:
        return None  # includes "oct": a symmetric key never verifies a federated token
    if raw.get("use") not in (None, "sig"):
        return None
    if any(k in raw for k in ("d", "p", "q", "k")):
        return None  # a private key published by mistake: refuse to use it
    kid = raw.get("kid")
    if kid is not None and not isinstance(kid, str):
        return None
    alg = raw.get("alg")
    if alg is not None:
        if alg not in ALLOWED_ALGS or alg not in _KTY_ALGS[kty]:
            return None
        algorithms = frozenset({alg})
    else:
        algorithms = frozenset(_KTY_ALGS[kty] & ALLOWED_ALGS)
        if kty == "EC":
            crv = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}.get(raw.get("crv", ""))
            if crv is None:
                return None
            algorithms = frozenset({crv})
    try:
        key = jwt.PyJWK(raw, algorithm=next(iter(sorted(algorithms)))).key
    except (PyJWKError, InvalidKeyError, ValueError, TypeError, KeyError):
        return None
    if not all(key_fits(a, key) for a in algorithms):
        return None
    return ParsedKey(kid, algorithms, key)


def max_age(headers: dict[str, str]) -> float | None:
    cc = headers.get("cache-control", "")
    if "no-store" in cc.lower() or "no-cache" in cc.lower():
        return 0.0
    m = _MAX_AGE.search(cc)
    return float(m.group(1)) if m else None


def _through(url: str, base: str) -> str:
    """`url` with the scheme and host of `base` (issInternal), path kept."""
    u, b = urlsplit(url), urlsplit(base)
    return urlunsplit((b.scheme, b.netloc, u.path, u.query, ""))


@dataclass(frozen=True)
class Discovered:
    jwks: list[Any]
    max_age: float | None
    jwks_uri: str


class IssuerDiscovery:
    """Fetch an issuer's metadata and keys, with the pod's own token for the Kubernetes API."""

    def __init__(
        self, fetcher: Fetcher, service_account_dir: str = "/var/run/secrets/kubernetes.io/serviceaccount"
    ) -> None:
        self.fetcher = fetcher
        self.service_account_dir = service_account_dir
        api_host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        self.k8s_hosts = {*K8S_HOSTS, *([api_host] if api_host else [])}

    def _bearer(self, url: str) -> str | None:
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:  # an unclosed '[': the fetch refuses the URL itself
            return None
        if host not in self.k8s_hosts:
            return None
        try:
            # The kubelet rotates this token: read it for every call.
            with open(os.path.join(self.service_account_dir, "token")) as f:
                return f.read().strip()
        except OSError:
            return None

    def metadata(self, issuer: JwtIssuer) -> dict[str, Any]:
        """The issuer's discovery document, refused unless its `issuer` is exactly `spec.iss`."""
        base = issuer.fetch_base.rstrip("/")
        url = f"{base}/.well-known/openid-configuration"
        meta = self.fetcher.get_json(url, bearer=self._bearer(url)).body
        if meta.get("issuer") != issuer.iss:
            raise DiscoveryError(
                f"discovery at {url} names issuer {meta.get('issuer')!r}, not {issuer.iss!r} "
                f"(RFC 8414 §3.3); check JwtIssuer/{issuer.name} spec.iss"
            )
        return meta

    def fetch(self, issuer: JwtIssuer) -> Discovered:
        url = f"{issuer.fetch_base.rstrip('/')}/.well-known/openid-configuration"
        meta = self.metadata(issuer)
        jwks_uri = meta.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise DiscoveryError(f"discovery at {url} has no jwks_uri")
        if issuer.iss_internal:
            jwks_uri = _through(jwks_uri, issuer.iss_internal)
        fetched = self.fetcher.get_json(jwks_uri, bearer=self._bearer(jwks_uri))
        keys = fetched.body.get("keys")
        if not isinstance(keys, list):
            raise DiscoveryError(f"{jwks_uri} is not a JWK Set (no 'keys' list)")
        return Discovered(keys, max_age(fetched.headers), jwks_uri)
