"""RFC 8725 verification of federated (subject) tokens and of the bundle's own tokens.

The order matters: size and structure first (cheap, before any parsing of attacker
input beyond a bound), then the algorithm allowlist, then the issuer must be one we
trust, then the key comes from that issuer's own JWKS by `kid` (never from `jku`,
`x5u` or an embedded `jwk`), then the signature over the exact signing input, then
the claims. Each token segment is decoded and parsed once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from openfaas_iam.errors import IssuerUnavailable, KeyUnavailable, TokenError
from openfaas_iam.jose.jws import JwsError, decode_header, decode_json, verify_signature
from openfaas_iam.model.objects import IamConfig, JwtIssuer
from openfaas_iam.oidc.discovery import ALLOWED_ALGS
from openfaas_iam.oidc.jwks_cache import JwksCache

MAX_TOKEN_BYTES = 16 * 1024
_ALGS_TEXT = ", ".join(sorted(ALLOWED_ALGS))


@dataclass(frozen=True)
class Verified:
    claims: dict[str, Any]
    header: dict[str, Any]
    issuer: JwtIssuer


class Parsed:
    """A split compact JWS (a plain slotted class: this is built for every token verified)."""

    __slots__ = ("header", "payload", "signature", "signing_input")

    def __init__(self, header: dict[str, Any], payload: dict[str, Any], signing_input: bytes, signature: str) -> None:
        self.header = header
        self.payload = payload
        self.signing_input = signing_input
        self.signature = signature


def _segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = decode_header(segment) if what == "header" else decode_json(segment)
    except JwsError:
        raise TokenError(f"the token's {what} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise TokenError(f"the token's {what} is not a JSON object")
    return value


def parse_token(token: str) -> Parsed:
    """Header and (unverified) payload of a compact JWS, with the structural checks."""
    if not isinstance(token, str) or not token:
        raise TokenError("no token given")
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError(f"the token is larger than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) == 5:
        raise TokenError("encrypted tokens (JWE) are not accepted; send a signed JWT")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise TokenError("the token is not a JWT (expected three dot-separated parts)")
    header = _segment(parts[0], "header")
    payload = _segment(parts[1], "payload")
    # Both segments decoded as strict base64url, so they are ASCII.
    return Parsed(header, payload, token[: len(parts[0]) + 1 + len(parts[1])].encode("ascii"), parts[2])


def _number(claims: Mapping[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise TokenError(f"the token has no {name} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TokenError(f"the token's {name} claim is not a number")
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float (10**400): a bad token, not a 500
        raise TokenError(f"the token's {name} claim is out of range") from None


def check_times(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    exp = _number(claims, "exp", True)
    if exp is not None and now > exp + leeway:
        raise TokenError("the token has expired (exp)")
    nbf = _number(claims, "nbf", False)
    if nbf is not None and now + leeway < nbf:
        raise TokenError("the token is not yet valid (nbf); check the clocks of the IdP and this server")
    iat = _number(claims, "iat", False)
    if iat is not None and iat > now + leeway:
        raise TokenError("the token is not yet valid (iat); check the clocks of the IdP and this server")


def audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if aud is None:
        raise TokenError("the token has no aud claim")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return aud
    raise TokenError("the token's aud claim is not a string or a list of strings")


def verify_subject_token(
    token: str,
    config: IamConfig,
    jwks: JwksCache,
    leeway: float,
    now: float | None = None,
    parsed: Parsed | None = None,
) -> Verified:
    """Verify a federated token; `parsed` is the caller's parse of the same token, if it has one."""
    parsed = parsed or parse_token(token)
    header, claims = parsed.header, parsed.payload
    alg = header.get("alg")
    if alg == "none" or not isinstance(alg, str):
        raise TokenError("unsigned tokens (alg none) are not accepted")
    if alg not in ALLOWED_ALGS:
        raise TokenError(f"algorithm {alg} is not accepted; use one of {_ALGS_TEXT}")
    if "crit" in header:
        raise TokenError("the token has critical header parameters this server does not understand")
    iss = claims.get("iss")
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
    except IssuerUnavailable:
        raise  # the caller answers "try again", not "your token is bad"
    except KeyUnavailable as e:
        raise TokenError(str(e)) from None
    if alg not in key.algorithms:
        raise TokenError(
            f"algorithm {alg} does not match key {kid!r} of issuer {iss} ({', '.join(sorted(key.algorithms))})"
        )
    try:
        verify_signature(alg, key.key, parsed.signing_input, parsed.signature)
    except JwsError:
        raise TokenError("the token's signature is invalid") from None
    check_times(claims, time.time() if now is None else now, leeway)
    aud = audiences(claims)
    if not any(a in issuer.aud for a in aud):
        shown = claims["aud"]
        raise TokenError(f"audience {shown!r} is not accepted; JwtIssuer/{issuer.name} accepts {list(issuer.aud)}")
    sub = claims.get("sub")
    if sub is None:
        raise TokenError("the token has no sub claim")
    if not isinstance(sub, str) or not sub:
        raise TokenError("the token's sub claim is not a non-empty string")
    return Verified(claims, header, issuer)


