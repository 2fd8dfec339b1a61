"""The bundle protects itself: its own functions and secrets are out of reach of wildcards.

On the Community Edition every function and secret lives in `openfaas-fn`, so a grant of
`Function:*` on `openfaas-fn:*` would otherwise let a caller replace `iam-authz` with an
image of their own, or mount `iam-signing-keys` into a function and mint any token. For
the actions that change or expose these objects, only the gateway admin (basic auth) or
an Allow statement that names the object exactly (`openfaas-fn:iam-authz`, no wildcard,
no variable) counts; a Deny still applies as written. `openfaas-iam lint` warns about
every statement that names one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from openfaas_iam.model.actions import canonical_action
from openfaas_iam.model.custody import PROTECTED_SECRETS

# Function names the bundle deploys (stack.yml) and the prefix it reserves for more.
BUNDLE_PREFIX = "iam-"
# The key material (custody.py, never mounted or written through the proxy) and the optional
# secrets that also belong to the bundle: one list, so the two rules cannot drift apart.
BUNDLE_SECRETS = PROTECTED_SECRETS | {"ca-bundle", "audit-webhook-secret"}
# Get (describe shows the environment) and Logs (the audit trail of every caller) are protected too.
FUNCTION_ACTIONS = frozenset(
    {"Function:Create", "Function:Update", "Function:Delete", "Function:Scale", "Function:Get", "Function:Logs"}
)
SECRET_ACTIONS = frozenset({"Secret:Create", "Secret:Update", "Secret:Delete", "Secret:Mount"})
NAMESPACE_ACTIONS = frozenset({"Namespace:Update", "Namespace:Delete"})


@dataclass(frozen=True)
class Protection:
    """Which targets are the bundle's own; `extra_secrets` adds the names of optional secrets."""

    namespace: str = "openfaas-fn"
    extra_secrets: frozenset[str] = frozenset()

    def is_bundle_function(self, name: str) -> bool:
        return name.startswith(BUNDLE_PREFIX)

    def is_bundle_secret(self, name: str) -> bool:
        return name.startswith(BUNDLE_PREFIX) or name in BUNDLE_SECRETS or name in self.extra_secrets

    def protects(self, action: str, resource: str) -> bool:
        """Whether (action, resource) touches the bundle itself, so only an exact grant may allow it.

        Actions are case-insensitive (the engine decides `function:update` as Function:Update), so
        the question is asked of the canonical spelling: else a decision-API caller who spelled it
        in another case got a wildcard grant past the protection."""
        action = canonical_action(action) or action
        ns, _, name = resource.partition(":")
        if action in FUNCTION_ACTIONS:
            return self.is_bundle_function(name)
        if action in SECRET_ACTIONS:
            return self.is_bundle_secret(name)
        if action in NAMESPACE_ACTIONS:
            return ns == self.namespace
        return False

    def names_bundle_object(self, resource: str) -> bool:
        """For lint: does a statement's resource name one of the bundle's objects?"""
        _, _, name = resource.partition(":")
        return (
            bool(name)
            and "*" not in name
            and "${" not in name
            and (self.is_bundle_function(name) or self.is_bundle_secret(name))
        )
