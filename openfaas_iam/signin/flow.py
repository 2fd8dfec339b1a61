"""Browser sign-in for people: authorization code with PKCE, `state` and `nonce`, then the exchange.

CE has no dashboard sign-in, so iam-token serves a small page of its own. The flow state
(PKCE verifier, state, nonce) lives in a short-lived sealed cookie bound to this browser,
which is what makes the callback CSRF-safe, and is used once (the shared store remembers
it); the session is another sealed cookie holding the OpenFaaS token, never readable by
the browser or anyone watching it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from openfaas_iam import json_codec
from openfaas_iam.errors import DiscoveryError, OAuthError, TokenError
from openfaas_iam.model.objects import IamConfig, JwtIssuer
from openfaas_iam.oidc.discovery import IssuerDiscovery
from openfaas_iam.oidc.jwks_cache import JwksCache
from openfaas_iam.oidc.outbound import summarise
from openfaas_iam.oidc.verify import verify_subject_token
from openfaas_iam.service.exchange import TT, ExchangeRequest, TokenExchange
from openfaas_iam.signin.session import SealedCookie
from openfaas_iam.stores.cache import Cache, SharedStore, StoreUnavailable

FLOW_COOKIE = "iam_signin"
SESSION_COOKIE = "iam_session"
FLOW_TTL = 600
SESSION_TTL = 12 * 3600
log = logging.getLogger("openfaas_iam.signin.flow")


class SignInError(Exception):
    """A sign-in that cannot go on; `title` and `message` are shown to the person, `status` is HTTP's.

    `stage` names the step that failed (`flow`, `idp`, `replay`, `redeem`, `verify`, `exchange`,
    `store`, `discovery`, `config`) for the operator's log line: people report "it did not
    work", and the log has to say where without anyone replaying the sign-in.
    """

    def __init__(
        self, title: str, message: str, status: int = 400, detail: str | None = None, stage: str = "signin"
    ) -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.status = status
        self.detail = detail
        self.stage = stage


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def failure_line(stage: str, reason: str, client: str = "") -> str:
    """The one log line of a failed sign-in: JSON with the stage and the reason, never a secret.

    Only what a SignInError carries goes in (its message and detail), never the query: the
    code, state and tokens are not in those. The reason is one line (control characters
    folded: an IdP's `error_description` cannot forge a second log entry) and capped.
    """
    text = _CONTROL.sub(" ", reason).strip()
    return json_codec.dumps({"event": "signin_failed", "stage": stage, "reason": text[:300], "client": client}).decode()


def log_failure(e: SignInError, client: str = "") -> None:
    """Log a failed sign-in once, at warning level (the template writes it to the function's log)."""
    reason = e.message + (f" ({e.detail})" if e.detail else "")
    log.warning(failure_line(e.stage, reason, client))


def host_of(url: str) -> str:
    """`scheme://host[:port]` -> `host:port` in lower case, the default port written out."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


def request_host(headers: Mapping[str, str], scheme: str) -> str:
    """The host the browser asked for, as `host:port`.

    The gateway (and an Ingress) pass it as X-Forwarded-Host (the first entry is the
    outermost proxy's); without one, Host. This is a guard for people and for the
    shared origin's own navigations, not the isolation itself: a script on the gateway's
    origin may send any X-Forwarded-Host in a fetch, but the browser never gives that fetch
    the sign-in origin's cookies (another host), so it can only ever see the landing page.
    """
    raw = (headers.get("X-Forwarded-Host") or "").split(",")[0].strip() or (headers.get("Host") or "").strip()
    try:
        return host_of(f"{scheme}://{raw}") if raw else ""
    except ValueError:  # a port that is not a number or out of range, an unclosed '[': no host of ours
        return ""


@dataclass(frozen=True)
class SsoSettings:
    issuer: str  # the JwtIssuer (name or iss) people sign in with
    client_id: str
    client_secret: str
    redirect_url: str
    scopes: str = "openid email profile groups"
    # The page's own origin (https://iam.example.com): the only place it shows or hands out a token.
    origin: str = ""
    # What people know their IdP as ("Example Corp SSO"); empty: the issuer's host name. The
    # JwtIssuer's `metadata.name` is an operator's identifier, not something people recognise.
    display_name: str = ""

    @property
    def base_path(self) -> str:
        """The page lives at the root of its own origin: links and cookies are relative to `/`."""
        return ""

    @property
    def secure_cookies(self) -> bool:
        """Secure everywhere but plain-http loopback, where browsers would drop them."""
        return urlsplit(self.origin or self.redirect_url).scheme == "https"

    def cookie_name(self, name: str) -> str:
        """`__Host-` on https: the browser then refuses the cookie unless it is Secure, host-only and
        Path=/, so a sibling subdomain (or the gateway's origin under the same parent) cannot plant it."""
        return f"__Host-{name}" if self.secure_cookies else name

    def serves(self, headers: Mapping[str, str]) -> bool:
        """Whether this request reached the dedicated sign-in origin (and not the shared gateway)."""
        if not self.origin:
            return False
        scheme = urlsplit(self.origin).scheme
        return request_host(headers, scheme) == host_of(self.origin)


def cookie(name: str, value: str, sso: SsoSettings, max_age: int, same_site: str = "Strict") -> str:
    """A host-only cookie for the sign-in origin.

    The session is `SameSite=Strict`: no request another site starts carries it. The flow
    cookie must be `Lax`, because the IdP's redirect back to /callback is a cross-site
    navigation and has to bring it (it holds only the PKCE verifier, state and nonce, lives
    ten minutes, and is deleted at the callback).
    """
    parts = [f"{sso.cookie_name(name)}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", f"SameSite={same_site}"]
    if sso.secure_cookies:
        parts.append("Secure")
    return "; ".join(parts)


def parse_cookies(header: str | None) -> dict[str, str]:
    """Cookies by name; a name sent twice (a planted copy with another Path) counts as absent."""
    out: dict[str, str] = {}
    seen_twice: set[str] = set()
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name in out:
            seen_twice.add(name)
        out[name] = value
    for name in seen_twice:
        del out[name]
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
        store: Cache,
    ) -> None:
        self.sso = sso
        self.config = config
        self.discovery = discovery
        self.jwks = jwks
        self.exchange = exchange
        self.leeway = leeway
        self.flow = SealedCookie(session_secret, "sign-in flow")
        self.session = SealedCookie(session_secret, "session")
        self.records = SealedCookie(session_secret, "session record")
        # Sessions, revocations and used flows: Redis only when configured (no per-replica copy
        # that outlives a sign-out or revives a revoked session during a blip); see SharedStore.
        self.store = SharedStore(store)
        self._meta: tuple[float, dict[str, Any]] | None = None

    def issuer(self, config: IamConfig) -> JwtIssuer:
        for i in config.issuers:
            if self.sso.issuer in (i.name, i.iss):
                return i
        raise SignInError(
            "Sign-in is not configured",
            f"No JwtIssuer named {self.sso.issuer!r} is configured for people.",
            404,
            stage="config",
        )

    def idp_name(self, issuer: JwtIssuer) -> str:
        """The IdP's name as people see it: `sso_display_name`, else the issuer URL's host."""
        return self.sso.display_name or urlsplit(issuer.iss).hostname or issuer.name

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
                    stage="discovery",
                ) from None
        return self._meta[1]

    def start(self) -> tuple[str, str]:
        """(URL to send the browser to, the flow cookie to set)."""
        issuer = self.issuer(self.config())
        meta = self._metadata(issuer)
        endpoint = meta.get("authorization_endpoint")
        if not isinstance(endpoint, str):
            raise SignInError(
                "Sign-in is not available",
                "The identity provider publishes no authorization endpoint.",
                503,
                stage="discovery",
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
        return endpoint + sep + urlencode(params, quote_via=quote), cookie(
            FLOW_COOKIE, sealed, self.sso, FLOW_TTL, "Lax"
        )

    def finish(self, query: dict[str, str], cookies: dict[str, str], client: str) -> tuple[str, dict[str, Any]]:
        """Handle the callback: returns (session cookie value, the token response)."""
        flow = self.flow.open(cookies.get(self.sso.cookie_name(FLOW_COOKIE)))
        # Compared as bytes: compare_digest raises TypeError on a non-ASCII str (a 500, not a refusal).
        if flow is None or not secrets.compare_digest(query.get("state", "").encode(), flow["s"].encode()):
            # Without this browser's own flow, nothing from the query is shown: an `error_description`
            # in a link anyone can craft would be attacker-chosen text on the sign-in origin.
            if flow is None:
                raise SignInError(
                    "Your sign-in expired",
                    "The sign-in took too long, was already used, or was started in another browser. "
                    "Please sign in again.",
                    400,
                    stage="flow",
                )
            raise SignInError(
                "This sign-in link is not yours",
                "The response does not belong to this sign-in. Please sign in again.",
                400,
                stage="flow",
            )
        if "error" in query:
            desc = query.get("error_description") or query["error"]
            raise SignInError("Your identity provider refused the sign-in", desc, 400, stage="idp")
        # Single-use on the server, not only by the browser deleting the cookie: a copied flow
        # cookie replayed at /callback is refused before any call to the IdP (one atomic add).
        try:
            first = self.store.add(_flow_key(flow["s"]), b"1", FLOW_TTL)
        except StoreUnavailable:
            raise _store_down("Sign-in is not available right now") from None
        if not first:
            raise SignInError(
                "This sign-in was already used",
                "Each sign-in link works once. Please sign in again.",
                400,
                stage="replay",
            )
        code = query.get("code")
        if not code:
            raise SignInError("Sign-in failed", "The identity provider sent no authorization code.", 400, stage="idp")
        config = self.config()
        issuer = self.issuer(config)
        meta = self._metadata(issuer)
        id_token = self._redeem(meta, code, flow["v"])
        try:
            verified = verify_subject_token(id_token, config, self.jwks, self.leeway)
        except TokenError as e:
            raise SignInError("We could not verify your sign-in", str(e), 400, stage="verify") from None
        if self.sso.client_id not in (
            [verified.claims["aud"]] if isinstance(verified.claims["aud"], str) else verified.claims["aud"]
        ):
            raise SignInError(
                "We could not verify your sign-in",
                "The id_token was not issued to this application.",
                400,
                stage="verify",
            )
        if not secrets.compare_digest(str(verified.claims.get("nonce", "")).encode(), flow["n"].encode()):
            raise SignInError(
                "We could not verify your sign-in",
                "The id_token's nonce does not match this sign-in.",
                400,
                stage="verify",
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
                    stage="exchange",
                ) from None
            raise SignInError("Sign-in failed", e.description, e.status, stage="exchange") from None
        return self.open_session(result["access_token"], int(result["expires_in"])), result

    def open_session(self, token: str, expires_in: int) -> str:
        """Keep the token server-side; return the session cookie's value.

        The token (its size grows with the groups claim) is sealed under a key Redis never
        sees; the cookie holds only the session id and its CSRF value (~150 bytes).
        """
        ttl = max(1, min(SESSION_TTL, expires_in))
        sid = secrets.token_urlsafe(18)
        try:
            self.store.set(_record_key(sid), self.records.seal({"i": sid, "t": token}, ttl).encode(), ttl)
        except StoreUnavailable:
            raise _store_down("Sign-in is not available right now") from None
        return self.session.seal({"i": sid, "c": secrets.token_urlsafe(16)}, ttl)

    def _redeem(self, meta: dict[str, Any], code: str, verifier: str) -> str:
        endpoint = meta.get("token_endpoint")
        if not isinstance(endpoint, str):
            raise SignInError(
                "Sign-in is not available", "The identity provider publishes no token endpoint.", 503, stage="discovery"
            )
        fetcher = self.discovery.fetcher
        # Through the bounded fetcher: a total deadline, one of its per-origin slots and its size
        # cap, so a slow token endpoint cannot hold the page's threads (requests' timeout is per read).
        try:
            status, body = fetcher.post_form(
                endpoint,
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.sso.redirect_url,
                    "code_verifier": verifier,
                },
                basic=(quote(self.sso.client_id, safe=""), quote(self.sso.client_secret, safe="")),
            )
        except DiscoveryError as e:
            raise SignInError(
                "The identity provider is unreachable",
                "We could not reach your organisation's sign-in service. Try again in a minute.",
                503,
                summarise(str(e)),
                stage="redeem",
            ) from None
        if status != 200:
            desc = body.get("error_description") or body.get("error") or f"HTTP {status}"
            raise SignInError("Your identity provider refused the sign-in", str(desc), 400, stage="redeem")
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise SignInError(
                "Sign-in failed",
                "The identity provider returned no id_token (is the openid scope allowed?).",
                400,
                stage="redeem",
            )
        return id_token

    def current(self, cookies: dict[str, str]) -> dict[str, Any] | None:
        """{"i": session id, "c": CSRF value, "t": token}, or None: no cookie, forged, expired or signed out."""
        cookie_data = self.session.open(cookies.get(self.sso.cookie_name(SESSION_COOKIE)))
        if cookie_data is None or not isinstance(cookie_data.get("i"), str):
            return None
        sid = cookie_data["i"]
        try:
            if self.store.get(_revoked_key(sid)) is not None:
                return None
            raw = self.store.get(_record_key(sid))
        except StoreUnavailable:
            return None  # no answer from the shared store is no session: the person signs in again
        record = self.records.open(raw.decode("ascii", "replace")) if raw is not None else None
        if record is None or record.get("i") != sid:
            return None
        return {"i": sid, "c": cookie_data.get("c", ""), "t": record["t"]}

    def revoke(self, session: dict[str, Any]) -> None:
        """Sign-out: the session ends for every copy of its cookie, on every replica.

        Both writes reach the shared store or this raises: a sign-out never claims success
        while a copied cookie still works somewhere.
        """
        sid = session["i"]
        try:
            self.store.set(_revoked_key(sid), b"1", SESSION_TTL)
            self.store.delete(_record_key(sid))
        except StoreUnavailable:
            raise _store_down(
                "Sign-out failed",
                "Your session could not be ended: the session store is unreachable. It is still active; "
                "try signing out again in a minute.",
            ) from None


def _store_down(title: str, message: str = "The session store is unreachable. Try again in a minute.") -> SignInError:
    """A 503 page for an unreachable shared session store.

    The page names no Redis address: RedisCache has already logged what to fix for the operator.
    """
    return SignInError(title, message, 503, "session store unavailable", stage="store")


def _flow_key(state: str) -> str:
    return f"signin-flow:{state}"


def _record_key(sid: str) -> str:
    return f"signin-session:{sid}"


def _revoked_key(sid: str) -> str:
    return f"signin-revoked:{sid}"
