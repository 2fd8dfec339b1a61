"""A mounted file parsed once per change, with the last good value kept on error.

Kubernetes updates mounted secrets by swapping a symlink some time after the Secret
changes, so functions never read a secret once at start-up: a cheap `stat` (at most
once per `check_interval`) tells when to parse again. A new file that fails to parse
is logged and the last good value stays in force, so a bad edit never takes a
function down.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("openfaas_iam.files")


def read_stripped(path: str) -> str:
    """A single-value secret file (a password, a client secret) without surrounding whitespace."""
    with open(path) as f:
        return f.read().strip()


class Unavailable(Exception):
    """No valid value has been read from the file yet."""


class WatchedFile(Generic[T]):
    def __init__(
        self,
        path: str,
        parse: Callable[[str], T],
        *,
        what: str,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.what = what
        self._parse = parse
        self.check_interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._value: T | None = None
        self._signature: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self.generation = 0
        self.last_error: str | None = None

    def get(self) -> T:
        """The value in force; raises Unavailable before the first good read."""
        now = self._clock()
        # Before the first good read every caller waits on the lock, so concurrent first
        # requests see the value the first one loads instead of a spurious "not there".
        if now >= self._next_check or self._value is None:
            with self._lock:
                if now >= self._next_check:
                    self._next_check = now + self.check_interval
                    self._maybe_reload()
        if self._value is None:
            raise Unavailable(self.last_error or f"no {self.what} at {self.path}")
        return self._value

    def _maybe_reload(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            if self._value is None:
                self.last_error = f"no {self.what} at {self.path}"
            return
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig == self._signature:
            return
        self._signature = sig
        try:
            value = self._parse(self.path)
        except Exception as e:  # any parse failure keeps the last good value
            self.last_error = str(e)
            kept = f"keeping the last good {self.what}" if self._value is not None else f"no {self.what} loaded"
            log.error("%s %s is invalid (%s):\n%s", self.what, self.path, kept, e)
            return
        self._value = value
        self.generation += 1
        self.last_error = None
