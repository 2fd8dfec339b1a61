"""RFC 8725 verification of federated (subject) tokens.

The order matters: size and structure first (cheap, before any parsing of attacker
input beyond a bound), then the algorithm allowlist, then the issuer must be one we
trust, then the key comes from that issuer's own JWKS by `kid` (never from `jku`,
`x5u` or an embedded `jwk`), then the signature, then the claims.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.exceptions import (
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAudienceError,
    InvalidIssuedAtError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWTError,
)

from .discovery import ALLOWED_ALGS
from .errors import KeyUnavailable, TokenError
from .jwks_cache import JwksCache
from .objects import IamConfig, JwtIssuer

MAX_TOKEN_BYTES = 16 * 1024


@dataclass(frozen=True)
class Verified:
    claims: dict[str, Any]
    header: dict[str, Any]
    issuer: JwtIssuer


def _b64json(segment: str, what: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenError(f"the token's {what} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise TokenError(f"the token's {what} is not a JSON object")
    return value


def split_token(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and unverified payload of a compact JWS, with the structural checks."""
    if not isinstance(token, str) or not token:
        raise TokenError("no token given")
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError(f"the token is larger than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) == 5:
        raise TokenError("encrypted tokens (JWE) are not accepted; send a signed JWT")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise TokenError("the token is not a JWT (expected three dot-separated parts)")
    header = _b64json(parts[0], "header")
    payload = _b64json(parts[1], "payload")
    return header, payload


def verify_subject_token(token: str, config: IamConfig, jwks: JwksCache, leeway: float) -> Verified:
    header, unverified = split_token(token)
    alg = header.get("alg")
    if alg == "none" or not isinstance(alg, str):
        raise TokenError("unsigned tokens (alg none) are not accepted")
    if alg not in ALLOWED_ALGS:
        raise TokenError(f"algorithm {alg} is not accepted; use one of {', '.join(sorted(ALLOWED_ALGS))}")
    if "crit" in header:
        raise TokenError("the token has critical header parameters this server does not understand")
    iss = unverified.get("iss")
    if not isinstance(iss, str) or not iss:
        raise TokenError("the token has no iss claim")
    issuer = config.issuer(iss)
    if issuer is None:
        raise TokenError(f"issuer {iss} is not trusted: no JwtIssuer has spec.iss {iss!r}")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenError("the token's kid is not a string")
    try:
        key = jwks.key(issuer, kid)
    except KeyUnavailable as e:
        raise TokenError(str(e)) from None
    if alg not in key.algorithms:
        raise TokenError(
            f"algorithm {alg} does not match key {kid!r} of issuer {iss} ({', '.join(sorted(key.algorithms))})"
        )
    try:
        claims = jwt.decode(
            token,
            key=key.key,
            algorithms=[alg],
            audience=list(issuer.aud),
            issuer=iss,
            leeway=leeway,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except ExpiredSignatureError:
        raise TokenError("the token has expired (exp)") from None
    except ImmatureSignatureError as e:
        which = "iat" if "iat" in str(e) else "nbf"
        raise TokenError(f"the token is not yet valid ({which}); check the clocks of the IdP and this server") from None
    except InvalidAudienceError:
        raise TokenError(
            f"audience {unverified.get('aud')!r} is not accepted; JwtIssuer/{issuer.name} accepts {list(issuer.aud)}"
        ) from None
    except InvalidSignatureError:
        raise TokenError("the token's signature is invalid") from None
    except MissingRequiredClaimError as e:
        raise TokenError(f"the token has no {e.claim} claim") from None
    except InvalidIssuedAtError:
        raise TokenError("the token's iat claim is not a number") from None
    except PyJWTError as e:
        raise TokenError(f"the token is invalid: {e}") from None
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise TokenError("the token's sub claim is not a non-empty string")
    return Verified(claims, header, issuer)


class OwnTokenVerifier:
    """Verifies the bundle's own tokens (ES256, `iss` = `aud` = issuer), each token once per replica.

    A verified token is cached until it expires, so iam-authz pays for the signature
    once per token, not once per request. The cache is bounded; when full, expired
    entries go first, then the oldest.
    """

    def __init__(
        self,
        issuer_url: str,
        public_keys: Callable[[], Mapping[str, Any]],
        leeway: float = 1.0,
        max_entries: int = 10000,
    ):
        self.issuer_url = issuer_url
        self.public_keys = public_keys
        self.leeway = leeway
        self.max_entries = max_entries
        self._cache: dict[str, tuple[dict[str, Any], float]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        hit = self._cache.get(token)
        if hit is not None:
            claims, exp = hit
            if now <= exp + self.leeway:
                return claims
            with self._lock:
                self._cache.pop(token, None)
            raise TokenError("the token has expired (exp)")
        claims = self._verify(token)
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._evict(now)
            self._cache[token] = (claims, float(claims["exp"]))
        return claims

    def _evict(self, now: float) -> None:
        expired = [t for t, (_, exp) in self._cache.items() if exp + self.leeway < now]
        for t in expired:
            del self._cache[t]
        while len(self._cache) >= self.max_entries:
            del self._cache[next(iter(self._cache))]

    def _verify(self, token: str) -> dict[str, Any]:
        header, _ = split_token(token)
        if header.get("alg") != "ES256":
            raise TokenError("this token was not issued by openfaas-iam (alg must be ES256)")
        kid = header.get("kid")
        key = self.public_keys().get(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError(f"kid {kid!r} is not one of openfaas-iam's signing keys")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=["ES256"],
                audience=self.issuer_url,
                issuer=self.issuer_url,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub", "iat"]},
            )
        except ExpiredSignatureError:
            raise TokenError("the token has expired (exp)") from None
        except ImmatureSignatureError:
            raise TokenError("the token is not yet valid (iat)") from None
        except InvalidAudienceError:
            raise TokenError(f"the token's audience is not {self.issuer_url}") from None
        except jwt.InvalidIssuerError:
            raise TokenError(f"the token was not issued by {self.issuer_url}") from None
        except InvalidSignatureError:
            raise TokenError("the token's signature is invalid") from None
        except PyJWTError as e:
            raise TokenError(f"the token is invalid: {e}") from None
        return claims
