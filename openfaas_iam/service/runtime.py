"""The long-lived objects a function builds once from its Settings and shares across requests."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from openfaas_iam.errors import StoreError
from openfaas_iam.jose.keyset import Keyset, PublicKeys, read_keyset_file, read_public_keys_file
from openfaas_iam.observability.metrics import Metrics
from openfaas_iam.oidc.cache_auth import EntrySealer
from openfaas_iam.oidc.discovery import IssuerDiscovery
from openfaas_iam.oidc.jwks_cache import CachePolicy, JwksCache
from openfaas_iam.oidc.outbound import Fetcher
from openfaas_iam.service.config_source import ConfigSource, KubernetesConfigSource, file_config_source
from openfaas_iam.settings import Settings
from openfaas_iam.stores.cache import LayeredCache, RedisOptions, make_cache
from openfaas_iam.stores.watched_file import Unavailable, WatchedFile


def config_source(settings: Settings) -> ConfigSource:
    """`iam_config: kubernetes` reads the custom resources; anything else is a mounted file."""
    if settings.iam_config == "kubernetes":
        from openfaas_iam.stores.kubernetes import KubernetesClient

        return KubernetesConfigSource(KubernetesClient(), settings.iam_namespace, background=True)
    return file_config_source(
        settings.iam_config_path, background=True, child_process=settings.config_reload == "process"
    )


def _read_bytes_key(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read().strip()


@dataclass
class Runtime:
    """Built once per function process.

    The bundle's own public keys come only from its mounts: the public keyset
    (`iam-public-keys`) and, where it is mounted (iam-token, iam-rotate), the private
    keyset. Nothing read from Redis is ever a key the bundle trusts.
    """

    settings: Settings
    cache: LayeredCache
    config: ConfigSource
    keyset: WatchedFile[Keyset]
    public: WatchedFile[PublicKeys]
    jwks: JwksCache
    metrics: Metrics = field(default_factory=Metrics)
    _own_keys: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _own_sources: tuple[int, int] = field(default=(0, 0), repr=False)

    def own_public_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The bundle's public keys: the mounted public keyset plus the mounted private one, if any.

        Both are mounts only the bundle's own functions have; iam-rotate publishes every
        key in the public keyset long before it signs, so a mount that updates late still
        knows every key that signs (docs/rotation.md).
        """
        keys: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        for source in (self.public, self.keyset):
            try:
                value = source.get()
            except Unavailable as e:
                problems.append(str(e))
                continue
            jwks = value.jwks if isinstance(value, PublicKeys) else value.public_jwks()
            for k in jwks["keys"]:
                keys.setdefault(k["kid"], k)
        if not keys:
            raise Unavailable("; ".join(problems) or "no signing keys are mounted")
        return {"keys": list(keys.values())}

    def health(self) -> dict[str, Any]:
        """`/healthz`: "degraded" with the reason when the configured Redis is not usable.

        Redis is an optimisation (the functions keep working without it), so this never
        fails the probe; it says loudly what to fix instead.
        """
        out: dict[str, Any] = {"status": "ok", **self._public_view()}
        shared = self.cache.shared
        if shared is None:
            out["redis"] = {"state": "not configured"}
            return out
        shared.ping()
        problem = shared.refused or shared.problem
        out["redis"] = {"state": "refused" if shared.refused else ("failing" if problem else "ok")}
        if problem:
            out["status"] = "degraded"
            out["redis"]["reason"] = problem
        return out

    def own_public_keys(self) -> Mapping[str, Any]:
        """kid -> public key for verifying the bundle's own tokens (parsed once per mount change)."""
        for source in (self.public, self.keyset):
            with contextlib.suppress(Unavailable):
                source.get()  # a stat at most once a second; bumps `generation` on a change
        sources = (self.public.generation, self.keyset.generation)
        if sources != self._own_sources or not self._own_keys:
            jwks = self.own_public_jwks()
            parsed: dict[str, Any] = {}
            for k in jwks["keys"]:
                try:
                    parsed[k["kid"]] = jwt.PyJWK(k, algorithm="ES256").key
                except (jwt.PyJWKError, ValueError, KeyError):
                    continue
            self._own_keys, self._own_sources = parsed, sources
        return self._own_keys

    def _public_view(self) -> dict[str, Any]:
        """What anyone may see in `/healthz`: whether the configuration is valid and key ages.

        No problem text (it names policies and fields): that is in the authenticated status.
        """
        config = self.config_state()
        return {
            "config": {
                "loaded": config["loaded"] is not None,
                "valid": not config["problems"],
                "generation": config["generation"],
            },
            "keys": self.key_ages(),
        }

    def status(self) -> dict[str, Any]:
        """The operator's view of this replica (authenticated callers only): config problems in full."""
        health = self.health()
        return {
            "ready": self.config_state()["loaded"] is not None,
            "config": self.config_state(),
            "keys": health["keys"],
            "redis": health["redis"],
        }

    def collect(self, metrics: Metrics) -> None:
        """Scrape-time gauges: the configuration's state and the mounted keysets' ages.

        Read when Prometheus asks (a stat at most once a second each), not kept up to date
        on every request, so the hot paths pay nothing for them.
        """
        shared = self.cache.shared
        metrics.set("openfaas_iam_redis_configured", 1.0 if shared is not None else 0.0)
        if shared is not None:  # the last known state (the circuit breaker's), no extra round trip
            metrics.set("openfaas_iam_redis_up", 0.0 if (shared.refused or shared.problem) else 1.0)
        config = self.config_state()
        metrics.set("openfaas_iam_config_loaded", 1.0 if config["loaded"] else 0.0)
        metrics.set("openfaas_iam_config_valid", 0.0 if config["problems"] else 1.0)
        metrics.set("openfaas_iam_config_generation", float(config["generation"]))
        for name, key in self.key_ages().items():
            metrics.set("openfaas_iam_keyset_generation", float(key["generation"]), keyset=name)
            if key.get("age_seconds") is not None:
                metrics.set("openfaas_iam_signing_key_age_seconds", key["age_seconds"], keyset=name)
            if key.get("current_since") is not None:
                metrics.set(
                    "openfaas_iam_signing_key_last_rotation_timestamp_seconds", key["current_since"], keyset=name
                )

    def config_state(self) -> dict[str, Any]:
        """The IAM configuration in force: loaded or not, its generation, the newest one's problems."""
        loaded: dict[str, int] | None
        try:
            config = self.config.get()
            loaded = {"issuers": len(config.issuers), "policies": len(config.policies), "roles": len(config.roles)}
        except Unavailable as e:
            return {"loaded": None, "generation": self.config.generation, "problems": str(e), "in_force": "none"}
        problems = self.config.last_error
        return {
            "loaded": loaded,
            "generation": self.config.generation,
            "problems": problems,
            "in_force": "last good" if problems else "current",
        }

    def key_ages(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """What this function's mounts say about the signing keys: generation, current kid and age.

        Only the keysets this function mounts (every function the public one; iam-token and
        iam-rotate the private one too); an unmounted or unreadable one is left out. Times
        come from the keyset itself (`created_at`, `activated_at`), never from file times.
        """
        now = time.time() if now is None else now
        out: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(Unavailable):
            public = self.public.get()
            out["public"] = {"generation": public.generation, **_ages(public.current, now)}
        with contextlib.suppress(Unavailable, StoreError):
            keyset = self.keyset.get()
            current = keyset.current
            since = current.activated_at if current.activated_at is not None else current.created_at
            out["signing"] = {
                "generation": keyset.generation,
                **_ages({"kid": current.kid, "created_at": current.created_at, "activated_at": since}, now),
            }
        return out

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        metrics = Metrics()

        def redis_state(problem: str | None) -> None:
            metrics.set("openfaas_iam_redis_up", 0.0 if problem else 1.0)

        password = settings.secret_path(settings.redis_password_secret)
        ca = settings.secret_path(settings.redis_ca_secret)
        options = RedisOptions(
            settings.redis_url,
            password_file=password if os.path.exists(password) else None,
            ca_file=ca if os.path.exists(ca) else None,
        )
        cache = make_cache(options, settings.redis_prefix, on_state=redis_state, probe=True)
        fetcher = Fetcher(
            timeout=settings.fetch_timeout, ca_bundle=settings.ca_bundle, allow_insecure=settings.allow_insecure_issuers
        )
        cache_key = WatchedFile(settings.secret_path(settings.cache_key_secret), _read_bytes_key, what="cache key")

        def current_cache_key() -> bytes | None:
            try:
                return cache_key.get() or None
            except Unavailable:
                return None

        jwks = JwksCache(
            IssuerDiscovery(fetcher, settings.service_account_dir),
            cache,
            policy=CachePolicy(max_stale=settings.jwks_max_stale, refetch_interval=settings.jwks_refetch_interval),
            metrics=metrics,
            sealer=EntrySealer(current_cache_key),
        )
        runtime = cls(
            settings=settings,
            cache=cache,
            config=config_source(settings),
            keyset=WatchedFile(
                settings.secret_path(settings.signing_keys_secret), read_keyset_file, what="signing keyset"
            ),
            public=WatchedFile(
                settings.secret_path(settings.public_keys_secret), read_public_keys_file, what="public keyset"
            ),
            jwks=jwks,
            metrics=metrics,
        )
        metrics.on_collect(runtime.collect)
        return runtime


def _ages(current: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
    """kid, age and start of signing of a keyset's current key, when the keyset records them."""
    if not current:
        return {}
    created = current.get("created_at")
    since = current.get("activated_at") or created
    return {
        "current_kid": current.get("kid"),
        "age_seconds": max(0.0, now - float(created)) if created else None,
        "current_since": float(since) if since else None,
    }
