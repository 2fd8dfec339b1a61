"""A tiny method+path table for function handlers, so each handler stays a list of routes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openfaas_iam.service.responses import Response, method_not_allowed, not_found

Handler = Callable[[Any], Response]


class Router:
    def __init__(self) -> None:
        self._routes: dict[str, dict[str, Handler]] = {}
        self._prefixes: list[tuple[str, Handler]] = []

    def prefix(self, prefix: str) -> Callable[[Handler], Handler]:
        """Every method under a path prefix (the proxy's /system/)."""

        def register(fn: Handler) -> Handler:
            self._prefixes.append((prefix, fn))
            return fn

        return register

    def route(self, path: str, *methods: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            table = self._routes.setdefault(path.rstrip("/") or "/", {})
            for m in methods or ("GET",):
                table[m] = fn
            return fn

        return register

    def dispatch(self, event: Any) -> Response:
        path = event.path.rstrip("/") or "/"
        table = self._routes.get(path)
        if table is None:
            for prefix, prefixed in self._prefixes:
                if event.path.startswith(prefix):
                    return prefixed(event)
            return not_found(event.path)
        fn: Handler | None = table.get(event.method)
        if fn is None and event.method == "HEAD":
            fn = table.get("GET")
        if fn is None:
            return method_not_allowed(event.method, sorted(table))
        return fn(event)