class OwnTokenVerifier:
    """Verifies the bundle's own tokens (ES256, `iss` = `aud` = issuer), each token once per replica.

    A verified token is cached until it expires, so iam-authz pays for the signature
    once per token, not once per request; a cached token is used only while the key
    that signed it is still trusted (a key removed from the mounts takes its tokens
    with it). The cache is bounded; when full, the oldest entry goes (expired ones are
    dropped when met). Insert and eviction are O(1) (an OrderedDict, not a scan): at
    10,000 entries a scan under the lock cost every new token 0.67 ms (issue 16).

    Bounded by bytes as well as by count: an API token carries every claim of the IdP token
    it came from (up to the 16 KiB a subject token may have), so 10,000 large tokens minted
    by one user for the purpose would hold several hundred MiB, past the function's memory
    limit. `max_bytes` counts each entry as its token plus an estimate of its parsed claims.
    """

    def __init__(
        self,
        issuer_url: str,
        public_keys: Callable[[], Mapping[str, Any]],
        leeway: float = 1.0,
        max_entries: int = 10000,
        max_bytes: int = 32 * 1024 * 1024,
    ):
        self.issuer_url = issuer_url
        self.public_keys = public_keys
        self.leeway = leeway
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._cache: OrderedDict[str, tuple[dict[str, Any], float, str, Any]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def entry_bytes(token: str) -> int:
        """What an entry holds, estimated: the token, its claims parsed (Python objects take about
        three times their JSON, which is three quarters of the token), and the entry itself."""
        return 4 * len(token) + 512

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    def _drop(self, token: str) -> None:
        """Under the lock: forget `token` and its bytes."""
        if self._cache.pop(token, None) is not None:
            self._bytes -= self.entry_bytes(token)

    def verify(self, token: str, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        hit = self._cache.get(token)
        if hit is not None:
            claims, exp, kid, key = hit
            if now > exp + self.leeway:
                with self._lock:
                    self._drop(token)
                raise TokenError("the token has expired (exp)")
            if self.public_keys().get(kid) is key:
                return claims
            with self._lock:  # its key is no longer trusted (or was replaced): verify again, and fail
                self._drop(token)
        claims, kid, key = self._verify(token, now)
        size = self.entry_bytes(token)
        if size > self.max_bytes:
            return claims  # verified, but too large to keep
        with self._lock:
            self._drop(token)
            while self._cache and (len(self._cache) >= self.max_entries or self._bytes + size > self.max_bytes):
                oldest, _ = self._cache.popitem(last=False)  # the oldest first: O(1)
                self._bytes -= self.entry_bytes(oldest)
            self._cache[token] = (claims, float(claims["exp"]), kid, key)
            self._bytes += size
        return claims

    def verify_uncached(self, token: str, now: float | None = None) -> dict[str, Any]:
        return self._verify(token, now)[0]

    def _verify(self, token: str, now: float | None) -> tuple[dict[str, Any], str, Any]:
        """(claims, kid, the key that verified it)."""
        parsed = parse_token(token)
        if parsed.header.get("alg") != "ES256":
            raise TokenError("this token was not issued by openfaas-iam (alg must be ES256)")
        kid = parsed.header.get("kid")
        if not isinstance(kid, str):
            raise TokenError(f"kid {kid!r} is not one of openfaas-iam's signing keys")
        key = self.public_keys().get(kid)
        if key is None:
            raise TokenError(f"kid {kid!r} is not one of openfaas-iam's signing keys")
        try:
            verify_signature("ES256", key, parsed.signing_input, parsed.signature)
        except JwsError:
            raise TokenError("the token's signature is invalid") from None
        claims = parsed.payload
        if claims.get("iss") != self.issuer_url:
            raise TokenError(f"the token was not issued by {self.issuer_url}")
        if self.issuer_url not in audiences(claims):
            raise TokenError(f"the token's audience is not {self.issuer_url}")
        _number(claims, "iat", True)
        check_times(claims, time.time() if now is None else now, self.leeway)
        if not isinstance(claims.get("sub"), str):
            raise TokenError("the token has no sub claim")
        return claims, kid, key
