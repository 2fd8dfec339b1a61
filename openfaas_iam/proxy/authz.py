"""Who is calling, and may they? Shared by the decision API and the authorizing proxy."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from openfaas_iam.engine.policy import Decision, Matched, policy_index
from openfaas_iam.errors import TokenError, Unauthenticated
from openfaas_iam.jose.expiry import expired_message, token_exp
from openfaas_iam.model.objects import IamConfig
from openfaas_iam.model.protected import Protection
from openfaas_iam.observability.audit import rfc3339_nano
from openfaas_iam.oidc.verify import OwnTokenVerifier
from openfaas_iam.proxy.basic_auth import matches, parse_basic
from openfaas_iam.proxy.rest_api import ApiCall

Credentials = tuple[str, str]


@dataclass(frozen=True)
class Principal:
    claims: Mapping[str, Any] = field(default_factory=dict)
    admin: bool = False

    @property
    def subject(self) -> str:
        return "admin (basic auth)" if self.admin else str(self.claims.get("sub", ""))

    @property
    def stream_key(self) -> str:
        """Who a fair share belongs to: the subject at its original issuer (two IdPs may share a `sub`)."""
        return "admin" if self.admin else f"{self.claims.get('fed:iss', '')}|{self.claims.get('sub', '')}"

    @property
    def policies(self) -> list[str]:
        value = self.claims.get("policy")
        return [p for p in value if isinstance(p, str)] if isinstance(value, list) else []


class Authorizer:
    def __init__(
        self,
        *,
        config: Callable[[], IamConfig],
        verifier: OwnTokenVerifier,
        admin_credentials: Callable[[], Credentials | None],
        protection: Protection | None = None,
        refresh_gateway: str = "",
    ) -> None:
        self.config = config
        # Named in an expired token's 401: the `--gateway` to give `openfaas-iam auth --refresh`.
        self.refresh_gateway = refresh_gateway
        self.verifier = verifier
        self.admin_credentials = admin_credentials
        self.protection = protection or Protection()

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("no credentials: send Authorization: Bearer <OpenFaaS token>")
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            try:
                claims = self.verifier.verify(value.strip())
            except TokenError as e:
                exp = token_exp(value.strip())
                if exp is not None and exp < time.time():
                    # Say when and what to run (the signature is not vouched for: the caller's own token).
                    raise Unauthenticated(expired_message(exp, self.refresh_gateway)) from None
                raise Unauthenticated(f"invalid token: {e}") from None
            if "function" in claims:
                raise Unauthenticated("a function token cannot be used for the OpenFaaS API; use an API token")
            return Principal(claims)
        if scheme.lower() == "basic" and value.strip():
            return self._basic(value.strip())
        raise Unauthenticated("unsupported credentials: send Authorization: Bearer <OpenFaaS token>")

    def _basic(self, value: str) -> Principal:
        """The gateway's admin password keeps full access, as in OpenFaaS."""
        given = parse_basic(value)
        if given is None:
            raise Unauthenticated("malformed basic credentials")
        expected = self.admin_credentials()
        if expected is None:
            raise Unauthenticated("basic auth is not available here: send Authorization: Bearer <OpenFaaS token>")
        if not matches(given, expected):
            raise Unauthenticated("invalid basic credentials")
        return Principal({"sub": given[0], "name": "gateway admin (basic auth)"}, admin=True)

    def decide(self, principal: Principal, action: str, resource: str, *, shadow: bool = False) -> Decision:
        """The enforced decision; `shadow` also counts report-only Policies (what would be decided)."""
        if principal.admin:
            return Decision(True, action, resource, Matched("admin", "basic-auth", "Allow"), "admin credentials")
        exact_only = self.protection.protects(action, resource)
        index = policy_index(self.config())
        policies = principal.policies if shadow else index.enforced(principal.policies)
        return index.decide(policies, action, resource, principal.claims, exact_only=exact_only)

    def decide_with_shadow(self, principal: Principal, action: str, resource: str) -> Decision:
        """For the decision API: the enforced answer, with `would_deny` from report-only Policies."""
        enforced = self.decide(principal, action, resource)
        shadow = enforced.allowed and not principal.admin
        if shadow and policy_index(self.config()).report_only & set(principal.policies):
            shadowed = self.decide(principal, action, resource, shadow=True)
            if not shadowed.allowed:
                return replace(enforced, would_deny=shadowed.reason)
        return enforced

    def _decide_checks(self, principal: Principal, call: ApiCall, shadow: bool) -> Decision:
        first: Decision | None = None
        for check in call.all_checks:
            d = self.decide(principal, check.action, check.resource, shadow=shadow)
            if not d.allowed:
                if first is None:
                    return d
                return Decision(False, d.action, d.resource, d.matched, f"{d.reason} ({check.why})")
            first = first or d
        assert first is not None
        return first

    def decide_call(self, principal: Principal, call: ApiCall, *, report_only: bool = False) -> Decision:
        """Every permission the call needs (its own, each mounted secret, scaling labels) must hold.

        The first refusal is the answer, naming the permission that failed and why it was asked.
        Report-only (a Policy annotated so, or the whole proxy with `report_only`): the call
        proceeds and `would_deny` says what would have refused it. Never for the bundle's own
        functions and secrets: those checks are always enforced.
        """
        enforced = self._decide_checks(principal, call, shadow=False)
        protected = any(self.protection.protects(c.action, c.resource) for c in call.all_checks)
        if not enforced.allowed:
            if report_only and not protected and not principal.admin:
                return replace(
                    enforced, allowed=True, would_deny=enforced.reason, reason="report-only: " + enforced.reason
                )
            return enforced
        if not principal.admin and policy_index(self.config()).report_only & set(principal.policies):
            shadowed = self._decide_checks(principal, call, shadow=True)
            if not shadowed.allowed:
                return replace(enforced, would_deny=shadowed.reason)
        return enforced

    def visible_namespaces(self, principal: Principal, namespaces: list[str]) -> list[str]:
        if principal.admin:
            return namespaces
        index = policy_index(self.config())
        return index.namespaces_visible(index.enforced(principal.policies), namespaces, principal.claims)

    def whoami(self, principal: Principal) -> dict[str, Any]:
        if principal.admin:
            return {
                "subject": principal.subject,
                "admin": True,
                "policies": [],
                "permissions": [{"actions": ["*"], "resources": ["*"]}],
            }
        exp = float(principal.claims.get("exp", 0))
        index = policy_index(self.config())
        return {
            "subject": principal.subject,
            "issuer": principal.claims.get("iss"),
            "federated_issuer": principal.claims.get("fed:iss"),
            "policies": principal.policies,
            "expires_at": rfc3339_nano(exp),
            "expires_in": max(0, int(exp - time.time())),
            "permissions": index.effective(index.enforced(principal.policies), principal.claims),
        }
