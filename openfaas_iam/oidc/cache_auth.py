"""Authenticated entries in the shared cache: Redis stores them, it never vouches for them.

Every pod in `openfaas-fn` can reach Redis on CE, so whatever Redis returns may have
been written by anyone. An entry the bundle wants to share (an issuer's JWKS) is
stored as `v1.<mac>.<body>`, where `mac` is HMAC-SHA256 over the entry's kind, its
name and the body, keyed by the `iam-cache-key` secret, which only the bundle's own
functions mount (the proxy refuses any deploy that lists it). Binding the name means an
entry cannot be moved from one issuer to another. Without the key mounted, nothing is
shared: each replica fetches for itself, which is slower but never less safe.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Callable

log = logging.getLogger("openfaas_iam.cache")

PREFIX = b"v1."


class Rejected(Exception):
    """A shared entry that is not authentic or not well-formed; the reason says which."""


class EntrySealer:
    """Seals and opens shared-cache entries with the bundle's cache key (read on use, it may rotate)."""

    def __init__(self, key: Callable[[], bytes | None]) -> None:
        self._key = key

    def available(self) -> bool:
        return bool(self._key())

    def current_key(self) -> bytes | None:
        """The key entries are opened with now: what a decision about an entry depended on."""
        return self._key()

    def _mac(self, key: bytes, kind: str, name: str, body: bytes) -> bytes:
        msg = kind.encode() + b"\x00" + name.encode() + b"\x00" + body
        return hmac.new(key, msg, hashlib.sha256).digest()

    def seal(self, kind: str, name: str, body: bytes) -> bytes | None:
        """The stored form of `body`, or None when there is no key (then the entry is not shared)."""
        key = self._key()
        if not key:
            return None
        mac = base64.urlsafe_b64encode(self._mac(key, kind, name, body)).rstrip(b"=")
        return PREFIX + mac + b"." + body

    def open(self, kind: str, name: str, raw: bytes) -> bytes:
        """The authenticated body of a stored entry; Rejected says why it cannot be used."""
        key = self._key()
        if not key:
            raise Rejected("no cache key is mounted, so no shared entry can be authenticated")
        if not raw.startswith(PREFIX):
            raise Rejected("the entry is not sealed (no v1 MAC)")
        mac_text, sep, body = raw[len(PREFIX) :].partition(b".")
        if not sep:
            raise Rejected("the entry is not sealed (no MAC separator)")
        try:
            mac = base64.urlsafe_b64decode(mac_text + b"=" * (-len(mac_text) % 4))
        except ValueError:
            raise Rejected("the entry's MAC is not base64url") from None
        if not hmac.compare_digest(mac, self._mac(key, kind, name, body)):
            raise Rejected("the entry's MAC does not match (written without the bundle's cache key)")
        return body


class OnceLog:
    """Logs a given problem at most once per `every` seconds, so a flood cannot fill the log."""

    def __init__(self, every: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._last: dict[str, float] = {}

    def warning(self, key: str, message: str, *args: object) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now < last + self.every:
            return False
        self._last[key] = now
        log.warning(message, *args)
        return True
