"""The bundle's signing keyset: ES256 keys with states, kept as one JSON document.

States: `next` (published, not yet signing), `current` (signing), `retired`
(published until every token it signed has expired). Publishing a key one full
rotation interval before it signs means every verifier already knows it when the
first token carrying its kid arrives, even though mounted secrets update late.
This module is pure: stores read and write the JSON, the rotation function decides.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from openfaas_iam import json_codec
from openfaas_iam.errors import StoreError

NEXT, CURRENT, RETIRED = "next", "current", "retired"
STATES = (NEXT, CURRENT, RETIRED)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(public: ec.EllipticCurvePublicKey, kid: str) -> dict[str, str]:
    nums = public.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(nums.x.to_bytes(32, "big")),
        "y": b64url(nums.y.to_bytes(32, "big")),
        "kid": kid,
        "use": "sig",
        "alg": "ES256",
    }


def thumbprint(public: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638 JWK thumbprint: a kid that is stable and derived from the key itself."""
    jwk = public_jwk(public, "")
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True)
class SigningKey:
    kid: str
    state: str
    created_at: float
    private_pem: str
    activated_at: float | None = None
    retired_at: float | None = None
    _private: Any = field(default=None, repr=False, compare=False)

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        if self._private is None:
            key = serialization.load_pem_private_key(self.private_pem.encode(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise StoreError(f"signing key {self.kid} is not a P-256 EC key")
            object.__setattr__(self, "_private", key)
        return self._private

    def public_jwk(self) -> dict[str, str]:
        return public_jwk(self.private_key.public_key(), self.kid)

    def to_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "state": self.state,
            "created_at": self.created_at,
            "activated_at": self.activated_at,
            "retired_at": self.retired_at,
            "private_key_pem": self.private_pem,
        }


def new_key(state: str, now: float | None = None) -> SigningKey:
    now = time.time() if now is None else now
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return SigningKey(
        kid=thumbprint(private.public_key()),
        state=state,
        created_at=now,
        private_pem=pem,
        activated_at=now if state == CURRENT else None,
        _private=private,
    )


@dataclass(frozen=True)
class Keyset:
    """The private keyset. `generation` counts rotation steps: the rotator compares it with
    what the mounts show to tell a mount that has caught up from one that is still stale."""

    keys: tuple[SigningKey, ...]
    version: int = 1
    generation: int = 0

    @property
    def current(self) -> SigningKey:
        for k in self.keys:
            if k.state == CURRENT:
                return k
        raise StoreError("the signing keyset has no current key")

    def by_kid(self, kid: str) -> SigningKey | None:
        for k in self.keys:
            if k.kid == kid:
                return k
        return None

    def public_keys(self) -> dict[str, ec.EllipticCurvePublicKey]:
        """kid -> public key of every published key, for verifying the bundle's own tokens."""
        cached = self.__dict__.get("_public_keys")
        if cached is None:
            cached = {k.kid: k.private_key.public_key() for k in self.keys}
            object.__setattr__(self, "_public_keys", cached)
        return cached

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """Every key a verifier may meet: next, current and retired (computed once per keyset)."""
        cached = self.__dict__.get("_public_jwks")
        if cached is None:
            cached = {"keys": [k.public_jwk() for k in self.keys]}
            object.__setattr__(self, "_public_jwks", cached)
        return cached

    def to_json(self) -> str:
        return json.dumps(
            {"version": self.version, "generation": self.generation, "keys": [k.to_json() for k in self.keys]},
            indent=2,
        )

    def public_json(self) -> str:
        """The public half (the `iam-public-keys` secret): what verifiers mount; no private key in it."""
        return json.dumps(
            {"generation": self.generation, "current": self.current_info(), **self.public_jwks()}, indent=2
        )

    def current_info(self) -> dict[str, Any] | None:
        """The current key's kid and times, published so every verifier can report key age (metrics)."""
        try:
            current = self.current
        except StoreError:
            return None
        return {"kid": current.kid, "created_at": current.created_at, "activated_at": current.activated_at}

    def replace_keys(self, keys: list[SigningKey]) -> Keyset:
        """A changed keyset is the next generation."""
        return replace(self, keys=tuple(keys), generation=self.generation + 1)


@dataclass(frozen=True)
class PublicKeys:
    """The mounted public keyset (`iam-public-keys`): the JWKS verifiers trust, and its generation."""

    generation: int
    jwks: dict[str, list[dict[str, Any]]]
    # The current key's kid, created_at and activated_at, when the publisher recorded them.
    current: dict[str, Any] | None = None

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(k["kid"] for k in self.jwks["keys"])


def parse_public_keys(text: str | bytes, source: str = "public keyset") -> PublicKeys:
    """Parse `iam-public-keys`; only EC P-256 public keys with a kid are kept, anything private refused."""
    try:
        doc = json_codec.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise StoreError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise StoreError(f'{source}: expected {{"generation": N, "keys": [...]}}')
    keys: list[dict[str, Any]] = []
    for i, k in enumerate(doc["keys"]):
        if not isinstance(k, dict) or not isinstance(k.get("kid"), str) or k.get("kty") != "EC":
            raise StoreError(f"{source}: keys[{i}] is not an EC public key with a kid")
        if "d" in k:
            raise StoreError(f"{source}: keys[{i}] ({k['kid']}) carries a private part; this secret must be public")
        keys.append(k)
    generation = doc.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise StoreError(f"{source}: generation must be an integer")
    current = doc.get("current")
    if not isinstance(current, dict) or not all(
        isinstance(current.get(f), (int, float, type(None))) and not isinstance(current.get(f), bool)
        for f in ("created_at", "activated_at")
    ):
        current = None
    return PublicKeys(generation, {"keys": keys}, current)


def read_public_keys_file(path: str) -> PublicKeys:
    with open(path, "rb") as f:
        return parse_public_keys(f.read(), path)


def initial_keyset(now: float | None = None) -> Keyset:
    """A fresh keyset: one key signing now and the next one already published."""
    return Keyset((new_key(CURRENT, now), new_key(NEXT, now)))


def parse_keyset(text: str | bytes, source: str = "keyset") -> Keyset:
    """Parse and validate the stored JSON; StoreError names what is wrong."""
    try:
        doc = json_codec.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise StoreError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise StoreError(f'{source}: expected {{"version": 1, "keys": [...]}}')
    keys: list[SigningKey] = []
    for i, raw in enumerate(doc["keys"]):
        if not isinstance(raw, dict):
            raise StoreError(f"{source}: keys[{i}] is not an object")
        state = raw.get("state")
        if state not in STATES:
            raise StoreError(f"{source}: keys[{i}].state must be one of {', '.join(STATES)}, got {state!r}")
        kid, pem = raw.get("kid"), raw.get("private_key_pem")
        if not isinstance(kid, str) or not kid or not isinstance(pem, str):
            raise StoreError(f"{source}: keys[{i}] needs kid and private_key_pem")
        key = SigningKey(
            kid=kid,
            state=state,
            created_at=float(raw.get("created_at") or 0),
            private_pem=pem,
            activated_at=raw.get("activated_at"),
            retired_at=raw.get("retired_at"),
        )
        try:
            key.private_key  # noqa: B018 - parse now so a broken key fails at load, not at signing
        except (ValueError, TypeError) as e:
            raise StoreError(f"{source}: keys[{i}] ({kid}) has an unreadable private key: {e}") from None
        keys.append(key)
    if sum(1 for k in keys if k.state == CURRENT) != 1:
        raise StoreError(f"{source}: exactly one key must be current")
    if len({k.kid for k in keys}) != len(keys):
        raise StoreError(f"{source}: kids must be unique")
    generation = doc.get("generation", 0)
    if isinstance(generation, bool) or not isinstance(generation, int):
        raise StoreError(f"{source}: generation must be an integer")
    return Keyset(tuple(keys), int(doc.get("version", 1)), generation)


def read_keyset_file(path: str) -> Keyset:
    with open(path, "rb") as f:
        return parse_keyset(f.read(), path)


def rotation_due(keyset: Keyset, now: float, interval: float) -> bool:
    """Whether the current key has signed for a full interval."""
    current = keyset.current
    started = current.activated_at if current.activated_at is not None else current.created_at
    return now >= started + interval


def rotate(keyset: Keyset, now: float, retire_after: float) -> Keyset:
    """One rotation step: drop expired retired keys, current -> retired, next -> current, a fresh next.

    `retire_after` is how long a retired key must stay published: the longest token
    lifetime plus leeway, so every token it signed has expired before it leaves.
    """
    kept: list[SigningKey] = []
    for k in keyset.keys:
        if k.state == RETIRED and k.retired_at is not None and now >= k.retired_at + retire_after:
            continue  # every token this key signed has expired
        if k.state == CURRENT:
            kept.append(replace(k, state=RETIRED, retired_at=now, _private=k._private))
        elif k.state == NEXT:
            kept.append(replace(k, state=CURRENT, activated_at=now, _private=k._private))
        else:
            kept.append(k)
    if not any(k.state == CURRENT for k in kept):
        kept.append(new_key(CURRENT, now))  # a keyset that never had a next key
    kept.append(new_key(NEXT, now))
    return keyset.replace_keys(kept)


def prune(keyset: Keyset, now: float, retire_after: float) -> Keyset:
    """Only drop retired keys whose tokens have all expired (no state change otherwise)."""
    kept = [
        k
        for k in keyset.keys
        if not (k.state == RETIRED and k.retired_at is not None and now >= k.retired_at + retire_after)
    ]
    return keyset if len(kept) == len(keyset.keys) else keyset.replace_keys(kept)
