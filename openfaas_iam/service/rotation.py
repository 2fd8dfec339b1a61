"""Scheduled signing-key rotation that never invalidates a live token, over late mounts.

`run()` is what cron-connector triggers: a rotation step when one is due, nothing
otherwise, so running twice in a row or twice at once is safe. The rotator cannot
read what it wrote (the gateway's secrets API never returns a value); it reads its own
mounted copy, which the kubelet updates up to `mount_sync_allowance` late. So:

- every keyset carries a `generation`; the step from generation G writes G+1, and only
  the holder of the lease for G+1 may write it (a process-local lock, plus a lease in
  the shared cache across replicas: a random owner token with a TTL; a key there with no
  TTL or a longer one was planted and is replaced; Redis configured but unreachable means
  no step at all, never a step without the lease);
- after writing G+1 this process waits until its mount shows G+1 before it decides
  anything again; a stale view never steps twice;
- a key signs only once it has been in the mounted *public* keyset for at least
  `publish_lead` (mount delay + the JWKS max-age external verifiers cache): forced
  rotations included, so two forced rotations in a row cannot make a key sign that
  some verifier has not seen yet;
- a retired key stays published for the longest token lifetime + leeway + mount delay;
- a private keyset whose next key is missing from the mounted public keyset long after
  the mount could explain it (two racing writers interleaved their public and private
  writes) is healed: the public keyset is republished from the private one, and the next
  key's publish lead starts again then.

A lease lost to a Redis that was flushed can at worst make two runs step from the same
generation: both produce the same current and retired keys (only the unused next key
differs), so no live token can fail, and the heal above repairs the next key (docs/rotation.md).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from openfaas_iam.jose.keyset import NEXT, Keyset, PublicKeys, prune, rotate, rotation_due
from openfaas_iam.stores.cache import Claim, SharedUnavailable

log = logging.getLogger("openfaas_iam.service.rotation")


class Store(Protocol):
    name: str

    def read(self) -> Keyset: ...
    def public_view(self) -> PublicKeys | None: ...
    def write(self, keyset: Keyset) -> None: ...


class Lease(Protocol):
    def claim(self, key: str, token: bytes, ttl: float, *, fallback: bool = True) -> Claim: ...


# Why a run took no step although one was wanted (RotationResult.refusal); the handler maps each to a status.
LEASE_HELD = "lease_held"  # another run holds the lease on this generation
LEASE_UNAVAILABLE = "lease_unavailable"  # Redis is configured but cannot be checked: no step without the lease


@dataclass
class RotationResult:
    rotated: bool
    reason: str
    current: str
    generation: int
    keys: list[dict[str, Any]] = field(default_factory=list)
    retry_after: float | None = None  # a step was wanted but is not safe yet
    refusal: str | None = None  # LEASE_HELD / LEASE_UNAVAILABLE: a step was wanted but not taken

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rotated": self.rotated,
            "reason": self.reason,
            "current": self.current,
            "generation": self.generation,
            "keys": self.keys,
        }
        if self.refusal is not None:
            out["refusal"] = self.refusal
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
        # Who holds a lease: a retry by this process after a failed write may take it again;
        # anything else in the lease key is another run's (or, without a TTL, nobody's).
        self._token = secrets.token_hex(16).encode()
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
        if (healed := self._heal(view, now, force)) is not None:
            return healed  # on every run, due or not: the next key's publish lead starts now, not when due
        if not force and not rotation_due(view, now, self.interval):
            pruned = prune(view, now, self.retire_after())
            if pruned is view:
                return self._done(False, "not due", view, now)
            if (refused := self._claim(pruned.generation, force, view, now)) is not None:
                return refused
            self._write(pruned)
            return self._done(False, "not due; removed retired keys whose tokens have expired", pruned, now)
        wait = self._publish_wait(view, now)
        if wait is not None:
            seconds, why = wait
            return self._done(False, why, view, now, retry_after=seconds)
        new = rotate(view, now, self.retire_after())
        if (refused := self._claim(new.generation, force, view, now)) is not None:
            return refused
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

    def _heal(self, view: Keyset, now: float, force: bool) -> RotationResult | None:
        """Republish the public keyset when it lacks the private keyset's next key for good.

        A late mount explains a missing next key only for `publish_lead` (> the mount delay)
        after the key was made. Past that, the public keyset was overwritten by a writer whose
        private write lost the race (two steps from one generation, say while the lease
        could not be checked): waiting would stall rotation for ever. The repair is one more
        generation holding the same keys, the next key dated now, written public first: its
        publish lead starts when verifiers can first see it, and no key that signed changes.
        """
        nxt = next((k for k in view.keys if k.state == NEXT), None)
        public = self.store.public_view()
        if nxt is None or public is None or nxt.kid in public.kids or now < nxt.created_at + self.publish_lead:
            return None
        keys = [replace(k, created_at=now) if k.kid == nxt.kid else k for k in view.keys]
        healed = view.replace_keys(keys)
        if (refused := self._claim(healed.generation, force, view, now)) is not None:
            return refused
        self._write(healed)
        log.error(
            "rotation: the mounted public keyset (generation %d) lacks the next key %s of the private keyset "
            "(generation %d) %ds after it was made; republished both as generation %d",
            public.generation,
            nxt.kid,
            view.generation,
            int(now - nxt.created_at),
            healed.generation,
        )
        return self._done(
            False,
            f"the public keyset lacked the next key {nxt.kid}; republished it from the private keyset as generation "
            f"{healed.generation}; it may sign after the publish lead ({self.publish_lead:g}s)",
            healed,
            now,
            retry_after=self.publish_lead,
        )

    def _claim(self, generation: int, force: bool, view: Keyset, now: float) -> RotationResult | None:
        """Take the lease on writing `generation` (one writer per generation across replicas).

        None when taken; otherwise the refusal to answer. Without a shared cache configured
        the process lock is the only one (`make run`, one replica). With Redis configured but
        unreachable, no step is taken: an in-process lease would let two replicas step at
        once. Nothing is lost by waiting: live tokens do not depend on a step.
        """
        if self.lease is None:
            return None
        key = f"rotation-lease:{generation}"
        try:
            claim = self.lease.claim(key, self._token, self.lease_ttl, fallback=False)
        except SharedUnavailable as e:
            log.error("rotation: not stepping to generation %d: the lease cannot be checked: %s", generation, e)
            return self._done(
                False,
                f"Redis is configured but cannot be checked ({e}); no rotation step is taken without the lease "
                "(live tokens are unaffected); retry later",
                view,
                now,
                retry_after=10.0,
                refusal=LEASE_UNAVAILABLE,
            )
        if claim.ok:
            return None
        level = logging.ERROR if force else logging.WARNING
        log.log(level, "rotation: the lease %s is held by another run; not stepping (forced: %s)", key, force)
        return self._done(
            False,
            f"another run holds the lease on generation {generation} ({key}, at most {self.lease_ttl:g}s); "
            "it is writing this step, or the lease was planted in Redis within that TTL",
            view,
            now,
            retry_after=self.lease_ttl,
            refusal=LEASE_HELD,
        )

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
        self,
        rotated: bool,
        reason: str,
        keyset: Keyset,
        now: float,
        retry_after: float | None = None,
        refusal: str | None = None,
    ) -> RotationResult:
        return RotationResult(
            rotated, reason, keyset.current.kid, keyset.generation, describe(keyset, now), retry_after, refusal
        )


def schedule_problem(interval: float, publish_lead: float) -> str | None:
    """Why the schedule cannot be kept (a key must be published `publish_lead` before it signs), if so."""
    if interval < publish_lead:
        return (
            f"rotation_interval ({interval:g}s) is shorter than the publish lead ({publish_lead:g}s = "
            "mount_sync_allowance + own_jwks_max_age): keys will rotate only every publish lead"
        )
    return None
