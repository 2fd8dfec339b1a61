"""Scheduled signing-key rotation that never invalidates a live token, over late mounts.

`run()` is what cron-connector triggers: a rotation step when one is due, nothing
otherwise, so running twice in a row or twice at once is safe. The rotator cannot
read what it wrote (the gateway's secrets API never returns a value); it reads its own
mounted copy, which the kubelet updates up to `mount_sync_allowance` late. So:

- every keyset carries a `generation`; the step from generation G writes G+1, and only
  the holder of the lease for G+1 may write it (a process-local lock, plus a lease in
  the shared cache across replicas);
- after writing G+1 this process waits until its mount shows G+1 before it decides
  anything again; a stale view never steps twice;
- a key signs only once it has been in the mounted *public* keyset for at least
  `publish_lead` (mount delay + the JWKS max-age external verifiers cache): forced
  rotations included, so two forced rotations in a row cannot make a key sign that
  some verifier has not seen yet;
- a retired key stays published for the longest token lifetime + leeway + mount delay.

A lease lost to a Redis that was flushed or written by someone else can at worst make
two runs step from the same generation: both produce the same current and retired keys
(only the unused next key differs), so no live token can fail (docs/rotation.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .keyset import NEXT, Keyset, PublicKeys, prune, rotate, rotation_due

log = logging.getLogger("openfaas_iam.rotation")


class Store(Protocol):
    name: str

    def read(self) -> Keyset: ...
    def public_view(self) -> PublicKeys | None: ...
    def write(self, keyset: Keyset) -> None: ...


class Lease(Protocol):
    def add(self, key: str, value: bytes, ttl: float) -> bool: ...


@dataclass
class RotationResult:
    rotated: bool
    reason: str
    current: str
    generation: int
    keys: list[dict[str, Any]] = field(default_factory=list)
    retry_after: float | None = None  # a step was wanted but is not safe yet

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rotated": self.rotated,
            "reason": self.reason,
            "current": self.current,
            "generation": self.generation,
            "keys": self.keys,
        }
        if self.retry_after is not None:
            out["retry_after_seconds"] = int(self.retry_after) + 1
        return out


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
        store: Store,
        *,
        interval: float,
        retire_after: Callable[[], float],
        publish_lead: float,
        lease: Lease | None = None,
        lease_ttl: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`publish_lead`: how long a key must have been published before it signs."""
        self.store = store
        self.interval = interval
        self.retire_after = retire_after
        self.publish_lead = publish_lead
        self.lease = lease
        self.lease_ttl = lease_ttl if lease_ttl is not None else max(2 * publish_lead, 10.0)
        self.clock = clock
        self._lock = threading.Lock()
        self._written: Keyset | None = None  # the last keyset this process wrote
        self._written_at = 0.0

    def run(self, force: bool = False) -> RotationResult:
        with self._lock:
            return self._run(force)

    def _run(self, force: bool) -> RotationResult:
        view = self.store.read()
        now = self.clock()
        written = self._written
        if written is not None and now > self._written_at + self.lease_ttl:
            written = self._written = None  # the mount has had its time: trust it again (even a re-initialised keyset)
        if written is not None and view.generation < written.generation:
            return self._done(
                False,
                f"generation {written.generation} was written {int(now - self._written_at)}s ago; this pod's "
                f"mount still shows {view.generation} (the kubelet updates it within the mount sync delay)",
                written,
                now,
            )
        if not force and not rotation_due(view, now, self.interval):
            pruned = prune(view, now, self.retire_after())
            if pruned is view:
                return self._done(False, "not due", view, now)
            if not self._claim(pruned.generation):
                return self._done(False, "another run is writing this generation", view, now)
            self._write(pruned)
            return self._done(False, "not due; removed retired keys whose tokens have expired", pruned, now)
        wait = self._publish_wait(view, now)
        if wait is not None:
            seconds, why = wait
            return self._done(False, why, view, now, retry_after=seconds)
        new = rotate(view, now, self.retire_after())
        if not self._claim(new.generation):
            return self._done(False, "rotated concurrently by another run", view, now)
        self._write(new)
        log.info(
            "rotation: generation %d -> %d, current %s -> %s",
            view.generation,
            new.generation,
            view.current.kid,
            new.current.kid,
        )
        return self._done(True, "forced" if force else "due", new, now)

    def _publish_wait(self, view: Keyset, now: float) -> tuple[float, str] | None:
        """Why the next key may not sign yet, and for how long; None when it may."""
        nxt = next((k for k in view.keys if k.state == NEXT), None)
        if nxt is None:
            return None  # a keyset without a next key: rotate() keeps the current one signing
        public = self.store.public_view()
        if public is None or nxt.kid not in public.kids:
            return self.publish_lead, (
                f"the next key {nxt.kid} is not yet in this pod's mounted public keyset; verifiers may not know it"
            )
        ready_at = nxt.created_at + self.publish_lead
        if now < ready_at:
            return ready_at - now, (
                f"the next key {nxt.kid} was published {int(now - nxt.created_at)}s ago; it may sign only after "
                f"{self.publish_lead:g}s (mount sync delay + JWKS max-age), so every verifier has it first"
            )
        return None

    def _claim(self, generation: int) -> bool:
        """The lease on writing `generation` (one writer per generation across replicas)."""
        if self.lease is None:
            return True
        try:
            return self.lease.add(f"rotation-lease:{generation}", b"1", self.lease_ttl)
        except ConnectionError:
            return True  # no shared cache: the process lock and the mount view still hold

    def _write(self, keyset: Keyset) -> None:
        self.store.write(keyset)
        self._written, self._written_at = keyset, self.clock()

    def status(self) -> dict[str, Any]:
        view = self.store.read()
        now = self.clock()
        current = view.current
        started = current.activated_at if current.activated_at is not None else current.created_at
        public = self.store.public_view()
        return {
            "store": self.store.name,
            "generation": view.generation,
            "public_generation": public.generation if public else None,
            "interval_seconds": self.interval,
            "retire_after_seconds": self.retire_after(),
            "publish_lead_seconds": self.publish_lead,
            "next_rotation_in_seconds": max(0, int(started + self.interval - now)),
            "keys": describe(view, now),
        }

    def _done(
        self, rotated: bool, reason: str, keyset: Keyset, now: float, retry_after: float | None = None
    ) -> RotationResult:
        return RotationResult(
            rotated, reason, keyset.current.kid, keyset.generation, describe(keyset, now), retry_after
        )


def schedule_problem(interval: float, publish_lead: float) -> str | None:
    """Why the schedule cannot be kept (a key must be published `publish_lead` before it signs), if so."""
    if interval < publish_lead:
        return (
            f"rotation_interval ({interval:g}s) is shorter than the publish lead ({publish_lead:g}s = "
            "mount_sync_allowance + own_jwks_max_age): keys will rotate only every publish lead"
        )
    return None
