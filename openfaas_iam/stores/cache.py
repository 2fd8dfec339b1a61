"""The shared cache: Redis when configured and healthy, an in-process map otherwise.

Redis is an optimisation, never a dependency: every call has a short timeout, a
failure opens a circuit for a few seconds (no request waits on a dead Redis twice),
and the in-process cache keeps answering meanwhile. The circuit closes by itself.

The exception is state that must be the same on every replica, where a per-replica
fallback is wrong rather than slow (a sign-out that revokes on one replica only, a
revoked session that comes back while Redis blips): `SharedStore` keeps it in Redis
only, and says "unavailable" instead of falling back.
"""

from __future__ import annotations

import enum
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("openfaas_iam.cache")


class Claim(enum.Enum):
    """What happened to a claim on a lock, lease or throttle key (`claim()`).

    Anyone in `openfaas-fn` can write Redis, so a key the bundle uses as a lock is only
    believed when it looks like one the bundle wrote: a TTL no longer than the claim's own.
    A key with no TTL, a longer one, or another type is foreign: it is replaced.
    """

    TAKEN = "taken"  # the key was free: this caller holds it now
    MINE = "mine"  # this caller's own token was there already (a retry): held again, TTL renewed
    FOREIGN = "foreign"  # a key the bundle never writes (no TTL, too long a TTL, wrong type): replaced, held now
    HELD = "held"  # someone else holds it within the expected TTL

    @property
    def ok(self) -> bool:
        return self is not Claim.HELD


class SharedUnavailable(ConnectionError):
    """Redis is configured but cannot answer now (or is refused): a lease cannot be checked."""


# One round trip, atomic: take the key if free, renew it if it holds our token, replace it if it
# is foreign (no TTL, a TTL beyond the claim's own, not a string), else report it held.
_CLAIM_SCRIPT = """
local t = redis.call('TYPE', KEYS[1])['ok']
if t == 'none' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 'taken'
end
if t == 'string' and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 'mine'
end
local ttl = redis.call('PTTL', KEYS[1])
if t ~= 'string' or ttl < 0 or ttl > tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 'foreign'
end
return 'held'
"""


class Cache(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes, ttl: float) -> None: ...
    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Set only if absent (a lock or throttle); True when this caller set it."""
        ...

    def claim(self, key: str, token: bytes, ttl: float, *, fallback: bool = True) -> Claim:
        """A lock, lease or throttle that a planted key cannot hold for longer than `ttl` (see Claim).

        `fallback=False`: raise SharedUnavailable rather than fall back to an in-process
        claim when Redis is configured but cannot answer (a lease must then refuse).
        """
        ...

    def delete(self, key: str) -> None: ...


class StoreUnavailable(ConnectionError):
    """The shared store is configured but cannot be reached now (circuit open, timeout, refused)."""


class MemoryCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] < self._clock():
            self._data.pop(key, None)
            return None
        return item[0]

    def set(self, key: str, value: bytes, ttl: float) -> None:
        with self._lock:
            self._data[key] = (value, self._clock() + ttl)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        with self._lock:
            item = self._data.get(key)
            if item is not None and item[1] >= self._clock():
                return False
            self._data[key] = (value, self._clock() + ttl)
            return True

    def claim(self, key: str, token: bytes, ttl: float, *, fallback: bool = True) -> Claim:
        """In-process: nobody else writes this map, so nothing here is foreign (`fallback` is moot)."""
        with self._lock:
            item = self._data.get(key)
            if item is not None and item[1] >= self._clock() and item[0] != token:
                return Claim.HELD
            self._data[key] = (token, self._clock() + ttl)
            return Claim.MINE if item is not None and item[0] == token else Claim.TAKEN

    def delete(self, key: str) -> None:
        self._data.pop(key, None)


@dataclass(frozen=True)
class RedisOptions:
    """How to reach Redis as operators run it.

    `url`: `redis://host:6379/0`, `rediss://...` (TLS), or
    `redis+sentinel://h1:26379,h2:26379/<master>[/<db>]` (redis-py's own Sentinel support).
    The password comes from a mounted secret (`password_file`, read on every connect so
    a rotated password is picked up), never from the environment; `ca_file` is the CA
    that signed Redis's TLS certificate.
    """

    url: str
    password_file: str | None = None
    ca_file: str | None = None
    timeout: float = 0.25


class _FilePassword:
    """A redis-py credential provider reading the mounted password on each connect."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get_credentials(self) -> tuple[()] | tuple[str]:
        """An empty or missing file means no AUTH at all (a Redis without a password)."""
        try:
            with open(self.path) as f:
                password = f.read().strip()
        except OSError:
            return ()
        return (password,) if password else ()


def _sentinel_client(opts: RedisOptions, common: dict[str, Any]) -> Any:
    from redis.sentinel import Sentinel

    rest = opts.url.split("://", 1)[1]
    hosts, _, path = rest.partition("/")
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise ValueError(f"redis_url {_safe(opts.url)}: name the Sentinel master, redis+sentinel://h1:26379/mymaster")
    sentinels = []
    for h in hosts.rsplit("@", 1)[-1].split(","):
        host, _, port = h.partition(":")
        sentinels.append((host, int(port or 26379)))
    db = int(parts[1]) if len(parts) > 1 else 0
    sentinel_kwargs = {k: v for k, v in common.items() if k in ("socket_timeout", "socket_connect_timeout")}
    if "credential_provider" in common and (creds := common["credential_provider"].get_credentials()):
        sentinel_kwargs["password"] = creds[0]
    return Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs, **common).master_for(parts[0], db=db)


