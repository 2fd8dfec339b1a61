"""Issuer keys shared by every replica through Redis, with single-flight refresh.

What this guards against (Vault's JWT auth taught most of it):
- an IdP that rotated keys: an unknown `kid` triggers an immediate refetch, and every
  request that meets the new kid while that fetch is in flight (in this replica or in
  another, seen by its "jwks-fetching" lock) waits for it, bounded, and is decided on the
  fresh keys; adopting a peer's newer entry never takes the refetch slot;
- a flood of random kids: unknown-kid refetches are throttled per issuer across all
  replicas (one per `refetch_interval`), and in each replica on its own (the floor a
  planted throttle key cannot lower or stretch); concurrent ones coalesce into one fetch,
  and so do concurrent cold requests;
- a removed key: each refresh replaces the issuer's key set whole;
- an IdP that is down: stale keys keep verifying up to `max_stale`, then verification
  fails with the reason; a failing IdP is retried at most once per `refetch_interval`,
  so requests never queue behind its time-outs;
- a Redis that is down: the in-process layer answers (see stores/cache.py);
- a Redis anyone can write to (every pod in `openfaas-fn` reaches it on CE): a shared
  entry is used only when its HMAC (keyed by the `iam-cache-key` secret) matches, and
  its times are bounded by what this replica knows (never fetched in the future, never
  fresh for longer than this replica's own maximum TTL). Anything else is ignored,
  counted and logged (once per issuer and reason every few minutes), never used;
- a Redis writer replaying an old sealed entry (the HMAC proves who wrote it, not when):
  an entry is adopted only if it was fetched within `adopt_within` and is newer than any
  key set this replica has held; an adopted entry is never served stale (only a set this
  replica fetched itself is); so a replay can at most hand a replica keys the IdP served
  `adopt_within` ago, never revive a key removed before that;
- a Redis writer planting lock or throttle keys: a key with no TTL or a longer one than
  the bundle sets is foreign and replaced (stores/cache.py `claim`).
Each replica parses a fetched key set once and keeps the parsed keys in memory.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from openfaas_iam import json_codec
from openfaas_iam.errors import DiscoveryError, IssuerUnavailable, KeyUnavailable
from openfaas_iam.model.objects import JwtIssuer
from openfaas_iam.observability.metrics import Metrics
from openfaas_iam.oidc.cache_auth import EntrySealer, OnceLog, Rejected
from openfaas_iam.oidc.discovery import IssuerDiscovery, IssuerKeys, ParsedKey
from openfaas_iam.stores.cache import Cache

log = logging.getLogger("openfaas_iam.jwks")


@dataclass(frozen=True)
class CachePolicy:
    default_ttl: float = 300.0
    min_ttl: float = 30.0
    max_ttl: float = 3600.0
    max_stale: float = 6 * 3600.0
    refetch_interval: float = 5.0
    wait_for_peer: float = 2.0
    clock_skew: float = 30.0  # how far ahead of this replica another replica's clock may be
    # A shared entry is adopted only if fetched this recently. Why 60 s: replicas share a fetch when
    # an IdP rotates because the new kid reaches them within seconds of each other (load-balanced
    # traffic; a peer waits `wait_for_peer` for a fetch in flight); one that meets it later fetches
    # once itself (throttled). Shorter would split that burst into one fetch per replica; longer
    # would let a replayed entry revive a key the IdP removed that much earlier.
    adopt_within: float = 60.0


@dataclass
class _Failure:
    at: float
    reason: str


class JwksCache:
    def __init__(
        self,
        discovery: IssuerDiscovery,
        cache: Cache,
        *,
        policy: CachePolicy | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        sealer: EntrySealer | None = None,
    ) -> None:
        """`sealer`: authenticates shared entries; without one nothing is shared through the cache."""
        self.discovery = discovery
        self.cache = cache
        self.policy = policy or CachePolicy()
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.sealer = sealer
        self._once = OnceLog()
        self._entries: dict[str, IssuerKeys] = {}
        # iss -> the sealed bytes last decided on (adopted, written, or refused) and the cache key they
        # were decided with: the same bytes under the same key are not opened and parsed again.
        self._seen: dict[str, tuple[bytes, bytes | None]] = {}
        # iss -> the sealed bytes a local entry was adopted from (absent: fetched by this replica).
        self._adopted: dict[str, bytes] = {}
        # iss -> the last set this replica fetched itself: the only one it may serve stale.
        self._own: dict[str, IssuerKeys] = {}
        # iss -> the newest fetched_at this replica has held: no shared entry at or below it is adopted.
        self._newest: dict[str, float] = {}
        # iss -> when this replica last refetched for an unknown kid (the throttle Redis cannot lift).
        self._unknown_refetch: dict[str, float] = {}
        self._token = secrets.token_hex(8).encode()
        self._failures: dict[str, _Failure] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._attempts: dict[str, int] = {}  # fetches started per issuer, to tell a waiter its fetch failed
        self._guard = threading.Lock()

    # -- public ---------------------------------------------------------------------------

    def key(self, issuer: JwtIssuer, kid: str | None) -> ParsedKey:
        """The key for (issuer, kid), fetching or refreshing as needed; KeyUnavailable says why not."""
        entry = self._fresh_entry(issuer)
        found = entry.find(kid)
        if found is not None:
            self.metrics.inc("openfaas_iam_jwks_cache_hits_total", issuer=issuer.name)
            return found
        self.metrics.inc("openfaas_iam_jwks_cache_misses_total", issuer=issuer.name)
        # Another replica may already have fetched the rotated keys. Adopting them costs no refetch slot.
        entry = self._adopt_shared(issuer.iss) or entry
        if (found := entry.find(kid)) is not None:
            return found
        try:
            fresh = self._refetch_unknown(issuer, since=entry.fetched_at)
        except DiscoveryError as e:
            raise IssuerUnavailable(
                f"key {kid!r} of issuer {issuer.iss} is unknown and the refetch failed: {e}"
            ) from None
        if fresh is not None and (found := fresh.find(kid)) is not None:
            return found
        what = f"kid {kid!r}" if kid is not None else "a token without kid (several keys, none chosen)"
        raise KeyUnavailable(f"{what} is not in the JWKS of issuer {issuer.iss}")

    def _refetch_unknown(self, issuer: JwtIssuer, since: float) -> IssuerKeys | None:
        """Keys newer than `since` for a token whose kid the newest known set lacks; None if throttled.

        Why it waits rather than fails: when an IdP rotates, every replica meets the new kid
        within moments of the others. Requests in this replica queue on the issuer's lock and
        take the one fetch made under it; a fetch in flight in another replica (its
        "jwks-fetching" lock) is waited for until its entry appears or its lock goes. Only
        then is the throttle asked, so adopting a peer's fresh entry never uses the slot.
        """
        return self._single_flight(issuer, since, unknown_kid=True)

    def _locally_throttled(self, iss: str) -> bool:
        last = self._unknown_refetch.get(iss)
        now = self.clock()
        return last is not None and last <= now < last + self.policy.refetch_interval

    def _may_refetch_unknown(self, iss: str) -> bool:
        """One unknown-kid refetch per issuer per `refetch_interval`, in this replica and across all.

        The local floor holds whatever Redis says (down, flushed, or holding a planted
        throttle); the shared throttle, claimed so that a planted key without a TTL or with
        a longer one is replaced, keeps N replicas from making N fetches. Asked only right
        before a fetch, never to adopt what a peer fetched.
        """
        if self._locally_throttled(iss):
            return False
        if not self.cache.claim(f"jwks-refetch:{iss}", self._token, self.policy.refetch_interval).ok:
            return False
        self._unknown_refetch[iss] = self.clock()
        return True

    def prefetch(self, issuer: JwtIssuer) -> IssuerKeys:
        """Fetch ahead of need (cron, POST /refresh), at most once per refetch interval.

        The endpoints that call this are reachable by anyone through the gateway: the
        interval is what keeps them from being a way to hammer an IdP. Entries this replica
        adopted from the shared cache and can no longer vouch for are dropped first.
        """
        self.vouch(issuer.iss)
        current = self._adopt_shared(issuer.iss) or self._entries.get(issuer.iss)
        if current is not None and self.clock() < current.fetched_at + self.policy.refetch_interval:
            return current
        return self.refresh(issuer, since=current.fetched_at if current else float("-inf"))

    def refresh(self, issuer: JwtIssuer, since: float | None = None) -> IssuerKeys:
        """Fetch now (single-flight per replica, coordinated across replicas through the cache).

        `since`: the fetch time the caller saw (None: whatever this replica holds now, so
        concurrent cold requests share one fetch); a newer entry that appears while
        waiting, here or from a peer, is returned instead of fetching again.
        """
        found = self._single_flight(issuer, since, unknown_kid=False)
        assert found is not None  # only an unknown-kid refetch is ever throttled
        return found

    def _single_flight(self, issuer: JwtIssuer, since: float | None, *, unknown_kid: bool) -> IssuerKeys | None:
        """Keys newer than `since`: from a fetch in flight here or in a peer, else fetched now.

        Bounded wait: requests naming a slow issuer must not queue behind its fetches one after
        another, each holding a thread other issuers' exchanges need. An issuer that failed
        before is not waited for at all while someone fetches it.
        """
        iss = issuer.iss
        if since is None:
            current = self._entries.get(iss)
            since = current.fetched_at if current is not None else float("-inf")
        lock = self._lock(iss)
        attempts = self._attempts.get(iss, 0)
        deadline = time.monotonic() + self.discovery.fetcher.timeout + self.policy.wait_for_peer
        failing = iss in self._failures
        if not lock.acquire(timeout=0 if failing else self.discovery.fetcher.timeout + self.policy.wait_for_peer):
            raise DiscoveryError(f"keys of issuer {iss} are being fetched by another request; try again")
        try:
            failure = self._failures.get(iss)
            if failure is not None and self._attempts.get(iss, 0) != attempts:
                # The fetch this request waited for has just failed: its answer is ours too.
                raise DiscoveryError(failure.reason)
            fetching_key = f"jwks-fetching:{iss}"
            while True:
                newer = self._newer(iss, since)
                if newer is not None:
                    return newer
                if unknown_kid and self._locally_throttled(iss):
                    return None
                held = self.cache.claim(fetching_key, self._token, self.discovery.fetcher.timeout * 2 + 1)
                if held.ok or time.monotonic() >= deadline:
                    break
                time.sleep(0.02)  # a peer is fetching: poll for its entry until it appears or its lock goes
            try:
                newer = self._newer(iss, since)  # a peer may have stored its entry just before we claimed
                if newer is not None:
                    return newer
                if unknown_kid and not self._may_refetch_unknown(iss):
                    return None
                return self._fetch(issuer)
            finally:
                if held.ok:
                    self.cache.delete(fetching_key)
        finally:
            lock.release()

    def _newer(self, iss: str, since: float) -> IssuerKeys | None:
        """This replica's entry (a peer's adopted first, if newer) when fetched after `since`."""
        self._adopt_shared(iss)
        current = self._entries.get(iss)
        return current if current is not None and current.fetched_at > since else None

    def vouch(self, iss: str) -> bool:
        """Drop this replica's copy of `iss` if it came from the shared cache and is no longer
        authentic (say the cache key was rotated because it leaked) or the operator deleted the
        shared entry; True if dropped.

        What this replica adopted is re-checked itself: a *different* entry now in Redis says
        nothing about it (it may be an older one replayed to roll this replica back), so it
        never makes this replica drop a newer set; adoption then decides whether it is newer.
        """
        raw = self._adopted.get(iss)
        if raw is None:
            return False
        shared = self.cache.get(f"jwks:{iss}")
        if shared is not None and self._open_shared(iss, raw) is not None:
            return False
        self._entries.pop(iss, None)
        self._adopted.pop(iss, None)
        log.info("dropped the shared keys of %s this replica can no longer vouch for", iss)
        return True

    def forget_others(self, issuers: Iterable[JwtIssuer]) -> None:
        """Forget issuers that are no longer configured (their keys must not linger in memory)."""
        keep = {i.iss for i in issuers}
        for iss in [i for i in self._entries if i not in keep]:
            self._entries.pop(iss, None)
            self._adopted.pop(iss, None)
            self._seen.pop(iss, None)
            self._own.pop(iss, None)
            self._newest.pop(iss, None)

    def status(self, issuers: Iterable[JwtIssuer]) -> list[dict[str, Any]]:
        now = self.clock()
        out = []
        for issuer in issuers:
            entry = self._entries.get(issuer.iss) or self._adopt_shared(issuer.iss)
            failure = self._failures.get(issuer.iss)
            if entry is None:
                state = "failing" if failure else "not fetched"
            elif now < entry.fresh_until:
                state = "ok"
            elif issuer.iss not in self._adopted and now < entry.fetched_at + self.policy.max_stale:
                state = "stale"  # only a set this replica fetched itself is ever served stale
            else:
                state = "failing"
            out.append(
                {
                    "name": issuer.name,
                    "iss": issuer.iss,
                    "state": state,
                    "reason": failure.reason if failure and state != "ok" else None,
                    "last_fetch": _iso(entry.fetched_at) if entry else None,
                    "next_refresh": _iso(entry.fresh_until) if entry else None,
                    "kids": entry.kids if entry else [],
                    "skipped_keys": entry.skipped if entry else 0,
                }
            )
        return out

    # -- internals ------------------------------------------------------------------------

    def _lock(self, iss: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(iss, threading.Lock())

    def _fresh_entry(self, issuer: JwtIssuer) -> IssuerKeys:
        now = self.clock()
        entry = self._entries.get(issuer.iss)
        if entry is not None and now < entry.fresh_until:
            return entry
        shared = self._adopt_shared(issuer.iss)
        if shared is not None and now < shared.fresh_until:
            return shared
        entry = shared or entry
        failure = self._failures.get(issuer.iss)
        if failure is None or now >= failure.at + self.policy.refetch_interval:
            try:
                # Nothing held: any entry that appears meanwhile will do (concurrent cold requests share one fetch).
                return self.refresh(issuer, since=entry.fetched_at if entry else float("-inf"))
            except DiscoveryError:
                failure = self._failures.get(issuer.iss)
        # Only a set this replica fetched itself is served stale: an adopted one may be an old
        # entry replayed into Redis, which the IdP may have revoked keys of since.
        own = self._own.get(issuer.iss)
        if own is not None and now < own.fetched_at + self.policy.max_stale:
            self.metrics.inc("openfaas_iam_jwks_stale_serves_total", issuer=issuer.name)
            return own
        reason = failure.reason if failure else "no keys fetched yet"
        if own is None and entry is not None:
            raise IssuerUnavailable(
                f"keys of issuer {issuer.iss} need a refresh, which failed: {reason} (keys shared by another "
                "replica are never used stale)"
            )
        if entry is not None:
            raise IssuerUnavailable(
                f"keys of issuer {issuer.iss} are older than the maximum staleness "
                f"({self.policy.max_stale:g}s) and cannot be refreshed: {reason}"
            )
        raise IssuerUnavailable(f"no keys for issuer {issuer.iss}: {reason}")

    def _fetch(self, issuer: JwtIssuer) -> IssuerKeys:
        self.metrics.inc("openfaas_iam_jwks_fetches_total", issuer=issuer.name)
        self._attempts[issuer.iss] = self._attempts.get(issuer.iss, 0) + 1
        try:
            found = self.discovery.fetch(issuer)
        except DiscoveryError as e:
            self.metrics.inc("openfaas_iam_jwks_fetch_failures_total", issuer=issuer.name)
            self._failures[issuer.iss] = _Failure(self.clock(), str(e))
            log.warning("fetching keys of JwtIssuer/%s failed: %s", issuer.name, e)
            raise
        now = self.clock()
        ttl = found.max_age if found.max_age is not None else self.policy.default_ttl
        ttl = min(max(ttl, self.policy.min_ttl), self.policy.max_ttl)
        entry = IssuerKeys.build(issuer.iss, found.jwks, now, now + ttl)
        if entry.skipped:
            log.warning("JwtIssuer/%s: skipped %d unusable key(s) in %s", issuer.name, entry.skipped, found.jwks_uri)
        self._entries[issuer.iss] = entry
        self._own[issuer.iss] = entry
        self._newest[issuer.iss] = max(now, self._newest.get(issuer.iss, now))
        self._adopted.pop(issuer.iss, None)
        self._failures.pop(issuer.iss, None)
        doc = {"iss": issuer.iss, "keys": entry.jwks, "fetched_at": now, "fresh_until": entry.fresh_until}
        sealed = self.sealer.seal("jwks", issuer.iss, json.dumps(doc).encode()) if self.sealer else None
        if sealed is not None:
            self.cache.set(f"jwks:{issuer.iss}", sealed, ttl + self.policy.max_stale)
            self._seen[issuer.iss] = (sealed, self.sealer.current_key() if self.sealer else None)
        return entry

    def _reject(self, iss: str, reason: str) -> None:
        self.metrics.inc("openfaas_iam_cache_rejected_total", kind="jwks")
        self._once.warning(
            f"jwks:{iss}:{reason}", "ignored the shared JWKS entry of %s: %s (it is never used)", iss, reason
        )

    def _open_shared(self, iss: str, raw: bytes) -> tuple[list[Any], float, float] | None:
        """(keys, fetched_at, fresh_until) of an authentic shared entry, times bounded here; None if unusable."""
        if self.sealer is None:
            return None
        try:
            body = self.sealer.open("jwks", iss, raw)
            doc = json_codec.loads(body)
            if not isinstance(doc, dict) or doc.get("iss") != iss or not isinstance(doc.get("keys"), list):
                raise Rejected("the entry is not this issuer's key set")
            fetched_at = float(doc["fetched_at"])
            fresh_until = float(doc["fresh_until"])
        except Rejected as e:
            self._reject(iss, str(e))
            return None
        except (ValueError, KeyError, TypeError):
            self._reject(iss, "the entry is not valid JSON with fetched_at and fresh_until")
            return None
        now = self.clock()
        if not fetched_at <= now + self.policy.clock_skew:
            self._reject(iss, "fetched_at lies in the future")
            return None
        # Never fresher than this replica would have made it itself.
        fresh_until = min(fresh_until, fetched_at + self.policy.max_ttl, now + self.policy.max_ttl)
        return doc["keys"], fetched_at, fresh_until

    def _adopt_shared(self, iss: str) -> IssuerKeys | None:
        """Take a newer, recent, authentic entry another replica stored, parsing it once here.

        Recent (fetched within `adopt_within`) and newer than anything this replica has held:
        an authentic entry may still be an old one replayed by whoever can write Redis.
        """
        if self.sealer is None:
            return self._entries.get(iss)
        raw = self.cache.get(f"jwks:{iss}")
        if raw is None:
            return self._entries.get(iss)
        decided = (raw, self.sealer.current_key())
        if decided == self._seen.get(iss):
            # Every stale serve, unknown kid and peer-wait tick would otherwise GET, verify and
            # parse this replica's own entry (or one it refused) again, only to come to the same end.
            return self._entries.get(iss)
        self._seen[iss] = decided
        opened = self._open_shared(iss, raw)
        if opened is None:
            return self._entries.get(iss)
        keys, fetched_at, fresh_until = opened
        newest = self._newest.get(iss)
        if newest is not None and fetched_at <= newest:
            return self._entries.get(iss)  # not newer than what this replica has held: never roll back
        if self.clock() - fetched_at > self.policy.adopt_within:
            log.debug("not adopting the shared JWKS entry of %s: fetched %.0fs ago", iss, self.clock() - fetched_at)
            return self._entries.get(iss)  # old: maybe a replay; this replica fetches for itself
        entry = IssuerKeys.build(iss, keys, fetched_at, fresh_until)
        self._entries[iss] = entry
        self._adopted[iss] = raw
        self._newest[iss] = fetched_at
        self._failures.pop(iss, None)
        self.metrics.inc("openfaas_iam_jwks_shared_reads_total")
        return entry


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
