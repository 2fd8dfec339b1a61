"""The shared cache: Redis when configured and healthy, an in-process map otherwise.

Redis is an optimisation, never a dependency: every call has a short timeout, a
failure opens a circuit for a few seconds (no request waits on a dead Redis twice),
and the in-process cache keeps answering meanwhile. The circuit closes by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("openfaas_iam.cache")


class Cache(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes, ttl: float) -> None: ...
    def add(self, key: str, value: bytes, ttl: float) -> bool:
        """Set only if absent (a lock or throttle); True when this caller set it."""
        ...

    def delete(self, key: str) -> None: ...


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

    def delete(self, key: str) -> None:
        self._data.pop(key, None)


class RedisCache:
    """Redis with a circuit breaker; every method degrades to 'not there' when Redis is down."""

    def __init__(
        self, url: str, prefix: str = "openfaas-iam:", timeout: float = 0.25, retry_after: float = 5.0
    ) -> None:
        import redis

        self._errors = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30
        )
        self.prefix = prefix
        self.retry_after = retry_after
        self._open_until = 0.0
        self.failures = 0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._open_until

    def _fail(self, op: str, e: Exception) -> None:
        self.failures += 1
        if self.available:
            log.warning(
                "redis %s failed (%s); using the in-process cache for %gs", op, type(e).__name__, self.retry_after
            )
        self._open_until = time.monotonic() + self.retry_after

    def get(self, key: str) -> bytes | None:
        if not self.available:
            return None
        try:
            value = self.client.get(self.prefix + key)
        except self._errors as e:
            self._fail("get", e)
            return None
        return value.encode() if isinstance(value, str) else value

    def set(self, key: str, value: bytes, ttl: float) -> None:
        if not self.available:
            return
        try:
            self.client.set(self.prefix + key, value, px=max(1, int(ttl * 1000)))
        except self._errors as e:
            self._fail("set", e)

    def add(self, key: str, value: bytes, ttl: float) -> bool:
        if not self.available:
            raise ConnectionError("redis unavailable")
        try:
            return bool(self.client.set(self.prefix + key, value, px=max(1, int(ttl * 1000)), nx=True))
        except self._errors as e:
            self._fail("add", e)
            raise ConnectionError("redis unavailable") from None

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

    def delete(self, key: str) -> None:
        self.local.delete(key)
        if self.shared is not None:
            self.shared.delete(key)


def make_cache(redis_url: str, prefix: str = "openfaas-iam:") -> LayeredCache:
    return LayeredCache(RedisCache(redis_url, prefix) if redis_url else None)
