"""Where a function gets its IAM configuration: the mounted file, or the Kubernetes API.

Both keep the last good configuration when a new one is invalid, and both re-read
without a restart: the file when it changes, the API every `poll_interval`.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from openfaas_iam.engine.policy import policy_index
from openfaas_iam.engine.roles import role_matcher
from openfaas_iam.errors import ConfigError, StoreError
from openfaas_iam.model.loading import load_mapping_documents, load_paths
from openfaas_iam.model.objects import IamConfig
from openfaas_iam.service.config_process import DEFAULT_DEADLINE, ChildProcessLoader
from openfaas_iam.stores.watched_file import Unavailable, WatchedFile

if TYPE_CHECKING:  # not imported at run time: the loader child (config_process.py) stays small without `requests`
    from openfaas_iam.stores.kubernetes import KubernetesClient

log = logging.getLogger("openfaas_iam.config")
GROUP_VERSION = "iam.openfaas.com/v1"
PLURALS = ("jwtissuers", "policies", "roles")


class ConfigSource(Protocol):
    generation: int
    last_error: str | None

    def get(self) -> IamConfig: ...


def paused_gc(load: Callable[[], IamConfig]) -> IamConfig:
    """Run `load` with the cyclic collector paused: building a large configuration allocates
    millions of objects, and each full collection it triggered walked them all while holding
    the GIL, stalling the requests served meanwhile by 100 ms and more. Requests make little
    cyclic garbage in the seconds a load takes; `prepared` then freezes what was built."""
    was = gc.isenabled()
    gc.disable()
    try:
        return load()
    finally:
        if was:
            gc.enable()


def prepared(config: IamConfig) -> IamConfig:
    """The configuration with its Role and Policy indexes built, so they are built by the loader
    (in the background, before the swap) rather than by the first request that needs them.

    Then `gc.freeze()`: a 10,000-Role configuration is millions of long-lived objects, and
    every full collection walked them all, a pause of tens of ms in whichever request
    triggered it (issue 16's p99). Frozen objects are skipped by the cyclic collector and
    still freed by reference counting: a configuration holds no cycles (a test checks), so
    the one replaced is freed when the last request using it ends.
    """
    role_matcher(config)
    policy_index(config)
    gc.freeze()
    _release_free_memory()
    return config


def _trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None
    return trim


_MALLOC_TRIM = _trim()


def _release_free_memory() -> None:
    """Hand the parse's freed memory back to the system (glibc's `malloc_trim`).

    Parsing a large configuration allocates several times what the result keeps (the text,
    its JSON or YAML tree); freed, that memory stayed in the process's heap, so a replica's
    resident size after a load was the load's peak, not what it holds (14 MiB of 112 for
    10,000 Roles; docs/scaling.md). Python's own small-object arenas are returned by Python
    itself when empty; this covers the rest.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def load_prepared(path: str) -> IamConfig:
    """The configuration file parsed, validated and prepared: in-process, or in the loader child."""
    return paused_gc(lambda: prepared(load_paths([path])))


def _log_loaded(path: str, config: IamConfig, how: str) -> None:
    log.info(
        "loaded IAM configuration %s (%s): %d issuers, %d policies, %d roles",
        path,
        how,
        len(config.issuers),
        len(config.policies),
        len(config.roles),
    )


def _load(path: str) -> IamConfig:
    config = load_prepared(path)
    _log_loaded(path, config, "in-process")
    return config


class FileConfigSource(WatchedFile[IamConfig]):
    """The mounted file; with `loader`, a changed file is parsed in a child process (see
    config_process.py) while the first load, with nothing to serve yet, stays in-process."""

    def __init__(
        self, path: str, check_interval: float, *, background: bool, loader: ChildProcessLoader | None
    ) -> None:
        self.loader = loader
        super().__init__(
            path,
            _load,
            what="IAM configuration",
            check_interval=check_interval,
            background=background,
            background_parse=self._load_in_child if loader is not None else None,
        )

    def _load_in_child(self, path: str) -> IamConfig:
        assert self.loader is not None
        config = self.loader.load(path)
        timings = self.loader.last_timings
        _log_loaded(
            path, config, f"child process {timings['child']:.1f}s, hand-over {timings['unpickle'] * 1000:.0f} ms"
        )
        return config

    def close(self) -> None:
        """Stop any loader child (the function is exiting; tests)."""
        if self.loader is not None:
            self.loader.close()


