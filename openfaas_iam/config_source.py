"""Where a function gets its IAM configuration: the mounted file (or, later, the API)."""

from __future__ import annotations

import logging

from .loading import load_paths
from .objects import IamConfig
from .watched_file import WatchedFile

log = logging.getLogger("openfaas_iam.config")


def _load(path: str) -> IamConfig:
    config = load_paths([path])
    log.info(
        "loaded IAM configuration %s: %d issuers, %d policies, %d roles",
        path,
        len(config.issuers),
        len(config.policies),
        len(config.roles),
    )
    return config


def file_config_source(path: str, check_interval: float = 1.0) -> WatchedFile[IamConfig]:
    """IAM objects from a mounted YAML/JSON file, re-read when it changes."""
    return WatchedFile(path, _load, what="IAM configuration", check_interval=check_interval)
