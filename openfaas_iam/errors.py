"""One error hierarchy for the whole bundle.

Errors are raised deep in the core and rendered once, at the edge, by the function
handler in the protocol's own format: RFC 6749 JSON for the token endpoint,
401/403 with a reason for authorization, a located message for configuration.
"""

from __future__ import annotations

from dataclasses import dataclass


class IamError(Exception):
    """Base class: every error the core raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an IAM document, located so a user can find and fix it."""

    source: str
    document: int | None
    object: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        parts = [self.source]
        if self.document is not None:
            parts.append(f"document {self.document}")
        if self.object:
            parts.append(self.object)
        if self.field:
            parts.append(self.field)
        return ": ".join([*parts, self.message])


class ConfigError(IamError):
    """IAM objects that cannot be loaded. Carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class OAuthError(IamError):
    """An RFC 6749 §5.2 error response (also used by RFC 8693 token exchange)."""

    def __init__(self, error: str, description: str, status: int = 400):
        self.error = error
        self.description = description
        self.status = status
        super().__init__(f"{error}: {description}")

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class InvalidRequest(OAuthError):
    def __init__(self, description: str):
        super().__init__("invalid_request", description)


class InvalidTarget(OAuthError):
    def __init__(self, description: str):
        super().__init__("invalid_target", description)


class UnsupportedGrantType(OAuthError):
    def __init__(self, description: str):
        super().__init__("unsupported_grant_type", description)


class InvalidScope(OAuthError):
    def __init__(self, description: str):
        super().__init__("invalid_scope", description)


class TokenError(IamError):
    """A token failed verification; the message says why in words a user can act on."""


class KeyUnavailable(TokenError):
    """No key could be found to verify a token (unknown kid, issuer JWKS unreachable)."""


class IssuerUnavailable(KeyUnavailable):
    """The issuer's keys could not be fetched: the token may well be good, so the caller
    should retry rather than fix its request (the token endpoint answers 503, not 400)."""


class TemporarilyUnavailable(OAuthError):
    """503 `temporarily_unavailable` (RFC 6749 §4.1.2.1's code): a dependency failed, not the
    request, so a client (a CI job) retries after `Retry-After` instead of giving up."""

    def __init__(self, description: str):
        super().__init__("temporarily_unavailable", description, 503)


class Unauthenticated(IamError):
    """No credential or an invalid one: HTTP 401 with `WWW-Authenticate`."""

    status = 401


class DiscoveryError(IamError):
    """An issuer's discovery document or JWKS could not be fetched or was refused."""


class StoreError(IamError):
    """A secret or cache store failed; the message names the store and the operation."""


class ConflictError(StoreError):
    """A compare-and-swap write lost the race (Kubernetes 409)."""
