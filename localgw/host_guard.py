"""Answer only for the listener's own host name: anything else is 421 Misdirected Request.

Issue 20: browsers do not scope cookies by port. With a gateway that answers for any Host,
`http://localhost:8080/function/any` is sent the `localhost` cookies of the sign-in origin
(`http://localhost:8081`), and the function's server side can replay the session. Each local
listener therefore answers only as the host it is published under.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def host_port(url: str) -> str:
    """`http://Host:port/...` -> `host:port` in lower case, the default port written out."""
    parts = urlsplit(url)
    return f"{(parts.hostname or '').lower()}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class HostGuard:
    """WSGI middleware: the request's Host must be one of `hosts` (`host:port`)."""

    def __init__(self, app: WsgiApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts if h)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        host = (environ.get("HTTP_HOST") or "").strip()
        try:
            ours = bool(host) and host_port(f"http://{host}") in self.hosts
        except ValueError:  # a port that is not a number or out of range, an unclosed '['
            ours = False
        if ours:
            return self.app(environ, start_response)
        body = f"421 Misdirected Request: this listener answers only as {', '.join(sorted(self.hosts))}\n".encode()
        start_response(
            "421 Misdirected Request",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]
