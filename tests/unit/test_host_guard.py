"""The local listeners' Host guard: anything that is not the listener's own host is 421, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from localgw.host_guard import HostGuard


def call(host: str) -> str:
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen.append(status)

    HostGuard(app, ["127.0.0.1:8080"])({"HTTP_HOST": host}, start_response)
    return seen[0]


@pytest.mark.parametrize("host", ["127.0.0.1:99999", "127.0.0.1:abc", "[::1", "127.0.0.1:-1", "localhost:8080"])
def test_a_host_that_cannot_be_read_or_is_not_ours_is_misdirected(host: str) -> None:
    # urlsplit().port raises ValueError on an unreadable port: that was a 500 from every local listener.
    assert call(host) == "421 Misdirected Request"


def test_the_listeners_own_host_passes() -> None:
    assert call("127.0.0.1:8080") == "200 OK"
