"""Browser sessions: a small cookie whatever the claims, and sign-out that ends every copy on every replica."""

from __future__ import annotations

import uuid

from openfaas_iam.signin import SESSION_COOKIE, SignIn, SsoSettings
from openfaas_iam.stores.cache import LayeredCache, RedisCache

SECRET = b"openfaas-iam:client-secret"


def replica(redis_url: str, prefix: str) -> SignIn:
    """One iam-token replica: its own in-process layer over the shared Redis."""
    sso = SsoSettings(
        "people", "openfaas", "client-secret", "https://iam.example.com/callback", origin="https://iam.example.com"
    )
    return SignIn(
        sso=sso,
        config=None,
        discovery=None,  # type: ignore[arg-type]
        jwks=None,  # type: ignore[arg-type]
        exchange=None,  # type: ignore[arg-type]
        leeway=60,
        session_secret=SECRET,
        store=LayeredCache(RedisCache(redis_url, prefix)),
    )


def test_a_session_cookie_stays_small_with_110_groups_and_sign_out_ends_every_copy(redis_url: str) -> None:
    prefix = f"signin-{uuid.uuid4().hex[:6]}:"
    a, b = replica(redis_url, prefix), replica(redis_url, prefix)
    token = "h." + "g" * 6000 + ".s"  # as large as a token carrying 110 groups and more
    value = a.open_session(token, 3600)
    assert len(value) < 400, f"the session cookie is {len(value)} bytes"
    cookie = {a.sso.cookie_name(SESSION_COOKIE): value}
    assert a.sso.cookie_name(SESSION_COOKIE) == "__Host-iam_session"
    assert a.current(cookie)["t"] == token and b.current(cookie)["t"] == token, "shared by replicas"
    # Signed out on replica b; replica a still holds the record in its in-process layer.
    b.revoke(b.current(cookie))
    assert a.current(cookie) is None and b.current(cookie) is None
    # A forged or foreign cookie is no session either.
    assert a.current({"__Host-iam_session": "forged"}) is None
    assert a.current({"iam_session": value}) is None, "on https only the __Host- name counts"
