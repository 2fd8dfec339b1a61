"""Browser sign-in for people: authorization code with PKCE, `state` and `nonce`, then the exchange.

CE has no dashboard sign-in, so iam-token serves a small page of its own. The flow state
(PKCE verifier, state, nonce) lives in a short-lived sealed cookie bound to this browser,
which is what makes the callback CSRF-safe; the session is another sealed cookie holding
the OpenFaaS token, never readable by the browser or anyone watching it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests

from .discovery import IssuerDiscovery
from .errors import DiscoveryError, OAuthError, TokenError
from .exchange import TT, ExchangeRequest, TokenExchange
from .jwks_cache import JwksCache
from .objects import IamConfig, JwtIssuer
from .session import SealedCookie
from .verify import verify_subject_token

FLOW_COOKIE = "iam_signin"
SESSION_COOKIE = "iam_session"
FLOW_TTL = 600


class SignInError(Exception):
    """A sign-in that cannot go on; `title` and `message` are shown to the person, `status` is HTTP's."""

    def __init__(self, title: str, message: str, status: int = 400, detail: str | None = None) -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class SsoSettings:
    issuer: str  # the JwtIssuer (name or iss) people sign in with
    client_id: str
    client_secret: str
    redirect_url: str
    scopes: str = "openid email profile groups"

    @property
    def base_path(self) -> str:
        """The path the browser sees for iam-token (cookies are scoped to it)."""
        return urlsplit(self.redirect_url).path.rsplit("/callback", 1)[0] or "/"

    @property
    def secure_cookies(self) -> bool:
        """Secure everywhere but plain-http loopback, where browsers would drop them."""
        return urlsplit(self.redirect_url).scheme == "https"