def _safe(url: str) -> str:
    """The URL without a password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest


def describe_failure(e: BaseException, url: str) -> str:
    """What went wrong with Redis, said as what to fix."""
    text = str(e)
    name = type(e).__name__
    where = _safe(url)
    if "WRONGPASS" in text or "NOAUTH" in text or "invalid password" in text or name == "AuthenticationError":
        return (
            f"Redis at {where} refused the credentials ({text.split(chr(10))[0][:80]}): put Redis's password in "
            "the redis-password secret and list it in the function's secrets"
        )
    if "MOVED" in text or "CLUSTERDOWN" in text or "ASK " in text:
        return (
            f"Redis at {where} is a Redis Cluster, which is not supported: "
            "point redis_url at a standalone or Sentinel-managed Redis"
        )
    if "SSL" in text or "certificate" in text or "TLS" in text or isinstance(e, ssl.SSLError):
        return (
            f"TLS to Redis at {where} failed ({text[:120]}): mount the CA that signed Redis's certificate as the "
            "redis-ca secret (and use rediss:// only if Redis serves TLS)"
        )
    if "timed out" in text.lower() or "Timeout" in name:
        return f"Redis at {where} did not answer in time ({name}); check the address and the NetworkPolicy"
    return f"Redis at {where} is unreachable ({name}: {text[:120]}); check redis_url and that Redis runs"


class RedisCache:
    """Redis with a circuit breaker; every method degrades to 'not there' when Redis is down.

    A failure is loud once: `problem` says what to fix (health and metrics show it), the
    log says it when it first happens or changes, not on every retry. A Redis Cluster is
    refused at start: the bundle's keys are not hash-tagged for it.
    """

    def __init__(
        self,
        url: str | RedisOptions,
        prefix: str = "openfaas-iam:",
        timeout: float = 0.25,
        retry_after: float = 5.0,
        on_state: Callable[[str | None], None] | None = None,
    ) -> None:
        import redis

        opts = url if isinstance(url, RedisOptions) else RedisOptions(url, timeout=timeout)
        self.url = opts.url
        self._errors = (redis.RedisError, OSError)
        common: dict[str, Any] = {
            "socket_timeout": opts.timeout,
            "socket_connect_timeout": opts.timeout,
            "health_check_interval": 30,
        }
        if opts.password_file and os.path.exists(opts.password_file):
            common["credential_provider"] = _FilePassword(opts.password_file)
        if opts.url.startswith("redis+sentinel://"):
            self.client = _sentinel_client(opts, common)
        else:
            if opts.url.startswith("rediss://") and opts.ca_file:
                common["ssl_ca_certs"] = opts.ca_file
            self.client = redis.Redis.from_url(opts.url, **common)
        self.prefix = prefix
        self.retry_after = retry_after
        self._open_until = 0.0
        self.failures = 0
        self.problem: str | None = None
        self.refused: str | None = None  # a permanent refusal (Redis Cluster): never used
        self._on_state = on_state
        self._logged: str | None = None

    def probe(self) -> None:
        """Check once at start: reachable, the credentials work, and not a Redis Cluster."""
        try:
            info = self.client.info("cluster")
        except self._errors as e:
            self._fail("probe", e)
            return
        if str(info.get("cluster_enabled", "0")) == "1":
            self.refused = (
                f"Redis at {_safe(self.url)} is a Redis Cluster, which is not supported (the bundle's keys are not "
                "hash-tagged): point redis_url at a standalone or Sentinel-managed Redis; sharing through Redis is off"
            )
            log.error("%s", self.refused)
            self._state(self.refused)
            return
        self._ok()

    @property
    def available(self) -> bool:
        return self.refused is None and time.monotonic() >= self._open_until

    def _state(self, problem: str | None) -> None:
        self.problem = problem
        if self._on_state is not None:
            self._on_state(problem)

    def _ok(self) -> None:
        if self.problem is not None and self.refused is None:
            log.info("redis at %s answers again; sharing through Redis is back on", _safe(self.url))
            self._logged = None
            self._state(None)

    def _fail(self, op: str, e: Exception) -> None:
        self.failures += 1
        problem = describe_failure(e, self.url)
        if "Redis Cluster" in problem:
            self.refused = problem
        if problem != self._logged:  # once per distinct problem, not every retry
            log.error("redis %s failed: %s; using the in-process cache until it is fixed", op, problem)
            self._logged = problem
        self._state(problem)
        self._open_until = time.monotonic() + self.retry_after

    def ping(self) -> None:
        """Check now (at most once per circuit interval while failing), for health checks."""
        if not self.available:
            return
        try:
            self.client.ping()
        except self._errors as e:
            self._fail("ping", e)
            return
        self._ok()

    def get(self, key: str) -> bytes | None:
        if not self.available:
            return None
        try:
            value = self.client.get(self.prefix + key)
        except self._errors as e:
            self._fail("get", e)
            return None
        self._ok()
        return value.encode() if isinstance(value, str) else value

    def set(self, key: str, value: bytes, ttl: float) -> None:
        if not self.available:
            return
        try:
            self.client.set(self.prefix + key, value, px=_ms(ttl))
        except self._errors as e:
            self._fail("set", e)
            return
        self._ok()

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """SET NX; StoreUnavailable (a ConnectionError) when Redis cannot answer."""
        return bool(self._strict("add", lambda: self.client.set(self.prefix + key, value, px=_ms(ttl), nx=True)))

    def _strict(self, op: str, call: Callable[[], Any]) -> Any:
        """One call that raises StoreUnavailable instead of degrading to 'not there'."""
        if not self.available:
            raise StoreUnavailable(self.refused or self.problem or "redis unavailable")
        try:
            result = call()
        except self._errors as e:
            self._fail(op, e)
            raise StoreUnavailable(describe_failure(e, self.url)) from None
        self._ok()
        return result

    def get_strict(self, key: str) -> bytes | None:
        value = self._strict("get", lambda: self.client.get(self.prefix + key))
        return value.encode() if isinstance(value, str) else value

    def set_strict(self, key: str, value: bytes, ttl: float) -> None:
        self._strict("set", lambda: self.client.set(self.prefix + key, value, px=_ms(ttl)))

    def delete_strict(self, key: str) -> None:
        self._strict("delete", lambda: self.client.delete(self.prefix + key))

    def claim(self, key: str, token: bytes, ttl: float) -> Claim:
        """Claim a key against Redis (see Claim); SharedUnavailable when Redis cannot answer."""
        if not self.available:
            raise SharedUnavailable(self.refused or self.problem or "redis unavailable")
        try:
            answer = self.client.eval(_CLAIM_SCRIPT, 1, self.prefix + key, token, max(1, int(ttl * 1000)))
        except self._errors as e:
            self._fail("claim", e)
            raise SharedUnavailable(self.problem or "redis unavailable") from None
        self._ok()
        claim = Claim(answer.decode() if isinstance(answer, bytes) else str(answer))
        if claim is Claim.FOREIGN:
            log.warning(
                "replaced %s%s in Redis: it had no TTL or a longer one than the bundle ever sets (%gs), so "
                "someone else wrote it; something in openfaas-fn is writing Redis",
                self.prefix,
                key,
                ttl,
            )
        return claim

    def delete(self, key: str) -> None:
        if not self.available:
            return
        try:
            self.client.delete(self.prefix + key)
        except self._errors as e:
            self._fail("delete", e)


class LayeredCache:
    """Reads Redis first and the local map second; writes both. Locks fall back to local ones."""

    def __init__(self, shared: RedisCache | None, local: MemoryCache | None = None) -> None:
        self.shared = shared
        self.local = local or MemoryCache()

    def get(self, key: str) -> bytes | None:
        if self.shared is not None:
            value = self.shared.get(key)
            if value is not None:
                return value
        return self.local.get(key)

    def set(self, key: str, value: bytes, ttl: float) -> None:
        self.local.set(key, value, ttl)
        if self.shared is not None:
            self.shared.set(key, value, ttl)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        if self.shared is not None:
            try:
                return self.shared.add(key, value, ttl)
            except ConnectionError:
                pass
        return self.local.add(key, value, ttl)

    def claim(self, key: str, token: bytes, ttl: float, *, fallback: bool = True) -> Claim:
        """Redis when configured (else the in-process map, the only lock there is then).

        Redis configured but down: `fallback` throttles and locks fall back to this
        process (each replica then throttles itself); a lease (`fallback=False`) raises
        SharedUnavailable, because an in-process lease would let two replicas step at once.
        """
        if self.shared is not None:
            try:
                return self.shared.claim(key, token, ttl)
            except SharedUnavailable:
                if not fallback:
                    raise
        return self.local.claim(key, token, ttl)

    def delete(self, key: str) -> None:
        self.local.delete(key)
        if self.shared is not None:
            self.shared.delete(key)


def _ms(ttl: float) -> int:
    return max(1, int(ttl * 1000))


class SharedStore:
    """State every replica must agree on: Redis only when Redis is configured, never a local copy.

    Sign-in sessions, their revocations and used sign-in flows live here. With Redis
    configured, an unreachable Redis raises StoreUnavailable (the caller answers "sign in
    again" or "sign-out failed", never a stale or per-replica answer). Only with no Redis
    configured at all (one replica, `make run` without Redis) is the process map the store.
    """

    def __init__(self, cache: Cache) -> None:
        self.redis: RedisCache | None = cache.shared if isinstance(cache, LayeredCache) else None
        self.local: Cache = cache.local if isinstance(cache, LayeredCache) else cache

    def get(self, key: str) -> bytes | None:
        return self.redis.get_strict(key) if self.redis is not None else self.local.get(key)

    def set(self, key: str, value: bytes, ttl: float) -> None:
        if self.redis is not None:
            self.redis.set_strict(key, value, ttl)
        else:
            self.local.set(key, value, ttl)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        return self.redis.add(key, value, ttl) if self.redis is not None else self.local.add(key, value, ttl)

    def delete(self, key: str) -> None:
        if self.redis is not None:
            self.redis.delete_strict(key)
        else:
            self.local.delete(key)


def make_cache(
    redis: str | RedisOptions,
    prefix: str = "openfaas-iam:",
    on_state: Callable[[str | None], None] | None = None,
    probe: bool = False,
) -> LayeredCache:
    url = redis.url if isinstance(redis, RedisOptions) else redis
    if not url:
        return LayeredCache(None)
    shared = RedisCache(redis, prefix, on_state=on_state)
    if probe:
        shared.probe()
    return LayeredCache(shared)
