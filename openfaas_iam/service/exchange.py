"""RFC 8693 token exchange: a federated token in, an OpenFaaS token out.

Parsing is strict (RFC 6749 §3.2: no parameter twice, except the repeatable
`audience`/`resource`) and every failure is an OAuthError with the code RFC 8693 and
RFC 6749 give it and a description the caller can act on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from openfaas_iam.engine.policy import policy_index, safe_permissions, split_resource
from openfaas_iam.engine.roles import role_matcher
from openfaas_iam.errors import (
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    IssuerUnavailable,
    OAuthError,
    TemporarilyUnavailable,
    TokenError,
    UnsupportedGrantType,
)
from openfaas_iam.jose.keyset import Keyset
from openfaas_iam.jose.mint import api_token_claims, function_token_claims, sign
from openfaas_iam.model.objects import IamConfig
from openfaas_iam.observability.audit import AuditLog
from openfaas_iam.observability.metrics import Metrics
from openfaas_iam.oidc.jwks_cache import JwksCache
from openfaas_iam.oidc.verify import OwnTokenVerifier, parse_token, verify_subject_token
from openfaas_iam.stores.watched_file import Unavailable

log = logging.getLogger("openfaas_iam.service.exchange")

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
TT = "urn:ietf:params:oauth:token-type:"
SUBJECT_TYPES = frozenset({TT + "id_token", TT + "access_token", TT + "jwt"})
ISSUED_TYPE = TT + "id_token"
REPEATABLE = frozenset({"audience", "resource"})
KNOWN = frozenset(
    {
        "grant_type",
        "subject_token",
        "subject_token_type",
        "requested_token_type",
        "scope",
        "audience",
        "resource",
        "actor_token",
        "actor_token_type",
        "client_id",
    }
)


MAX_FIELDS = 64


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """application/x-www-form-urlencoded, strictly: UTF-8, `name=value` pairs, at most 64 of them.

    Values without '%' or '+' (every JWT) are taken as they are; others are percent-decoded.
    """
    text = body.decode("utf-8")
    if not text:
        return []
    fields = text.split("&")
    if len(fields) > MAX_FIELDS:
        raise ValueError("too many fields")
    pairs = []
    for field in fields:
        name, sep, value = field.partition("=")
        if not sep or not name:
            raise ValueError("a field without '='")
        if "%" in name or "+" in name:
            name = unquote_plus(name, errors="strict")
        if "%" in value or "+" in value:
            value = unquote_plus(value, errors="strict")
        pairs.append((name, value))
    return pairs


@dataclass(frozen=True)
class ExchangeRequest:
    subject_token: str
    subject_token_type: str
    scope: str | None
    audience: tuple[str, ...]
    requested_token_type: str | None


def parse_request(body: bytes, content_type: str | None) -> ExchangeRequest:
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime != "application/x-www-form-urlencoded":
        raise InvalidRequest("the token request must be application/x-www-form-urlencoded (RFC 6749 §4.1.3)")
    try:
        pairs = parse_form(body)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the request body is not valid form-encoded UTF-8") from None
    params: dict[str, list[str]] = {}
    for key, value in pairs:
        params.setdefault(key, []).append(value)
    for key, values in params.items():
        if len(values) > 1 and key not in REPEATABLE:
            raise InvalidRequest(f"parameter {key} was given more than once")

    def one(name: str) -> str | None:
        values = params.get(name)
        return values[0] if values and values[0] != "" else None

    grant = one("grant_type")
    if grant is None:
        raise InvalidRequest("grant_type is required")
    if grant != GRANT_TYPE:
        raise UnsupportedGrantType(f"grant_type {grant} is not supported; use {GRANT_TYPE}")
    token = one("subject_token")
    if token is None:
        raise InvalidRequest("subject_token is required")
    token_type = one("subject_token_type")
    if token_type is None:
        raise InvalidRequest("subject_token_type is required")
    if token_type not in SUBJECT_TYPES:
        accepted = ", ".join(sorted(SUBJECT_TYPES))
        raise InvalidRequest(f"subject_token_type {token_type} is not accepted; use one of {accepted}")
    if one("actor_token") is not None or one("actor_token_type") is not None:
        if one("actor_token") is None:
            raise InvalidRequest("actor_token_type was given without actor_token (RFC 8693 §2.1)")
        raise InvalidRequest("delegation with actor_token is not supported")
    requested = one("requested_token_type")
    if requested is not None and requested not in (TT + "id_token", TT + "access_token", TT + "jwt"):
        raise InvalidRequest(
            f"requested_token_type {requested} cannot be issued; this server issues JWTs ({ISSUED_TYPE})"
        )
    scope = one("scope")
    if scope is not None:
        scopes = set(scope.split())
        if not scopes <= {"function", "openid"}:
            raise InvalidScope(f"scope {scope!r} is not supported; use 'function' for a function token or no scope")
        scope = "function" if "function" in scopes else None
    audience = tuple(v for v in params.get("audience", []) + params.get("resource", []) if v)
    return ExchangeRequest(token, token_type, scope, audience, requested)


class TokenExchange:
    def __init__(
        self,
        *,
        issuer_url: str,
        config: Callable[[], IamConfig],
        keyset: Callable[[], Keyset],
        jwks: JwksCache,
        audit: AuditLog,
        leeway: float = 60.0,
        clock: Callable[[], float] = time.time,
        own_keys: Callable[[], Mapping[str, Any]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.issuer_url = issuer_url
        self.metrics = metrics
        self.config = config
        self.keyset = keyset
        self.jwks = jwks
        self.audit = audit
        self.leeway = leeway
        self.clock = clock
        self.own = OwnTokenVerifier(issuer_url, own_keys or (lambda: self.keyset().public_keys()), leeway=1.0)

    def exchange(self, req: ExchangeRequest, client: str = "") -> dict[str, Any]:
        """The token response; raises OAuthError (and audits either way); counted by issuer and outcome.

        The issuer label is a configured JwtIssuer's name ("openfaas-iam" for the bundle's own
        tokens, "unknown" otherwise), never the token's `iss`: a caller cannot add series.
        """
        seen = {"issuer": "unknown"}
        try:
            result = self._exchange(req, client, seen)
        except OAuthError as e:
            self._count(seen["issuer"], e.error)
            raise
        except Unavailable:
            self._count(seen["issuer"], "unavailable")
            raise
        self._count(seen["issuer"], "ok")
        return result

    def _count(self, issuer: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.inc("openfaas_iam_token_exchanges_total", issuer=issuer, outcome=outcome)

    def _exchange(self, req: ExchangeRequest, client: str, seen: dict[str, str]) -> dict[str, Any]:
        subject: Mapping[str, Any] = {}
        try:
            config = self.config()
            try:
                parsed = parse_token(req.subject_token)
            except TokenError as e:
                raise InvalidRequest(f"invalid subject token: {e}") from None
            iss = parsed.payload.get("iss")
            known = config.issuer(iss) if isinstance(iss, str) else None
            seen["issuer"] = "openfaas-iam" if iss == self.issuer_url else (known.name if known else "unknown")
            if parsed.payload.get("iss") == self.issuer_url:
                subject = self._verify_own(req.subject_token)
                if req.scope != "function":
                    raise InvalidRequest(
                        "an OpenFaaS token can only be exchanged for a function token (scope=function)"
                    )
                return self._function_token(config, subject, subject.get("policy") or [], req, client, own=True)
            try:
                verified = verify_subject_token(req.subject_token, config, self.jwks, self.leeway, parsed=parsed)
            except IssuerUnavailable as e:
                raise TemporarilyUnavailable(f"cannot verify the subject token now: {e}") from None
            except TokenError as e:
                raise InvalidRequest(f"invalid subject token: {e}") from None
            subject = verified.claims
            policies = role_matcher(config).policies(subject)
            if not policies:
                raise InvalidRequest(f"No policies found for subject: {subject['sub']}")
            if req.scope == "function":
                return self._function_token(config, subject, policies, req, client, own=False)
            for aud in req.audience:
                if aud != self.issuer_url:
                    raise InvalidTarget(
                        f"audience {aud} is not available: an API token's audience is {self.issuer_url}"
                    )
            claims = api_token_claims(
                subject,
                issuer_url=self.issuer_url,
                policies=policies,
                lifetime=verified.issuer.token_expiry,
                now=self.clock(),
            )
            token = sign(claims, self.keyset().current)
            self.audit.exchange(
                granted=True,
                subject=claims["sub"],
                issuer=subject["iss"],
                policies=policies,
                client=client,
                jti=claims["jti"],
            )
            return {
                "access_token": token,
                "issued_token_type": ISSUED_TYPE,
                "token_type": "Bearer",
                "expires_in": claims["exp"] - claims["iat"],
            }
        except OAuthError as e:
            self.audit.exchange(
                granted=False,
                subject=str(subject.get("sub", "")) or None,
                issuer=str(subject.get("iss", "")) or None,
                reason=f"{e.error}: {e.description}",
                client=client,
            )
            raise

    def _verify_own(self, token: str) -> dict[str, Any]:
        try:
            claims = self.own.verify(token, self.clock())
        except TokenError as e:
            raise InvalidRequest(f"invalid subject token: {e}") from None
        if "function" in claims:
            raise InvalidRequest("a function token cannot be exchanged; exchange an API token or an IdP token")
        return claims

    def _function_token(
        self,
        config: IamConfig,
        subject: Mapping[str, Any],
        policies: list[str],
        req: ExchangeRequest,
        client: str,
        *,
        own: bool,
    ) -> dict[str, Any]:
        index = policy_index(config)
        # What a function token carries is enforced at once by every verifier: report-only
        # Policies must neither grant nor narrow it (they are only decided in the proxy's shadow).
        policies = index.enforced(policies)
        allow, deny = index.invoke_resources(policies, subject)
        if not allow:
            raise InvalidRequest(
                f"subject {subject['sub']} may not invoke any function (no Function:Invoke permission)"
            )
        for aud in req.audience:
            try:
                _, fn = split_resource(aud)
            except ValueError:
                raise InvalidTarget(f"audience {aud!r} is not a function; use <namespace>:<function>") from None
            if any(c in aud for c in "*?"):
                # Decided as a literal name, but every verifier reads `*`/`?` in a permission as a glob:
                # `staging:bil*` would pass a Deny on staging:billing here and cover it at the watchdog.
                raise InvalidTarget(
                    f"audience {aud!r} has a wildcard; a function token names each function: <namespace>:<function>"
                )
            if fn == "*" or not index.decide(policies, "Function:Invoke", aud, subject).allowed:
                raise InvalidTarget(f"audience {aud} is outside the subject's Function:Invoke permissions")
        # The token must be safe for a verifier that reads only `permissions` and `audience` (the real
        # of-watchdog ignores `deny`): no permission may cover a function a Deny forbids. With an
        # audience the permissions are exactly the audience, each decided above with its Denies; without
        # one, a pattern that overlaps a Deny is left out (narrowed), and if nothing is left the request
        # is refused with the way out.
        if req.audience:
            permissions = list(dict.fromkeys(req.audience))
        else:
            permissions = safe_permissions(allow, deny)
            if not permissions:
                raise InvalidTarget(
                    f"subject {subject['sub']} may invoke {', '.join(allow)} except {', '.join(deny)}; a function "
                    "token cannot carry such exceptions safely, so ask for the functions you need: "
                    "audience=<namespace>:<function> (repeatable)"
                )
        sub = subject["sub"] if own else f"fed:{subject['sub']}"
        fed_iss = subject.get("fed:iss") if own else subject["iss"]
        issuer = config.issuer(str(fed_iss)) if fed_iss else None
        lifetime = issuer.token_expiry if issuer else 1800.0
        claims = function_token_claims(
            issuer_url=self.issuer_url,
            sub=sub,
            fed_iss=str(fed_iss),
            permissions=permissions,
            deny=deny,
            audience=list(req.audience),
            lifetime=lifetime,
            not_after=float(subject["exp"]),
            now=self.clock(),
        )
        token = sign(claims, self.keyset().current)
        self.audit.exchange(
            granted=True,
            subject=sub,
            issuer=str(fed_iss),
            policies=policies,
            client=client,
            jti=claims["jti"],
            scope="function",
        )
        return {
            "access_token": token,
            "issued_token_type": ISSUED_TYPE,
            "token_type": "Bearer",
            "expires_in": max(0, claims["exp"] - claims["iat"]),
            "scope": "function",
        }
