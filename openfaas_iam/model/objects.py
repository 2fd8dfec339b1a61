"""The `iam.openfaas.com/v1` objects as typed, immutable values.

Slotted (no per-object `__dict__`): a large configuration holds tens of thousands of
them for as long as it is in force, and a dict each was the largest single cost.

These mirror OpenFaaS IAM field for field, so a user's OpenFaaS for Enterprises
documents load unchanged; our extensions (Deny, more operators, variables) are
additions that their documents simply do not use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from openfaas_iam.model.conditions import Condition

T = TypeVar("T")
# The principal of a Role that has none: one shared empty mapping, read-only, instead of one per Role.
NO_PRINCIPAL: Mapping[str, tuple[str, ...]] = MappingProxyType({})
API_VERSION = "iam.openfaas.com/v1"
DEFAULT_NAMESPACE = "openfaas"
# OpenFaaS's chart uses 2h for federated issuers when none is given (documented in the README).
DEFAULT_TOKEN_EXPIRY = 2 * 3600.0


@dataclass(frozen=True, slots=True)
class JwtIssuer:
    name: str
    namespace: str
    iss: str
    aud: tuple[str, ...]
    iss_internal: str | None = None
    token_expiry: float = DEFAULT_TOKEN_EXPIRY

    @property
    def fetch_base(self) -> str:
        """Where discovery is downloaded from; tokens still carry `iss`."""
        return self.iss_internal or self.iss


@dataclass(frozen=True, slots=True)
class Statement:
    sid: str
    effect: str  # "Allow" | "Deny"
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    condition: Condition | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    namespace: str
    statements: tuple[Statement, ...]
    # metadata.annotations["iam.openfaas.com/report-only"] == "true": decided and audited as
    # "would deny", never enforced (an annotation, so the same YAML still loads in OpenFaaS for Enterprises).
    report_only: bool = False


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    namespace: str
    policies: tuple[str, ...]
    principal: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: NO_PRINCIPAL)
    condition: Condition | None = None


@dataclass(frozen=True, eq=False)
class IamConfig:
    """A complete, validated set of IAM objects.

    Compiled forms (role matchers, policy indexes) hang off the object itself via
    `derived`, so they are built once per loaded configuration and dropped with it.
    """

    issuers: tuple[JwtIssuer, ...] = ()
    policies: tuple[Policy, ...] = ()
    roles: tuple[Role, ...] = ()
    _by_iss: Mapping[str, JwtIssuer] = field(default_factory=dict, repr=False, compare=False)
    _by_policy: Mapping[str, Policy] = field(default_factory=dict, repr=False, compare=False)
    _derived: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_iss", {i.iss: i for i in self.issuers})
        object.__setattr__(self, "_by_policy", {p.name: p for p in self.policies})

    def issuer(self, iss: str) -> JwtIssuer | None:
        """The JwtIssuer trusted for a token's exact `iss`, or None."""
        return self._by_iss.get(iss)

    def policy(self, name: str) -> Policy | None:
        return self._by_policy.get(name)

    def derived(self, key: str, build: Callable[[IamConfig], T]) -> T:
        """A value computed from this configuration once (thread-safe enough: a race builds twice)."""
        value = self._derived.get(key)
        if value is None:
            value = build(self)
            self._derived[key] = value
        return value

    @property
    def max_token_expiry(self) -> float:
        return max((i.token_expiry for i in self.issuers), default=DEFAULT_TOKEN_EXPIRY)
