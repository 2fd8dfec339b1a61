"""Redis holds no trust: whatever anyone writes there never becomes a key the bundle trusts.

Every pod in openfaas-fn can reach Redis on CE. These tests plant keys in a real Redis
(own keys under the old `own-jwks` name, issuer key sets under `jwks:<iss>`, with any
timestamps) and check that no forged token passes.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import ec
from idp_server import OidcProvider

from openfaas_iam.errors import TokenError
from openfaas_iam.jose.keyset import initial_keyset, public_jwk
from openfaas_iam.jose.mint import sign
from openfaas_iam.model.loading import load_texts
from openfaas_iam.observability.metrics import Metrics
from openfaas_iam.oidc.cache_auth import PREFIX, EntrySealer
from openfaas_iam.oidc.discovery import IssuerDiscovery
from openfaas_iam.oidc.jwks_cache import CachePolicy, JwksCache
from openfaas_iam.oidc.outbound import Fetcher
from openfaas_iam.oidc.verify import OwnTokenVerifier, verify_subject_token
from openfaas_iam.service.runtime import Runtime
from openfaas_iam.settings import Settings
from openfaas_iam.stores.cache import LayeredCache, RedisCache

AUD = "https://gateway.test"
ISSUER = "https://gateway.example.com/function/iam-discovery"
KEY = b"the-bundle-cache-key"


def attacker_key(kid: str) -> tuple[ec.EllipticCurvePrivateKey, dict[str, str]]:
    private = ec.generate_private_key(ec.SECP256R1())
    return private, public_jwk(private.public_key(), kid)


def forged(private: ec.EllipticCurvePrivateKey, kid: str, claims: dict) -> str:
    return jwt.encode(claims, private, algorithm="ES256", headers={"kid": kid})


# -- the bundle's own keys --------------------------------------------------------------------------


def runtime(tmp_path: Path, redis_url: str, prefix: str, *, private: bool) -> Runtime:
    keyset = initial_keyset()
    (tmp_path / "iam-public-keys").write_text(keyset.public_json())
    if private:
        (tmp_path / "iam-signing-keys").write_text(keyset.to_json())
    (tmp_path / "iam-cache-key").write_bytes(KEY)
    settings = Settings(
        public_gateway_url="https://gateway.example.com",
        redis_url=redis_url,
        redis_prefix=prefix,
        secret_mount_path=str(tmp_path),
    )
    return Runtime.build(settings)


@pytest.mark.parametrize("private", [False, True], ids=["verifier (public keyset)", "signer (private keyset)"])
def test_an_own_key_planted_in_redis_is_never_trusted(tmp_path: Path, redis_url: str, private: bool) -> None:
    prefix = f"trust-{uuid.uuid4().hex[:8]}:"
    rt = runtime(tmp_path, redis_url, prefix, private=private)
    key, jwk = attacker_key("planted")
    r = redis.Redis.from_url(redis_url)
    # Where the bundle used to read its own keys from, and anything that looks like it.
    for name in ("own-jwks", "jwks:" + ISSUER, "own_jwks"):
        r.set(prefix + name, json.dumps({"keys": [jwk], "fetched_at": time.time(), "fresh_until": 4e9}))
    assert "planted" not in rt.own_public_keys()
    assert "planted" not in {k["kid"] for k in rt.own_public_jwks()["keys"]}
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": ISSUER, "sub": "fed:mallory", "policy": ["prod-admin"], "iat": now, "exp": now + 60}
    verifier = OwnTokenVerifier(ISSUER, rt.own_public_keys)
    with pytest.raises(TokenError, match="not one of openfaas-iam's signing keys"):
        verifier.verify(forged(key, "planted", claims))
    # The mounted keys still verify the bundle's own tokens.
    signing = initial_keyset()
    (tmp_path / "iam-public-keys").write_text(signing.public_json())
    rt.public._next_check = 0  # the next look-up stats the file again (the kubelet swapped it)
    assert verifier.verify(sign(claims, signing.current))["sub"] == "fed:mallory"


def test_a_verified_token_is_forgotten_once_its_key_is_no_longer_trusted() -> None:
    keyset = initial_keyset()
    keys = dict(keyset.public_keys())
    verifier = OwnTokenVerifier(ISSUER, lambda: keys)
    now = int(time.time())
    token = sign({"iss": ISSUER, "aud": ISSUER, "sub": "a", "iat": now, "exp": now + 600}, keyset.current)
    assert verifier.verify(token)["sub"] == "a"
    assert verifier.verify(token)["sub"] == "a", "cached"
    del keys[keyset.current.kid]  # the key left the mounts
    with pytest.raises(TokenError, match="not one of openfaas-iam's signing keys"):
        verifier.verify(token)


# -- issuers' keys shared through Redis ------------------------------------------------------------


def config_for(iss: str):
    doc = {"apiVersion": "iam.openfaas.com/v1", "kind": "JwtIssuer", "metadata": {"name": "idp"}}
    return load_texts([("t", json.dumps({**doc, "spec": {"iss": iss, "aud": [AUD]}}))])


def replica(redis_url: str, prefix: str, key: list[bytes], metrics: Metrics | None = None) -> JwksCache:
    return JwksCache(
        IssuerDiscovery(Fetcher(timeout=2)),
        LayeredCache(RedisCache(redis_url, prefix)),
        policy=CachePolicy(refetch_interval=0.2),
        metrics=metrics or Metrics(),
        sealer=EntrySealer(lambda: key[0]),
    )


def plant(redis_url: str, prefix: str, iss: str, value: bytes) -> None:
    redis.Redis.from_url(redis_url).set(f"{prefix}jwks:{iss}", value)


def doc(iss: str, jwk: dict, fetched_at: float, fresh_until: float) -> bytes:
    return json.dumps({"iss": iss, "keys": [jwk], "fetched_at": fetched_at, "fresh_until": fresh_until}).encode()


PLANTS = {
    "unsealed, fresh for ever": lambda iss, jwk, now: doc(iss, jwk, now, 4e9),
    "unsealed, fetched in the future": lambda iss, jwk, now: doc(iss, jwk, now + 86400, now + 2 * 86400),
    "sealed with another key": lambda iss, jwk, now: EntrySealer(lambda: b"guess").seal(
        "jwks", iss, doc(iss, jwk, now, now + 300)
    ),
    "sealed for another issuer": lambda iss, jwk, now: EntrySealer(lambda: KEY).seal(
        "jwks", "https://other.example.com", doc(iss, jwk, now, now + 300)
    ),
    "a MAC copied from a real entry": lambda iss, jwk, now: PREFIX + b"AAAA." + doc(iss, jwk, now, now + 300),
    "sealed, but fetched a day in the future": lambda iss, jwk, now: EntrySealer(lambda: KEY).seal(
        "jwks", iss, doc(iss, jwk, now + 86400, now + 2 * 86400)
    ),
}


@pytest.mark.parametrize("how", list(PLANTS))
def test_an_issuer_key_planted_in_redis_is_never_trusted(idp: OidcProvider, redis_url: str, how: str) -> None:
    prefix = f"trust-{uuid.uuid4().hex[:8]}:"
    config = config_for(idp.issuer)
    private, jwk = attacker_key("planted-idp-key")
    plant(redis_url, prefix, idp.issuer, PLANTS[how](idp.issuer, jwk, time.time()))
    metrics = Metrics()
    jwks = replica(redis_url, prefix, [KEY], metrics)
    now = int(time.time())
    token = forged(private, "planted-idp-key", {"iss": idp.issuer, "aud": AUD, "sub": "mallory", "exp": now + 60})
    with pytest.raises(TokenError, match="planted-idp-key"):
        verify_subject_token(token, config, jwks, leeway=5)
    assert metrics.value("openfaas_iam_cache_rejected_total", kind="jwks") >= 1, "counted"
    # The real IdP's tokens still verify (the replica fetched the keys itself).
    assert verify_subject_token(idp.mint({"sub": "alice"}), config, jwks, leeway=5).claims["sub"] == "alice"


def test_shared_entry_freshness_is_bounded_by_the_reader(idp: OidcProvider, redis_url: str) -> None:
    """Even an authentic entry is never fresher than this replica would have made it itself."""
    prefix = f"trust-{uuid.uuid4().hex[:8]}:"
    writer = replica(redis_url, prefix, [KEY])
    issuer = config_for(idp.issuer).issuers[0]
    entry = writer.refresh(issuer)
    now = time.time()
    stretched = doc(idp.issuer, entry.jwks[0], now, now + 10 * 365 * 86400)
    plant(redis_url, prefix, idp.issuer, EntrySealer(lambda: KEY).seal("jwks", idp.issuer, stretched) or b"")
    reader = replica(redis_url, prefix, [KEY])
    adopted = reader._adopt_shared(idp.issuer)
    assert adopted is not None and adopted.fresh_until <= time.time() + reader.policy.max_ttl + 1


def test_a_poisoned_entry_is_gone_after_refresh(idp: OidcProvider, redis_url: str) -> None:
    """An entry adopted under a cache key that has since been rotated (it leaked) is dropped by /refresh."""
    prefix = f"trust-{uuid.uuid4().hex[:8]}:"
    config = config_for(idp.issuer)
    issuer = config.issuers[0]
    private, jwk = attacker_key("poison")
    key = [b"leaked-cache-key"]
    now = time.time()
    plant(
        redis_url,
        prefix,
        idp.issuer,
        EntrySealer(lambda: key[0]).seal("jwks", idp.issuer, doc(idp.issuer, jwk, now, now + 300)) or b"",
    )
    jwks = replica(redis_url, prefix, key)
    token = forged(private, "poison", {"iss": idp.issuer, "aud": AUD, "sub": "mallory", "exp": int(now) + 600})
    assert verify_subject_token(token, config, jwks, leeway=5).claims["sub"] == "mallory", "the leak at work"
    key[0] = b"rotated-cache-key"  # the operator rotates iam-cache-key
    jwks.prefetch(issuer)  # POST /refresh
    with pytest.raises(TokenError, match="poison"):
        verify_subject_token(token, config, jwks, leeway=5)
    assert verify_subject_token(idp.mint({"sub": "alice"}), config, jwks, leeway=5).claims["sub"] == "alice"


def test_an_entry_deleted_from_redis_leaves_the_replica_on_refresh(idp: OidcProvider, redis_url: str) -> None:
    prefix = f"trust-{uuid.uuid4().hex[:8]}:"
    config = config_for(idp.issuer)
    private, jwk = attacker_key("poison")
    now = time.time()
    plant(
        redis_url,
        prefix,
        idp.issuer,
        EntrySealer(lambda: KEY).seal("jwks", idp.issuer, doc(idp.issuer, jwk, now, now + 300)) or b"",
    )
    jwks = replica(redis_url, prefix, [KEY])
    token = forged(private, "poison", {"iss": idp.issuer, "aud": AUD, "sub": "mallory", "exp": int(now) + 600})
    verify_subject_token(token, config, jwks, leeway=5)
    redis.Redis.from_url(redis_url).delete(f"{prefix}jwks:{idp.issuer}")  # the operator deletes it
    assert jwks.vouch(idp.issuer), "/refresh drops what it can no longer vouch for"
    with pytest.raises(TokenError, match="poison"):
        verify_subject_token(token, config, jwks, leeway=5)


def test_without_a_cache_key_nothing_is_shared(idp: OidcProvider, redis_url: str) -> None:
    prefix = f"trust-{uuid.uuid4().hex[:8]}:"
    issuer = config_for(idp.issuer).issuers[0]
    replica(redis_url, prefix, [b""]).refresh(issuer)
    assert redis.Redis.from_url(redis_url).get(f"{prefix}jwks:{idp.issuer}") is None


# -- a Redis writer replaying old sealed entries and planting throttles (red team, issue 14) --------
#
# The HMAC proves an entry was written by a replica, not when: whoever can read Redis can copy
# `jwks:<iss>` while it holds a key the IdP later removes, and SET it back afterwards.

RT_ISS = "https://idp.example.com/realms/x"
RT_ISSUER = config_for(RT_ISS).issuers[0]


class SimClock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeIdp:
    """An IssuerDiscovery stand-in serving a JWKS that can change, or be down."""

    def __init__(self, keys: list[dict], max_age: float | None = None) -> None:
        self.keys = keys
        self.max_age = max_age
        self.down = False
        self.fetches = 0
        self.fetcher = Fetcher(timeout=0.2)

    def fetch(self, issuer):
        from openfaas_iam.errors import DiscoveryError
        from openfaas_iam.oidc.discovery import Discovered

        self.fetches += 1
        if self.down:
            raise DiscoveryError("IdP unreachable")
        return Discovered(list(self.keys), self.max_age, "https://idp/jwks")


def sim_replica(idp: FakeIdp, redis_url: str, prefix: str, clock: SimClock) -> JwksCache:
    return JwksCache(
        idp,  # type: ignore[arg-type]
        LayeredCache(RedisCache(redis_url, prefix)),
        clock=clock,
        sealer=EntrySealer(lambda: KEY),
    )


@pytest.fixture
def rt_prefix(redis_url: str):
    prefix = f"replay-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for k in client.scan_iter(prefix + "*"):
        client.delete(k)


def test_a_replayed_entry_does_not_revive_a_revoked_idp_key_on_a_new_replica(redis_url: str, rt_prefix: str) -> None:
    """(a) no outage: the IdP drops 'leaked', a replay a minute and a half later must not bring it back."""
    from openfaas_iam.errors import KeyUnavailable

    clock = SimClock()
    _, leaked = attacker_key("leaked")
    _, new = attacker_key("new")
    idp = FakeIdp([leaked], max_age=3600)
    a = sim_replica(idp, redis_url, rt_prefix, clock)
    a.refresh(RT_ISSUER)
    old = redis.Redis.from_url(redis_url).get(f"{rt_prefix}jwks:{RT_ISS}")
    clock.t += 60
    idp.keys = [new]  # the IdP revokes 'leaked'
    assert a.key(RT_ISSUER, "new").kid == "new"
    clock.t += 30
    plant(redis_url, rt_prefix, RT_ISS, old)  # the replay
    pod = sim_replica(idp, redis_url, rt_prefix, clock)  # a pod started now
    with pytest.raises(KeyUnavailable, match="leaked"):
        pod.key(RT_ISSUER, "leaked")
    assert pod.key(RT_ISSUER, "new").kid == "new", "it fetched the IdP itself"


def test_a_replayed_entry_is_never_served_stale_during_an_idp_outage(redis_url: str, rt_prefix: str) -> None:
    """(b) an adopted entry is never served stale; only what a replica fetched itself is."""
    from openfaas_iam.errors import KeyUnavailable

    clock = SimClock()
    _, leaked = attacker_key("leaked")
    _, new = attacker_key("new")
    idp = FakeIdp([leaked])
    writer = sim_replica(idp, redis_url, rt_prefix, clock)
    writer.refresh(RT_ISSUER)
    old = redis.Redis.from_url(redis_url).get(f"{rt_prefix}jwks:{RT_ISS}")
    idp.keys = [new]
    clock.t += 3600
    writer.refresh(RT_ISSUER)
    idp.down = True
    clock.t += 60
    plant(redis_url, rt_prefix, RT_ISS, old)
    with pytest.raises(KeyUnavailable):
        sim_replica(idp, redis_url, rt_prefix, clock).key(RT_ISSUER, "leaked")
    # Even a recent, honest entry adopted by a new pod is not used once stale while the IdP is down...
    idp.down = False
    clock.t += 400
    writer.refresh(RT_ISSUER)
    idp.down = True
    pod = sim_replica(idp, redis_url, rt_prefix, clock)
    assert pod.key(RT_ISSUER, "new").kid == "new", "adopted while fresh"
    clock.t += 400  # past fresh_until (default TTL 300 s), IdP still down
    with pytest.raises(KeyUnavailable, match="never used stale"):
        pod.key(RT_ISSUER, "new")
    # ...while the replica that fetched it itself serves it stale, as before.
    assert writer.key(RT_ISSUER, "new").kid == "new"


def test_refresh_never_rolls_a_replica_back_to_a_replayed_older_entry(redis_url: str, rt_prefix: str) -> None:
    """(c) anonymous POST /refresh (prefetch -> vouch) must not swap a newer adopted entry for a replay."""
    from openfaas_iam.errors import DiscoveryError, KeyUnavailable

    clock = SimClock()
    _, leaked = attacker_key("leaked")
    _, new = attacker_key("new")
    idp = FakeIdp([leaked])
    a = sim_replica(idp, redis_url, rt_prefix, clock)
    a.refresh(RT_ISSUER)
    old = redis.Redis.from_url(redis_url).get(f"{rt_prefix}jwks:{RT_ISS}")
    idp.keys = [new]
    clock.t += 3600
    a.refresh(RT_ISSUER)
    disc = sim_replica(idp, redis_url, rt_prefix, clock)
    assert disc.prefetch(RT_ISSUER).kids == ["new"]
    idp.down = True
    plant(redis_url, rt_prefix, RT_ISS, old)
    clock.t += 10
    with pytest.raises(DiscoveryError):
        disc.prefetch(RT_ISSUER)
    assert not disc.vouch(RT_ISS), "a different entry in Redis is no reason to drop a newer authentic one"
    with pytest.raises(KeyUnavailable):
        disc.key(RT_ISSUER, "leaked")
    # Even a replay fetched within the adoption window is refused if older than what the replica holds.
    assert disc._adopt_shared(RT_ISS) is not None and disc._entries[RT_ISS].kids == ["new"]


def test_a_planted_refetch_throttle_without_ttl_does_not_block_new_idp_keys(redis_url: str, rt_prefix: str) -> None:
    from openfaas_iam.errors import KeyUnavailable

    clock = SimClock()
    _, k1 = attacker_key("k1")
    _, k2 = attacker_key("k2")
    idp = FakeIdp([k1], max_age=3600)
    rep = sim_replica(idp, redis_url, rt_prefix, clock)
    assert rep.key(RT_ISSUER, "k1").kid == "k1"
    idp.keys = [k2]  # the IdP rotates
    client = redis.Redis.from_url(redis_url)
    client.set(f"{rt_prefix}jwks-refetch:{RT_ISS}", b"1")  # planted: no TTL
    client.set(f"{rt_prefix}jwks-fetching:{RT_ISS}", b"1", ex=86400)  # planted: far longer than any fetch
    assert rep.key(RT_ISSUER, "k2").kid == "k2", "the foreign throttle and lock were replaced"
    assert idp.fetches == 2
    assert 0 < client.pttl(f"{rt_prefix}jwks-refetch:{RT_ISS}") <= 5000, "now a throttle with the bundle's TTL"
    # The per-replica floor still holds when Redis forgets the throttle: random kids do not hammer the IdP.
    for i in range(20):
        client.delete(f"{rt_prefix}jwks-refetch:{RT_ISS}")
        with pytest.raises(KeyUnavailable):
            rep.key(RT_ISSUER, f"random-{i}")
    assert idp.fetches == 2
    clock.t += 6
    with pytest.raises(KeyUnavailable):
        rep.key(RT_ISSUER, "random-after-the-interval")
    assert idp.fetches == 3
