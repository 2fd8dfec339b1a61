"""The long-lived objects a function builds once from its Settings and shares across requests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from . import json_codec
from .config_source import ConfigSource, KubernetesConfigSource, file_config_source
from .discovery import IssuerDiscovery
from .jwks_cache import CachePolicy, JwksCache
from .keyset import Keyset, read_keyset_file
from .metrics import Metrics
from .outbound import Fetcher
from .settings import Settings
from .stores.cache import LayeredCache, make_cache
from .watched_file import Unavailable, WatchedFile

OWN_JWKS_KEY = "own-jwks"


def config_source(settings: Settings) -> ConfigSource:
    """`iam_config: kubernetes` reads the custom resources; anything else is a mounted file."""
    if settings.iam_config == "kubernetes":
        from .stores.kubernetes import KubernetesClient

        return KubernetesConfigSource(KubernetesClient(), settings.iam_namespace)
    return file_config_source(settings.iam_config_path)


@dataclass
class Runtime:
    """Built once per function process; `own_*` merge the mounted keyset with what iam-rotate published."""

    settings: Settings
    cache: LayeredCache
    config: ConfigSource
    keyset: WatchedFile[Keyset]
    jwks: JwksCache
    metrics: Metrics = field(default_factory=Metrics)
    _own_keys: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _own_signature: tuple[str, ...] = field(default=(), repr=False)

    def own_public_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The bundle's public keys: the mounted keyset plus what iam-rotate published to the cache.

        The union matters while the kubelet has not yet updated the mounted secret after
        a rotation: the published set already has the new keys, the file still has the old.
        """
        keys: dict[str, dict[str, Any]] = {}
        published = self.cache.get(OWN_JWKS_KEY)
        if published is not None:
            try:
                for k in json_codec.loads(published).get("keys", []):
                    if isinstance(k, dict) and isinstance(k.get("kid"), str):
                        keys[k["kid"]] = k
            except ValueError:
                pass
        try:
            for k in self.keyset.get().public_jwks()["keys"]:
                keys.setdefault(k["kid"], k)
        except Unavailable:
            if not keys:
                raise
        return {"keys": list(keys.values())}

    def own_public_keys(self) -> Mapping[str, Any]:
        """kid -> public key for verifying the bundle's own tokens (parsed once per change)."""
        jwks = self.own_public_jwks()
        signature = tuple(sorted(k["kid"] for k in jwks["keys"]))
        if signature != self._own_signature:
            parsed: dict[str, Any] = {}
            for k in jwks["keys"]:
                try:
                    parsed[k["kid"]] = jwt.PyJWK(k, algorithm="ES256").key
                except (jwt.PyJWKError, ValueError, KeyError):
                    continue
            self._own_keys, self._own_signature = parsed, signature
        return self._own_keys

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        metrics = Metrics()
        cache = make_cache(settings.redis_url, settings.redis_prefix)
        fetcher = Fetcher(
            timeout=settings.fetch_timeout, ca_bundle=settings.ca_bundle, allow_insecure=settings.allow_insecure_issuers
        )
        jwks = JwksCache(
            IssuerDiscovery(fetcher, settings.service_account_dir),
            cache,
            policy=CachePolicy(max_stale=settings.jwks_max_stale, refetch_interval=settings.jwks_refetch_interval),
            metrics=metrics,
        )
        return cls(
            settings=settings,
            cache=cache,
            config=config_source(settings),
            keyset=WatchedFile(
                settings.secret_path(settings.signing_keys_secret), read_keyset_file, what="signing keyset"
            ),
            jwks=jwks,
            metrics=metrics,
        )
