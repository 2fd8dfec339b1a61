"""Scheduled signing-key rotation that never invalidates a live token.

`run()` is what cron-connector triggers: a rotation step when one is due, nothing
otherwise, so running twice in a row or twice at once is safe. Writes are
compare-and-swap; a lost race re-reads and re-decides (the winner's step makes the
loser's unnecessary). A failed write leaves the stored keyset exactly as it was.
After a successful write the public JWKS is published to the shared cache at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ConflictError, StoreError
from .keyset import Keyset, prune, rotate, rotation_due
from .stores.secrets import KeysetStore

log = logging.getLogger("openfaas_iam.rotation")
MAX_ATTEMPTS = 5


@dataclass
class RotationResult:
    rotated: bool
    reason: str
    current: str
    keys: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"rotated": self.rotated, "reason": self.reason, "current": self.current, "keys": self.keys}


def describe(keyset: Keyset, now: float) -> list[dict[str, Any]]:
    return [
        {
            "kid": k.kid,
            "state": k.state,
            "age_seconds": int(now - k.created_at),
            "activated_at": k.activated_at,
            "retired_at": k.retired_at,
        }
        for k in keyset.keys
    ]


class Rotator:
    def __init__(
        self,
        store: KeysetStore,
        *,
        interval: float,
        retire_after: Callable[[], float],
        publish: Callable[[Keyset], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.interval = interval
        self.retire_after = retire_after
        self.publish = publish
        self.clock = clock

    def run(self, force: bool = False) -> RotationResult:
        first_current: str | None = None
        for _ in range(MAX_ATTEMPTS):
            state = self.store.read()
            now = self.clock()
            current = state.keyset.current.kid
            if first_current is None:
                first_current = current
            elif force and current != first_current:
                # Someone else rotated while we raced them: that was the rotation asked for.
                return self._done(False, "rotated concurrently by another run", state.keyset, now)
            if not force and not rotation_due(state.keyset, now, self.interval):
                pruned = prune(state.keyset, now, self.retire_after())
                if pruned is not state.keyset:
                    try:
                        self.store.write(pruned, state.version)
                        self._publish(pruned)
                        return self._done(False, "not due; removed retired keys whose tokens have expired", pruned, now)
                    except ConflictError:
                        continue
                self._publish(state.keyset)
                return self._done(False, "not due", state.keyset, now)
            new = rotate(state.keyset, now, self.retire_after())
            try:
                self.store.write(new, state.version)
            except ConflictError:
                log.info("rotation: %s changed while rotating; re-reading", self.store.name)
                continue
            log.info(
                "rotation: %s -> current %s (next %s)",
                current,
                new.current.kid,
                [k.kid for k in new.keys if k.state == "next"],
            )
            self._publish(new)
            return self._done(True, "forced" if force else "due", new, now)
        raise StoreError(f"rotation: {self.store.name} kept changing; gave up after {MAX_ATTEMPTS} attempts")

    def status(self) -> dict[str, Any]:
        state = self.store.read()
        now = self.clock()
        current = state.keyset.current
        started = current.activated_at if current.activated_at is not None else current.created_at
        return {
            "store": self.store.name,
            "interval_seconds": self.interval,
            "retire_after_seconds": self.retire_after(),
            "next_rotation_in_seconds": max(0, int(started + self.interval - now)),
            "keys": describe(state.keyset, now),
        }

    def _publish(self, keyset: Keyset) -> None:
        if self.publish is None:
            return
        try:
            self.publish(keyset)
        except Exception as e:  # publishing is an optimisation: the mounted secret catches up
            log.warning("rotation: publishing the JWKS failed (%s); verifiers use the mounted secret", e)

    def _done(self, rotated: bool, reason: str, keyset: Keyset, now: float) -> RotationResult:
        return RotationResult(rotated, reason, keyset.current.kid, describe(keyset, now))


def publisher(cache: Any, key: str, ttl: float) -> Callable[[Keyset], None]:
    def publish(keyset: Keyset) -> None:
        cache.set(key, json.dumps(keyset.public_jwks()).encode(), ttl)

    return publish
