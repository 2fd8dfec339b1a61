"""The gateway's admin credentials (the `basic-auth` secret) and checks against them.

OpenFaaS maps the admin password to full access; the bundle keeps that for the proxy and
asks for it before operator-only actions such as a forced key rotation.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from openfaas_iam.stores.watched_file import Unavailable, WatchedFile, read_stripped

Credentials = tuple[str, str]


class AdminCredentials:
    """Read from the mounted secret on use (it may be rotated), never once at start-up."""

    def __init__(self, user_path: str, password_path: str) -> None:
        self._user = WatchedFile(user_path, read_stripped, what="gateway admin user")
        self._password = WatchedFile(password_path, read_stripped, what="gateway admin password")

    def __call__(self) -> Credentials | None:
        try:
            return self._user.get(), self._password.get()
        except Unavailable:
            return None


def parse_basic(value: str) -> Credentials | None:
    """`user:password` from the part after `Basic `; None when malformed."""
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return (user, password) if sep else None


def matches(given: Credentials, expected: Credentials) -> bool:
    """Constant-time on both parts, so neither leaks through timing."""
    ok_user = hmac.compare_digest(given[0].encode(), expected[0].encode())
    ok_password = hmac.compare_digest(given[1].encode(), expected[1].encode())
    return ok_user and ok_password


def is_admin(authorization: str | None, expected: Credentials | None) -> bool:
    if not authorization or expected is None:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    given = parse_basic(value)
    return given is not None and matches(given, expected)
