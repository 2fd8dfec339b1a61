"""Fair share of a replica's workers for long-lived calls (log streams).

A streamed response holds one of waitress's worker threads for as long as it runs. Without
a limit, one caller with a handful of `faas-cli logs --follow` took every worker of
iam-authz, and other callers' decisions and `/healthz` timed out. Streams are therefore
counted per subject and in total, and the total is kept below the worker count so unary
calls always find a free worker. The counts are per replica (a replica's threads are what
is being protected); a caller over the limit gets 429 with `Retry-After`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator


class OverLimit(Exception):
    """The caller (or the replica) is at its limit of open streams; `retry_after` in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StreamLimiter:
    def __init__(self, per_subject: int, total: int, retry_after: int = 5) -> None:
        self.per_subject = max(1, per_subject)
        self.total = max(1, total)
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._count = 0

    def acquire(self, subject: str) -> None:
        with self._lock:
            mine = self._open.get(subject, 0)
            if mine >= self.per_subject:
                raise OverLimit(
                    f"{subject} already has {mine} open log streams on this replica "
                    f"(at most {self.per_subject}); close one and retry",
                    self.retry_after,
                )
            if self._count >= self.total:
                raise OverLimit(
                    f"this replica is serving its maximum of {self.total} log streams; retry shortly",
                    self.retry_after,
                )
            self._open[subject] = mine + 1
            self._count += 1

    def release(self, subject: str) -> None:
        with self._lock:
            left = self._open.get(subject, 0) - 1
            if left > 0:
                self._open[subject] = left
            else:
                self._open.pop(subject, None)
            self._count = max(0, self._count - 1)

    def open_streams(self) -> int:
        with self._lock:
            return self._count

    def guard(self, subject: str, body: Iterator[bytes]) -> Iterator[bytes]:
        """`body`, releasing the slot exactly once: at its end, on failure, or on close() (client gone)."""
        return _Guarded(body, lambda: self.release(subject))


class _Guarded:
    """An iterator that runs `on_end` once, even when it is closed before it was ever started."""

    def __init__(self, body: Iterator[bytes], on_end: Callable[[], None]) -> None:
        self._body = body
        self._on_end: Callable[[], None] | None = on_end

    def __iter__(self) -> _Guarded:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._body)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is None:
            return
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            on_end()
