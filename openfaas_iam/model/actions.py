"""The OpenFaaS IAM action vocabulary and the expansion of action patterns.

Patterns (`Function:*`, `*`, `Function:Get*`, legacy `Function:Read`) are expanded
once, at load time, into the set of concrete actions they grant. A decision then
asks a set-membership question instead of matching patterns per request.
"""

from __future__ import annotations

import difflib
import fnmatch
from functools import lru_cache

ACTIONS: tuple[str, ...] = (
    "Function:List",
    "Function:Get",
    "Function:Create",
    "Function:Update",
    "Function:Delete",
    "Function:Logs",
    "Function:Scale",
    "Function:Invoke",
    "Secret:List",
    "Secret:Create",
    "Secret:Update",
    "Secret:Delete",
    # openfaas-iam's own: may a deploy mount this secret into a function (and so read its value)?
    # In the spirit of AWS iam:PassRole; OpenFaaS for Enterprises has no such action (see docs/policies.md).
    "Secret:Mount",
    "Namespace:List",
    "Namespace:Get",
    "Namespace:Create",
    "Namespace:Update",
    "Namespace:Delete",
    "System:Info",
)

# Names used before July 2023; documents written then still load and mean the same.
LEGACY: dict[str, frozenset[str]] = {
    "function:read": frozenset({"Function:List", "Function:Get", "Function:Logs"}),
    "function:admin": frozenset(a for a in ACTIONS if a.startswith("Function:")),
    "secret:read": frozenset({"Secret:List"}),
    "secret:admin": frozenset(a for a in ACTIONS if a.startswith("Secret:")),
}

_CANONICAL: dict[str, str] = {a.lower(): a for a in ACTIONS}


def canonical_action(name: str) -> str | None:
    """The canonical spelling of a concrete action (names are case-insensitive, as in AWS)."""
    return _CANONICAL.get(name.lower())


@lru_cache(maxsize=4096)  # pure, and the same patterns recur in every Policy
def expand_action(pattern: str) -> frozenset[str]:
    """Concrete actions granted by one pattern; empty when it names nothing we know."""
    low = pattern.lower()
    if low in LEGACY:
        return LEGACY[low]
    if "*" in low or "?" in low:
        return frozenset(a for a in ACTIONS if fnmatch.fnmatchcase(a.lower(), low))
    canon = _CANONICAL.get(low)
    return frozenset({canon}) if canon else frozenset()


@lru_cache(maxsize=4096)
def expand_actions(patterns: tuple[str, ...]) -> frozenset[str]:
    """Concrete actions granted by a statement's action list, one shared frozenset per distinct list.

    Shared because a large configuration repeats the same few lists (`[Function:*]`) in
    thousands of statements: one set per statement was a third of the Policy index's
    memory. Frozensets are immutable, so sharing them (across configurations too) is safe.
    """
    if len(patterns) == 1:
        return expand_action(patterns[0])
    return frozenset().union(*(expand_action(p) for p in patterns))


def suggest_action(pattern: str) -> str | None:
    """The closest known action name, for 'did you mean' hints in lint errors."""
    names = [*ACTIONS, "Function:Read", "Function:Admin", "Secret:Read", "Secret:Admin"]
    close = difflib.get_close_matches(pattern, names, n=1, cutoff=0.6)
    return close[0] if close else None
