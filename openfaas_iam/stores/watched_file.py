"""A mounted file parsed once per change, with the last good value kept on error.

Kubernetes updates mounted secrets by swapping a symlink some time after the Secret
changes, so functions never read a secret once at start-up: a cheap `stat` (at most
once per `check_interval`) tells when to parse again. A new file that fails to parse
is logged and the last good value stays in force, so a bad edit never takes a
function down.

`background=True` (the IAM configuration): a changed file is parsed in a background
thread while requests keep the value in force, which is then swapped in whole (one
reference assignment, atomic). Parsing 10,000 Roles takes seconds; inline under the
lock it stalled every request of every replica for that long (issue 16). Only the
first load, with nothing to answer from yet, is waited for.
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


class TransientLoadError(Exception):
    """The file could not be parsed for a reason other than its content (a loader process that
    crashed or hung): unlike a bad file, the same file is tried again after `retry_delay`."""


class WatchedFile(Generic[T]):
    def __init__(
        self,
        path: str,
        parse: Callable[[str], T],
        *,
        what: str,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
        background_parse: Callable[[str], T] | None = None,
        retry_delay: float = 30.0,
    ) -> None:
        """`background_parse` (default `parse`) parses a changed file in the background; the
        first load, which every request waits for, always uses `parse`."""
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
        self.background = background
        self._loading: threading.Thread | None = None
        self._background_parse = background_parse or parse
        self.retry_delay = retry_delay

    def get(self) -> T:
        """The value in force; raises Unavailable before the first good read."""
        now = self._clock()
        if self.background and self._value is not None:
            if now >= self._next_check and self._loading is None:
                self._check_in_background(now)
            return self._value
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

    def _check_in_background(self, now: float) -> None:
        """A cheap stat here; if the file changed, its parse in a thread (one at a time)."""
        if not self._lock.acquire(blocking=False):
            return  # another request is checking
        try:
            if now < self._next_check or self._loading is not None:
                return
            self._next_check = now + self.check_interval
            sig = self._stat()
            if sig is None or sig == self._signature:
                return
            self._loading = threading.Thread(target=self._load_in_background, args=(sig,), daemon=True)
            self._loading.start()
        finally:
            self._lock.release()

    def _load_in_background(self, sig: tuple[int, int, int]) -> None:
        try:
            self._load(sig, self._background_parse)
        finally:
            self._loading = None

    def wait(self, timeout: float = 30.0) -> None:
        """Wait for a load in progress (tests, benchmarks)."""
        loading = self._loading
        if loading is not None:
            loading.join(timeout)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

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
        self._load(sig)

    def _load(self, sig: tuple[int, int, int], parse: Callable[[str], T] | None = None) -> None:
        self._signature = sig
        try:
            value = (parse or self._parse)(self.path)
        except Exception as e:  # any parse failure keeps the last good value
            self.last_error = str(e)
            kept = f"keeping the last good {self.what}" if self._value is not None else f"no {self.what} loaded"
            if isinstance(e, TransientLoadError):  # not the file's fault: try it again, later
                self._signature = None
                self._next_check = self._clock() + self.retry_delay
                log.error(
                    "%s %s could not be loaded (%s; retrying in %gs): %s",
                    self.what,
                    self.path,
                    kept,
                    self.retry_delay,
                    e,
                )
                return
            log.error("%s %s is invalid (%s):\n%s", self.what, self.path, kept, e)
            return
        self._value = value
        self.generation += 1
        self.last_error = None
