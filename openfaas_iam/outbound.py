"""Bounded outbound HTTP for discovery: configured origins only, no wandering redirects.

Every fetch has a time limit and a size limit, uses the custom CA bundle when one is
mounted, refuses plain http except to loopback (or by explicit opt-in), and follows a
redirect only while it stays on the origin it started from.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from . import json_codec
from .errors import DiscoveryError

MAX_BYTES = 512 * 1024
MAX_REDIRECTS = 3


def origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
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
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.verify: str | bool = ca_bundle or True
        self.allow_insecure = allow_insecure
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies or .netrc credentials from the environment

    def check_url(self, url: str) -> None:
        scheme, host, _ = origin(url)
        if scheme == "https":
            return
        if scheme == "http" and (is_loopback(host) or self.allow_insecure):
            return
        raise DiscoveryError(
            f"refusing {url}: https is required (http only for loopback or with allow_insecure_issuers)"
        )

    def get_json(self, url: str, *, bearer: str | None = None) -> Fetched:
        """GET a JSON object; DiscoveryError says what went wrong in words an operator can act on."""
        self.check_url(url)
        start = origin(url)
        headers = {"Accept": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        for _ in range(MAX_REDIRECTS + 1):
            try:
                resp = self.session.get(
                    url, headers=headers, timeout=self.timeout, allow_redirects=False, stream=True, verify=self.verify
                )
            except requests.exceptions.SSLError as e:
                raise DiscoveryError(
                    f"TLS verification failed for {url} (is the ca-bundle secret mounted?): {e}"
                ) from None
            except requests.exceptions.Timeout:
                raise DiscoveryError(f"{url} did not answer within {self.timeout:g}s") from None
            except requests.exceptions.RequestException as e:
                raise DiscoveryError(f"cannot reach {url}: {type(e).__name__}") from None
            try:
                if resp.is_redirect:
                    target = urljoin(url, resp.headers.get("Location", ""))
                    if origin(target) != start:
                        raise DiscoveryError(f"{url} redirects to another origin ({target}); refused")
                    url = target
                    continue
                if resp.status_code != 200:
                    raise DiscoveryError(f"{url} answered HTTP {resp.status_code}")
                body = self._read(resp, url)
            finally:
                resp.close()
            try:
                doc = json_codec.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise DiscoveryError(f"{url} did not return JSON") from None
            if not isinstance(doc, dict):
                raise DiscoveryError(f"{url} returned JSON that is not an object")
            return Fetched(doc, {k.lower(): v for k, v in resp.headers.items()})
        raise DiscoveryError(f"{url}: more than {MAX_REDIRECTS} redirects")

    def _read(self, resp: requests.Response, url: str) -> bytes:
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise DiscoveryError(f"{url} is larger than the limit of {self.max_bytes} bytes ({declared} bytes)")
        chunks: list[bytes] = []
        size = 0
        # requests' timeout is per socket read; a server dripping bytes is cut off here.
        deadline = time.monotonic() + self.timeout
        try:
            for chunk in resp.iter_content(16384):
                if time.monotonic() > deadline:
                    raise DiscoveryError(f"{url} did not finish within {self.timeout:g}s")
                size += len(chunk)
                if size > self.max_bytes:
                    raise DiscoveryError(f"{url} is larger than the limit of {self.max_bytes} bytes")
                chunks.append(chunk)
        except requests.exceptions.RequestException as e:
            raise DiscoveryError(f"reading {url} failed: {type(e).__name__}") from None
        return b"".join(chunks)
