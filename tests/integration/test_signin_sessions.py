"""Browser sessions: a small cookie whatever the claims, and sign-out that ends every copy on every replica."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from openfaas_iam.oidc.outbound import Fetcher
from openfaas_iam.signin.flow import SESSION_COOKIE, SignIn, SignInError, SsoSettings
from openfaas_iam.stores.cache import LayeredCache, RedisCache

SECRET = b"openfaas-iam:client-secret"


def replica(redis_url: str | None, prefix: str) -> SignIn:
    """One iam-token replica: its own in-process layer over the shared Redis (None: no Redis configured)."""
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
        store=LayeredCache(RedisCache(redis_url, prefix) if redis_url else None),
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


# -- issue 20: sessions live only in the shared store; the flow is single-use; redemption is bounded ----------


def _redis(si: SignIn) -> RedisCache:
    redis = getattr(si.store, "redis", None) or getattr(si.store, "shared", None)
    assert isinstance(redis, RedisCache)
    return redis


def _blip(si: SignIn) -> None:
    """This replica's Redis circuit opens (one 250 ms timeout is enough for 5 s)."""
    _redis(si)._open_until = time.monotonic() + 30


def _heal(si: SignIn) -> None:
    _redis(si)._open_until = 0


def test_sign_out_without_redis_fails_loudly_and_a_revoked_session_never_comes_back(redis_url: str) -> None:
    prefix = f"signin-{uuid.uuid4().hex[:6]}:"
    a, b, c = replica(redis_url, prefix), replica(redis_url, prefix), replica(redis_url, prefix)
    cookie = {a.sso.cookie_name(SESSION_COOKIE): a.open_session("victim.token.value", 3600)}
    assert b.current(cookie)["t"] == "victim.token.value"
    # Sign-out lands on b while b cannot reach Redis: it says so, it never claims success.
    session = b.current(cookie)
    _blip(b)
    with pytest.raises(SignInError) as refused:
        b.revoke(session)
    assert refused.value.status == 503 and refused.value.title == "Sign-out failed"
    assert "still active" in refused.value.message
    assert b.current(cookie) is None, "no shared store: no session (sign in again), not a local copy"
    _heal(b)
    b.revoke(b.current(cookie))
    assert a.current(cookie) is None and c.current(cookie) is None
    # Revoked via b; a then loses Redis for a moment: the session a created does not come back.
    _blip(a)
    assert a.current(cookie) is None, "a revoked session revived from a's in-process map"
    _heal(a)
    assert a.current(cookie) is None
    # A replica without Redis cannot open a session either (it could not be revoked everywhere).
    _blip(a)
    with pytest.raises(SignInError) as down:
        a.open_session("t", 60)
    assert down.value.status == 503


def test_without_redis_configured_the_process_map_is_the_store() -> None:
    one = replica_without_redis()
    cookie = {one.sso.cookie_name(SESSION_COOKIE): one.open_session("tok", 60)}
    assert one.current(cookie)["t"] == "tok"
    one.revoke(one.current(cookie))
    assert one.current(cookie) is None


def replica_without_redis() -> SignIn:
    return replica(None, "")


class DripServer:
    """A token endpoint that sends its headers at once, then one byte every `every` seconds."""

    def __init__(self, every: float = 0.3, total: float = 6.0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.every, self.total = every, total
        self.served = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.served += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
            for _ in range(int(self.total / self.every)):
                if self.stop.is_set():
                    break
                time.sleep(self.every)
                conn.sendall(b" ")
        except OSError:
            pass
        finally:
            with self.lock:
                self.in_flight -= 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def _flow(si: SignIn, token_endpoint: str) -> tuple[dict[str, str], dict[str, str]]:
    """Start a sign-in against `token_endpoint`; (callback query, the browser's cookies)."""
    si.config = lambda: SimpleNamespace(issuers=[SimpleNamespace(name="people", iss="https://idp")])
    si.discovery = SimpleNamespace(  # type: ignore[assignment]
        fetcher=Fetcher(timeout=1.0),
        metadata=lambda issuer: {"authorization_endpoint": "https://idp/authorize", "token_endpoint": token_endpoint},
    )
    url, set_cookie = si.start()
    state = parse_qs(urlsplit(url).query)["state"][0]
    name, _, value = set_cookie.split(";")[0].partition("=")
    return {"code": "junk", "state": state}, {name: value}


def test_a_slow_token_endpoint_holds_callback_for_the_deadline_and_a_flow_is_used_once(redis_url: str) -> None:
    drip = DripServer()
    si = replica(redis_url, f"signin-{uuid.uuid4().hex[:6]}:")
    query, cookies = _flow(si, f"http://127.0.0.1:{drip.port}/token")
    times: list[float] = []
    errors: list[SignInError] = []

    def one() -> None:
        t0 = time.monotonic()
        try:
            si.finish(query, cookies, "1.2.3.4")
        except SignInError as e:
            errors.append(e)
        times.append(time.monotonic() - t0)

    try:
        threads = [threading.Thread(target=one) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        drip.close()
    # A total deadline of 1 s; without one the drip lasts 6 s. The rest is margin for a loaded machine.
    assert len(errors) == 5 and max(times) < 4.5, f"a total deadline of 1 s; each callback took {times}"
    assert drip.served == 1, "the replayed flow cookie never reaches the IdP"
    assert sorted(e.title for e in errors).count("This sign-in was already used") == 4
    assert [e.detail for e in errors if e.status == 503] == ["timed out"]
    # Separate flows: at most `per_origin` (2) redemptions in flight to one token endpoint.
    drip = DripServer()
    flows = [_flow(si, f"http://127.0.0.1:{drip.port}/token") for _ in range(4)]
    errors.clear()
    try:
        threads = [threading.Thread(target=lambda f=f: _finish(si, f, errors)) for f in flows]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        drip.close()
    assert drip.max_in_flight <= 2 and len(errors) == 4


def _finish(si: SignIn, flow: tuple[dict[str, str], dict[str, str]], errors: list[SignInError]) -> None:
    try:
        si.finish(flow[0], flow[1], "1.2.3.4")
    except SignInError as e:
        errors.append(e)


def test_an_idp_error_without_this_browsers_flow_shows_a_fixed_message() -> None:
    si = replica_without_redis()
    with pytest.raises(SignInError) as e:
        si.finish({"error": "access_denied", "error_description": "Call +1-555-EVIL to restore access"}, {}, "x")
    assert "EVIL" not in e.value.message and "EVIL" not in e.value.title and "EVIL" not in (e.value.detail or "")
    query, cookies = _flow(si, "http://127.0.0.1:9/token")
    with pytest.raises(SignInError) as e:
        si.finish({"error": "access_denied", "error_description": "EVIL", "state": "other"}, cookies, "x")
    assert "EVIL" not in e.value.message
    with pytest.raises(SignInError) as e:
        si.finish({"error": "access_denied", "error_description": "You said no", "state": query["state"]}, cookies, "x")
    assert e.value.message == "You said no", "the IdP's own answer to this browser's flow is shown"


def test_a_non_ascii_state_is_refused_as_not_this_browsers_not_a_500() -> None:
    """secrets.compare_digest raises TypeError on non-ASCII str: /callback?state=%C3%A9 was a 500."""
    si = replica_without_redis()
    _, cookies = _flow(si, "http://127.0.0.1:9/token")
    with pytest.raises(SignInError) as e:
        si.finish({"code": "x", "state": "\u00e9"}, cookies, "x")
    assert e.value.status == 400 and e.value.title == "This sign-in link is not yours"
