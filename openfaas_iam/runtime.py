"""The long-lived objects a function builds once from its Settings and shares across requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from .config_source import file_config_source
from .discovery import IssuerDiscovery
from .jwks_cache import CachePolicy, JwksCache
from .keyset import Keyset, read_keyset_file
from .metrics import Metrics
from .objects import IamConfig
from .outbound import Fetcher
from .settings import Settings
from .stores.cache import LayeredCache, make_cache
from .watched_file import WatchedFile

OWN_JWKS_KEY = "own-jwks"


@dataclass
class Runtime:
    settings: Settings
    cache: LayeredCache
    config: WatchedFile[IamConfig]
    keyset: WatchedFile[Keyset]
    jwks: JwksCache
    metrics: Metrics = field(default_factory=Metrics)

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
            config=file_config_source(settings.iam_config_path),
            keyset=WatchedFile(
                settings.secret_path(settings.signing_keys_secret), read_keyset_file, what="signing keyset"
            ),
            jwks=jwks,
            metrics=metrics,
        )
