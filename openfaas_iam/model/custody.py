"""Key custody: which of the bundle's secrets each function may mount, and nobody else.

On CE every function runs in `openfaas-fn` as the same service account, and any deploy
may list any secret of that namespace. So who can read a key is decided by who may
mount its secret: the operator deploys the bundle with stack.yml straight to the
gateway; a deploy that goes through the authorizing proxy may never list these
secrets, nor write or delete them; the local provider (`make run`) mounts them only
into the functions named here. See docs/rotation.md, "Where each key lives". The proxy reads
a deploy's `secrets` the way Go does (`proxy/go_json.py`), so every spelling is covered.
Pure data, so the model's protection rules (`protected.py`) build on the same list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

BUNDLE = frozenset({"iam-authz", "iam-discovery", "iam-token", "iam-rotate"})

# secret -> the bundle functions that may mount it.
SECRET_READERS: Mapping[str, frozenset[str]] = {
    "iam-signing-keys": frozenset({"iam-token", "iam-rotate"}),  # the private keys: signers only
    "iam-cache-key": BUNDLE,  # authenticates shared Redis entries: a holder could plant issuer keys
    "redis-password": BUNDLE,
    "basic-auth": frozenset({"iam-authz", "iam-rotate"}),  # the gateway's admin credentials
    "sso-client-secret": frozenset({"iam-token"}),
}

# Secrets a caller of the proxy must not create, replace or delete: replacing one would plant
# a key (`iam-public-keys` is what verifiers trust) or a configuration.
PROTECTED_SECRETS: frozenset[str] = frozenset(SECRET_READERS) | {"iam-public-keys", "iam-config", "redis-ca"}


def may_mount(function: str, secret: str) -> bool:
    """Whether `function` may mount `secret` (secrets that are not the bundle's are anyone's)."""
    readers = SECRET_READERS.get(secret)
    return readers is None or function in readers


def reserved_in(names: Iterable[str]) -> list[str]:
    """The bundle's own secrets among `names` (what a caller's deploy may not mount)."""
    return sorted({n for n in names if n in SECRET_READERS})