def file_config_source(
    path: str,
    check_interval: float = 1.0,
    *,
    background: bool = False,
    child_process: bool = False,
    deadline: float = DEFAULT_DEADLINE,
) -> FileConfigSource:
    """IAM objects from a mounted YAML/JSON file, re-read when it changes.

    `background` (the functions): a change is parsed off the request path (see WatchedFile), in a
    thread, or with `child_process` in a child process killed after `deadline` (config_process.py).
    The functions choose with the `config_reload` setting, `process` by default (runtime.py): with
    10,000 Roles the function and its child peak at 204 MiB of the 256Mi limit (docs/scaling.md).
    The keyword's own default stays False for the callers that load once (CLI, tools, tests).
    """
    loader = ChildProcessLoader(deadline) if background and child_process else None
    return FileConfigSource(path, check_interval, background=background, loader=loader)


class KubernetesConfigSource:
    """JwtIssuer, Policy and Role custom resources listed from the API (read RBAC in deploy/)."""

    def __init__(
        self,
        client: KubernetesClient,
        namespace: str,
        *,
        poll_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
    ) -> None:
        """`background` (the functions): polls and parses run in a thread while requests keep the
        configuration in force; only the first load is waited for."""
        self.client = client
        self.background = background
        self._polling = False
        self.namespace = namespace
        self.poll_interval = poll_interval
        self.clock = clock
        self._config: IamConfig | None = None
        self._next = 0.0
        self._lock = threading.Lock()
        self._versions: tuple[str, ...] = ()
        self.generation = 0
        self.last_error: str | None = None

    def get(self) -> IamConfig:
        now = self.clock()
        if self.background and self._config is not None:
            if now >= self._next and not self._polling and self._lock.acquire(blocking=False):
                try:
                    if now >= self._next and not self._polling:
                        self._next = now + self.poll_interval
                        self._polling = True
                        threading.Thread(target=self._poll_in_background, daemon=True).start()
                finally:
                    self._lock.release()
            return self._config
        if now >= self._next or self._config is None:  # first load: everyone waits for it
            with self._lock:
                if now >= self._next:
                    self._next = now + self.poll_interval
                    self._poll()
        if self._config is None:
            raise Unavailable(self.last_error or "no IAM configuration loaded from the Kubernetes API yet")
        return self._config

    def _poll_in_background(self) -> None:
        try:
            self._poll()
        finally:
            self._polling = False

    def _poll(self) -> None:
        items: list[dict[str, Any]] = []
        versions: list[str] = []
        try:
            for plural in PLURALS:
                doc = self.client.request(
                    "GET", f"/apis/{GROUP_VERSION}/namespaces/{self.namespace}/{plural}", what=f"listing {plural}"
                )
                versions.append(str(doc.get("metadata", {}).get("resourceVersion", "")))
                items.extend(doc.get("items") or [])
        except StoreError as e:
            self.last_error = str(e)
            log.error(
                "IAM configuration from the Kubernetes API unavailable (%s): %s",
                "keeping the last good" if self._config else "none loaded",
                e,
            )
            return
        if tuple(versions) == self._versions and self._config is not None:
            return
        try:
            source = f"Kubernetes API namespace {self.namespace}"
            config = paused_gc(lambda: prepared(load_mapping_documents(items, source)))
        except ConfigError as e:
            self.last_error = str(e)
            log.error(
                "IAM objects in namespace %s are invalid (keeping the last good configuration):\n%s", self.namespace, e
            )
            return
        self._versions = tuple(versions)
        self._config = config
        self.generation += 1
        self.last_error = None
        log.info(
            "loaded IAM configuration from the Kubernetes API: %d issuers, %d policies, %d roles",
            len(config.issuers),
            len(config.policies),
            len(config.roles),
        )
