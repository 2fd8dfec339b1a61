"""Bounded outbound HTTP for discovery: configured origins only, no wandering redirects.

Every fetch has a total time limit (a deadline, not a per-read timeout) and a size limit,
at most `per_origin` calls in flight to one origin, uses the custom CA bundle when one is
mounted, refuses plain http except to loopback (or by explicit opt-in), and follows a
redirect only while it stays on the origin it started from.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from openfaas_iam import json_codec
from openfaas_iam.errors import DiscoveryError

MAX_BYTES = 512 * 1024
MAX_REDIRECTS = 3


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port); DiscoveryError for a URL whose port or host cannot be read.

    urlsplit() raises ValueError on a port that is not a number or out of range and on an
    unclosed '[': from an IdP's jwks_uri or Location header that was a 500, not a refusal.
    """
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise DiscoveryError(f"{url} is not a valid URL") from None
    return parts.scheme, (parts.hostname or "").lower(), port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Fetched:
    body: Any
    headers: dict[str, str]


class Fetcher:
    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_bytes: int = MAX_BYTES,
        ca_bundle: str | None = None,
        allow_insecure: bool = False,
        per_origin: int = 2,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.verify: str | bool = ca_bundle or True
        self.allow_insecure = allow_insecure
        self.per_origin = per_origin
        self._slots: dict[tuple[str, str, int], threading.BoundedSemaphore] = {}
        self._guard = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._ssl_signature: tuple[int, int, int] | None = None

    def check_url(self, url: str) -> None:
        scheme, host, _ = origin(url)
        if scheme == "https":
            return
        if scheme == "http" and (is_loopback(host) or self.allow_insecure):
            return
        raise DiscoveryError(
            f"refusing {url}: https is required (http only for loopback or with allow_insecure_issuers)"
        )

    @contextmanager
    def _slot(self, url: str) -> Iterator[None]:
        """One of `per_origin` concurrent calls to this origin, or a DiscoveryError at once.

        A slow or hostile issuer can then hold at most that many of a function's threads; the
        rest (other issuers' exchanges, the bundle's own JWKS) never queue behind it.
        """
        key = origin(url)
        with self._guard:
            slots = self._slots.setdefault(key, threading.BoundedSemaphore(self.per_origin))
        if not slots.acquire(timeout=0.05):
            raise DiscoveryError(f"{url}: {self.per_origin} calls to this origin are already in flight; try again")
        try:
            yield
        finally:
            slots.release()

    def get_json(self, url: str, *, bearer: str | None = None) -> Fetched:
        """GET a JSON object; DiscoveryError says what went wrong in words an operator can act on.

        `timeout` is a total deadline for the whole call (connect, TLS, headers, body and
        redirects), not per socket read: a server dripping one byte a second is cut off.
        """
        self.check_url(url)
        start = origin(url)
        headers = {"Accept": "application/json", "User-Agent": "openfaas-iam"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        deadline = time.monotonic() + self.timeout
        with self._slot(url):
            for _ in range(MAX_REDIRECTS + 1):
                status, resp_headers, body = self._get(url, headers, deadline)
                if status in (301, 302, 303, 307, 308):
                    target = urljoin(url, resp_headers.get("location", ""))
                    if origin(target) != start:
                        raise DiscoveryError(f"{url} redirects to another origin ({target}); refused")
                    url = target
                    continue
                if status != 200:
                    raise DiscoveryError(f"{url} answered HTTP {status}")
                try:
                    doc = json_codec.loads(body)
                except (ValueError, UnicodeDecodeError):
                    raise DiscoveryError(f"{url} did not return JSON") from None
                if not isinstance(doc, dict):
                    raise DiscoveryError(f"{url} returned JSON that is not an object")
                return Fetched(doc, resp_headers)
        raise DiscoveryError(f"{url}: more than {MAX_REDIRECTS} redirects")

    def post_form(
        self, url: str, form: dict[str, str], *, basic: tuple[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST a form (the sign-in page's code redemption); (status, JSON object or {}).

        The same bounds as `get_json`: a total deadline, one of `per_origin` slots and the
        size cap, so a slow or hostile token endpoint holds at most that many of the page's
        threads for at most `timeout`. Redirects are not followed (RFC 6749 §3.2), and an
        error status's body is read too: it carries the IdP's `error_description`.
        """
        self.check_url(url)
        body = urlencode(form).encode()
        headers = {
            "Accept": "application/json",
            "User-Agent": "openfaas-iam",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if basic is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        deadline = time.monotonic() + self.timeout
        with self._slot(url):
            status, _, raw = self._get(url, headers, deadline, method="POST", body=body)
        try:
            doc = json_codec.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError):
            doc = {}
        return status, doc if isinstance(doc, dict) else {}

    def _context(self) -> ssl.SSLContext:
        """The TLS context, rebuilt when the CA bundle file changes: a rotated `ca-bundle` secret
        (say cert-manager's CA of an in-cluster IdP) must be trusted without a restart, as
        `requests` did by reading the file per connection. A stat per fetch is all it costs."""
        cafile = self.verify if isinstance(self.verify, str) else None
        signature = None
        if cafile is not None:
            try:
                st = os.stat(cafile)
                signature = (st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                signature = None
        if self._ssl is None or signature != self._ssl_signature:
            self._ssl = ssl.create_default_context(cafile=cafile)
            self._ssl_signature = signature
        return self._ssl

    def _get(
        self, url: str, headers: dict[str, str], deadline: float, *, method: str = "GET", body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request with a watchdog that shuts the socket at the deadline, whatever it is waiting for.

        A GET's error status comes back without its body; a POST's body is read whatever the status.
        """
        scheme, host, port = origin(url)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DiscoveryError(f"{url} did not answer within {self.timeout:g}s")
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=remaining, context=self._context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=remaining)
        cut = threading.Event()

        def cut_off() -> None:
            cut.set()
            sock = conn.sock
            if sock is not None:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(remaining, cut_off)
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            got = {k.lower(): v for k, v in resp.getheaders()}
            if resp.status != 200 and method == "GET":
                return resp.status, got, b""
            body = self._read(resp, got, url)
            if cut.is_set():
                raise DiscoveryError(f"{url} did not finish within {self.timeout:g}s")
            return resp.status, got, body
        except ssl.SSLError as e:
            if cut.is_set():
                raise DiscoveryError(f"{url} did not answer within {self.timeout:g}s") from None
            raise DiscoveryError(f"TLS verification failed for {url} (is the ca-bundle secret mounted?): {e}") from None
        except TimeoutError:
            raise DiscoveryError(f"{url} did not answer within {self.timeout:g}s") from None
        except (OSError, http.client.HTTPException) as e:
            if cut.is_set():
                raise DiscoveryError(f"{url} did not answer within {self.timeout:g}s") from None
            raise DiscoveryError(f"cannot reach {url}: {_kind(e)}") from None
        finally:
            watchdog.cancel()
            conn.close()

    def _read(self, resp: http.client.HTTPResponse, headers: dict[str, str], url: str) -> bytes:
        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise DiscoveryError(f"{url} is larger than the limit of {self.max_bytes} bytes ({declared} bytes)")
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = resp.read1(16384)
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_bytes:
                raise DiscoveryError(f"{url} is larger than the limit of {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _kind(e: BaseException) -> str:
    """The failure in words that match what requests said before (tests and runbooks grep for them)."""
    if isinstance(e, (ConnectionError, http.client.RemoteDisconnected)):
        return "ConnectionError"
    return type(e).__name__


_SUMMARIES = (
    ("did not answer within", "timed out"),
    ("did not finish within", "timed out"),
    ("cannot reach", "unreachable"),
    ("TLS verification failed", "TLS verification failed"),
    ("redirects to another origin", "redirect refused"),
    ("larger than the limit", "response too large"),
    ("already in flight", "busy"),
    ("being fetched by another request", "busy"),
    ("https is required", "plain http refused"),
)


def summarise(reason: str) -> str:
    """A fetch failure in a few words, for anonymous callers: no URLs, addresses or TLS details.

    The full reason goes to the function's log (where the operator looks), never to whoever
    can call the public endpoints.
    """
    for needle, summary in _SUMMARIES:
        if needle in reason:
            return summary
    if " answered HTTP " in reason:
        return "HTTP " + reason.rsplit(" answered HTTP ", 1)[1].split()[0]
    return "invalid discovery or JWKS document"