def cookie(name: str, value: str, sso: SsoSettings, max_age: int) -> str:
    parts = [f"{name}={value}", f"Path={sso.base_path}", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if sso.secure_cookies:
        parts.append("Secure")
    return "; ".join(parts)


def parse_cookies(header: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name not in out:
            out[name] = value
    return out


class SignIn:
    def __init__(
        self,
        *,
        sso: SsoSettings,
        config: Any,
        discovery: IssuerDiscovery,
        jwks: JwksCache,
        exchange: TokenExchange,
        leeway: float,
        session_secret: bytes,
    ) -> None:
        self.sso = sso
        self.config = config
        self.discovery = discovery
        self.jwks = jwks
        self.exchange = exchange
        self.leeway = leeway
        self.flow = SealedCookie(session_secret, "sign-in flow")
        self.session = SealedCookie(session_secret, "session")
        self._meta: tuple[float, dict[str, Any]] | None = None

    def issuer(self, config: IamConfig) -> JwtIssuer:
        for i in config.issuers:
            if self.sso.issuer in (i.name, i.iss):
                return i
        raise SignInError(
            "Sign-in is not configured", f"No JwtIssuer named {self.sso.issuer!r} is configured for people.", 404
        )

    def _metadata(self, issuer: JwtIssuer) -> dict[str, Any]:
        now = time.monotonic()
        if self._meta is None or now > self._meta[0]:
            try:
                self._meta = (now + 300, self.discovery.metadata(issuer))
            except DiscoveryError as e:
                raise SignInError(
                    "The identity provider is unreachable",
                    "We could not reach your organisation's sign-in service. Try again in a minute; if it keeps "
                    "failing, tell your platform team.",
                    503,
                    str(e),
                ) from None
        return self._meta[1]

    def start(self) -> tuple[str, str]:
        """(URL to send the browser to, the flow cookie to set)."""
        issuer = self.issuer(self.config())
        meta = self._metadata(issuer)
        endpoint = meta.get("authorization_endpoint")
        if not isinstance(endpoint, str):
            raise SignInError(
                "Sign-in is not available", "The identity provider publishes no authorization endpoint.", 503
            )
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        params = {
            "client_id": self.sso.client_id,
            "response_type": "code",
            "scope": self.sso.scopes,
            "redirect_uri": self.sso.redirect_url,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
            "nonce": nonce,
        }
        sealed = self.flow.seal({"v": verifier, "s": state, "n": nonce}, FLOW_TTL)
        sep = "&" if "?" in endpoint else "?"
        return endpoint + sep + urlencode(params, quote_via=quote), cookie(FLOW_COOKIE, sealed, self.sso, FLOW_TTL)

    def finish(self, query: dict[str, str], cookies: dict[str, str], client: str) -> tuple[str, dict[str, Any]]:
        """Handle the callback: returns (session cookie value, the token response)."""
        if "error" in query:
            desc = query.get("error_description") or query["error"]
            raise SignInError("Your identity provider refused the sign-in", desc, 400)
        flow = self.flow.open(cookies.get(FLOW_COOKIE))
        if flow is None:
            raise SignInError(
                "Your sign-in expired",
                "The sign-in took too long or was started in another browser. Please sign in again.",
                400,
            )
        if not secrets.compare_digest(query.get("state", ""), flow["s"]):
            raise SignInError(
                "This sign-in link is not yours",
                "The response does not belong to this sign-in. Please sign in again.",
                400,
            )
        code = query.get("code")
        if not code:
            raise SignInError("Sign-in failed", "The identity provider sent no authorization code.", 400)
        config = self.config()
        issuer = self.issuer(config)
        meta = self._metadata(issuer)
        id_token = self._redeem(meta, code, flow["v"])
        try:
            verified = verify_subject_token(id_token, config, self.jwks, self.leeway)
        except TokenError as e:
            raise SignInError("We could not verify your sign-in", str(e), 400) from None
        if self.sso.client_id not in (
            [verified.claims["aud"]] if isinstance(verified.claims["aud"], str) else verified.claims["aud"]
        ):
            raise SignInError(
                "We could not verify your sign-in", "The id_token was not issued to this application.", 400
            )
        if not secrets.compare_digest(str(verified.claims.get("nonce", "")), flow["n"]):
            raise SignInError(
                "We could not verify your sign-in", "The id_token's nonce does not match this sign-in.", 400
            )
        try:
            result = self.exchange.exchange(ExchangeRequest(id_token, TT + "id_token", None, (), None), client=client)
        except OAuthError as e:
            if e.description.startswith("No policies found for subject"):
                raise SignInError(
                    "You have no access yet",
                    "You signed in, but no Role gives you any policy. Ask your platform team to add a Role for "
                    f"this subject: {verified.claims['sub']}",
                    403,
                ) from None
            raise SignInError("Sign-in failed", e.description, e.status) from None
        ttl = max(1, int(result["expires_in"]))
        return self.session.seal({"t": result["access_token"], "c": secrets.token_urlsafe(16)}, ttl), result

    def _redeem(self, meta: dict[str, Any], code: str, verifier: str) -> str:
        endpoint = meta.get("token_endpoint")
        if not isinstance(endpoint, str):
            raise SignInError("Sign-in is not available", "The identity provider publishes no token endpoint.", 503)
        self.discovery.fetcher.check_url(endpoint)
        try:
            resp = self.discovery.fetcher.session.post(
                endpoint,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.sso.redirect_url,
                    "code_verifier": verifier,
                },
                auth=(quote(self.sso.client_id, safe=""), quote(self.sso.client_secret, safe="")),
                timeout=self.discovery.fetcher.timeout,
                verify=self.discovery.fetcher.verify,
                allow_redirects=False,
            )
        except requests.RequestException as e:
            raise SignInError(
                "The identity provider is unreachable",
                "We could not reach your organisation's sign-in service. Try again in a minute.",
                503,
                type(e).__name__,
            ) from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200:
            desc = body.get("error_description") or body.get("error") or f"HTTP {resp.status_code}"
            raise SignInError("Your identity provider refused the sign-in", str(desc), 400)
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise SignInError(
                "Sign-in failed", "The identity provider returned no id_token (is the openid scope allowed?).", 400
            )
        return id_token

    def current(self, cookies: dict[str, str]) -> dict[str, Any] | None:
        return self.session.open(cookies.get(SESSION_COOKIE))
