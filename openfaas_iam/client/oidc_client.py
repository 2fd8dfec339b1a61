"""The client side of sign-in: get an IdP token (code + PKCE, client credentials, CI) and exchange it.

Used by `openfaas-iam auth` (and the browser sign-in page). Every failure is an
AuthFlowError whose message a person can act on: the IdP's own `error_description`,
the exchange's, an unreachable host, a callback that never came.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import requests

from openfaas_iam.service.exchange import GRANT_TYPE, TT
from openfaas_iam.signin import pages as signin_pages


class AuthFlowError(Exception):
    """Sign-in failed; the message says why and what to do."""


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str | None
    token_endpoint: str
    jwks_uri: str | None


def _session(verify: str | bool = True) -> requests.Session:
    s = requests.Session()
    s.verify = verify
    return s


CALL_DEADLINE = 15.0  # seconds for a whole IdP call: connect, headers and body
MAX_BODY = 1024 * 1024


def _bounded(session: requests.Session, method: str, url: str, what: str, **kwargs: Any) -> tuple[int, bytes]:
    """One IdP call with a total deadline and a size cap: (status, body).

    requests' `timeout` bounds each socket read, so a server dripping a byte a second never
    times out. The call runs on a daemon thread the command stops waiting for at the
    deadline (the command then ends, and the thread with it).
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            with session.request(method, url, timeout=CALL_DEADLINE, stream=True, **kwargs) as resp:
                body = bytearray()
                for chunk in resp.iter_content(16384):
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise AuthFlowError(f"{what} at {url} answered more than {MAX_BODY} bytes")
                box["done"] = (resp.status_code, bytes(body))
        except AuthFlowError as e:
            box["error"] = e
        except requests.RequestException as e:
            box["error"] = AuthFlowError(f"cannot reach {what} at {url} ({type(e).__name__})")

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(CALL_DEADLINE)
    if "done" in box:
        return box["done"]
    if "error" in box:
        raise box["error"]
    raise AuthFlowError(f"{what} at {url} did not answer within {CALL_DEADLINE:g}s")


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _get_json(session: requests.Session, url: str, what: str) -> dict[str, Any]:
    status, body = _bounded(session, "GET", url, what)
    if status != 200:
        raise AuthFlowError(f"{what} at {url} answered HTTP {status}")
    doc = _json_object(body)
    if doc is None:
        raise AuthFlowError(f"{what} at {url} did not return a JSON object")
    return doc


def discover(issuer: str, session: requests.Session) -> ProviderMetadata:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    doc = _get_json(session, url, "the discovery document")
    if doc.get("issuer") != issuer.rstrip("/") and doc.get("issuer") != issuer:
        raise AuthFlowError(f"the discovery document at {url} names issuer {doc.get('issuer')!r}, not {issuer!r}")
    if not doc.get("token_endpoint"):
        raise AuthFlowError(f"the discovery document at {url} has no token_endpoint")
    return ProviderMetadata(
        doc["issuer"], doc.get("authorization_endpoint"), doc["token_endpoint"], doc.get("jwks_uri")
    )


def _token_error(status: int, body: bytes, what: str) -> AuthFlowError:
    doc = _json_object(body)
    if doc is not None and doc.get("error"):
        desc = doc.get("error_description")
        return AuthFlowError(f"{what} refused: {doc['error']}" + (f": {desc}" if desc else ""))
    return AuthFlowError(f"{what} refused: HTTP {status}")


def _post_token(
    session: requests.Session, url: str, data: dict[str, Any], auth: tuple[str, str] | None, what: str
) -> dict[str, Any]:
    status, body = _bounded(session, "POST", url, what, data=data, auth=auth)
    if status != 200:
        raise _token_error(status, body, what)
    doc = _json_object(body)
    if doc is None:
        raise AuthFlowError(f"{what} at {url} did not return JSON")
    return doc


def _client_auth(client_id: str, client_secret: str | None) -> tuple[str, str] | None:
    # RFC 6749 §2.3.1: form-urlencode id and secret inside Basic auth.
    from urllib.parse import quote

    return (quote(client_id, safe=""), quote(client_secret, safe="")) if client_secret else None


# -- authorization code with PKCE --------------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


OPENED_TWICE = "the sign-in link was opened twice; another local user may have tried to use it; run the command again"
CONTEST_WINDOW = 3.0  # seconds after the start page is served during which a second opening still counts
MAX_CONNECTIONS = 8  # threads the loopback server may use at once; more connections are closed at once
# How long the callback's page waits for the command to redeem the code and verify the id_token
# (each call to the IdP has a 15-second deadline), so that it can say who signed in.
REPORT_WAIT = 35.0


class _BoundedServer(http.server.ThreadingHTTPServer):
    """ThreadingHTTPServer with at most MAX_CONNECTIONS threads: a local flood cannot exhaust the CLI."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class CallbackServer:
    """A loopback server for `/oauth/callback` (RFC 8252 §7.3) that ends the flow exactly once.

    Only a request on the exact path carrying this sign-in's exact `state` counts; anything
    else (another local process probing the port, a stale tab) is answered and ignored. Each
    connection is served on its own thread (at most MAX_CONNECTIONS) with a short socket
    timeout, so an idle connection holds neither the others nor the total deadline of `wait`.

    `/start/<random>` is a one-shot redirect to the IdP: the browser is opened on it, so the
    authorization URL (its `code_challenge` and `state`) never appears on a process command
    line. The start URL itself does, so it is contested: another local user who reads it and
    opens it first (to sign the victim's CLI in as themselves: login CSRF) cannot stop the
    victim's browser from opening it too, and a second opening aborts the flow
    (OPENED_TWICE). The start response also sets a random HttpOnly cookie that the callback
    must carry, so the callback is accepted only from the browser that opened the link.
    Residual risk: an attacker whose whole IdP round trip finishes before the victim's browser
    opens the link and more than CONTEST_WINDOW seconds after it opened it first; the CLI then
    prints the attacker's identity ("Signed in as ...") before anything is used.
    """

    def __init__(self, host: str, port: int, state: str = "", *, awaits_report: bool = False) -> None:
        """`awaits_report`: the callback's page waits for `report` (who signed in, or why not)."""
        self.result: dict[str, str] | None = None
        self._awaits_report = awaits_report
        self._reported = threading.Event()
        self._answered = threading.Event()
        self._outcome: tuple[dict[str, Any] | None, str | None] = (None, None)
        self.state = state
        self.start_path = f"/start/{secrets.token_urlsafe(16)}"
        self.authorize_url = ""
        self.aborted = False
        self._opened_at: float | None = None
        self._browser = secrets.token_urlsafe(24)
        self._cookie = f"openfaas_iam_cli_{port}"  # cookies are not per port: one name per sign-in
        self._done = threading.Event()
        self._contested = threading.Event()
        self._guard = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 5  # seconds an idle or slow connection may hold its own thread

            def _answer(
                self,
                status: int,
                text: str,
                location: str | None = None,
                cookie: str | None = None,
                *,
                title: str = "openfaas-iam auth",
                ok: bool | None = None,
                claims: dict[str, Any] | None = None,
            ) -> None:
                page = signin_pages.cli_page(title, text, ok=ok, claims=claims)
                body = page.encode()
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                if cookie:
                    self.send_header("Set-Cookie", cookie)
                for name, value in signin_pages.cli_headers(page).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _from_starting_browser(self) -> bool:
                sent = [c.strip() for c in (self.headers.get("Cookie") or "").split(";")]
                values = [c.partition("=")[2] for c in sent if c.partition("=")[0] == outer._cookie]
                return len(values) == 1 and secrets.compare_digest(values[0].encode(), outer._browser.encode())

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == outer.start_path:
                    with outer._guard:
                        first = outer._opened_at is None
                        if first:
                            outer._opened_at = time.monotonic()
                        else:  # a second opening, by anyone: nobody's sign-in goes on
                            outer.aborted = True
                            outer._contested.set()
                            outer._done.set()
                    if first and outer.authorize_url:
                        cookie = f"{outer._cookie}={outer._browser}; Path=/; HttpOnly; SameSite=Lax"
                        self._answer(302, "Continue to sign in.", outer.authorize_url, cookie)
                    else:
                        self._answer(
                            409,
                            "This sign-in link was opened twice, so the sign-in was stopped. Run the command again.",
                            title="Sign-in stopped",
                            ok=False,
                        )
                    return
                if url.path != "/oauth/callback":
                    self._answer(404, "Not found.")
                    return
                query = parse_qs(url.query)
                states = query.get("state", [])
                if (
                    len(states) != 1
                    or not outer.state
                    or not secrets.compare_digest(states[0].encode(), outer.state.encode())
                ):
                    self._answer(400, "This is not the sign-in the command is waiting for.")
                    return
                if not self._from_starting_browser():
                    self._answer(400, "This browser did not open the command's sign-in link.")
                    return
                with outer._guard:
                    if outer._done.is_set():
                        self._answer(400, "This sign-in has already finished.")
                        return
                    outer.result = {k: v[0] for k, v in query.items()}
                    outer._done.set()
                try:
                    self._finish_page()
                finally:
                    outer._answered.set()

            def _finish_page(self) -> None:
                """The page that ends the sign-in: who signed in (once the command has checked), or why not."""
                assert outer.result is not None
                if outer._awaits_report:
                    outer._reported.wait(REPORT_WAIT)
                claims, problem = outer._outcome
                if problem is not None or "code" not in outer.result:
                    reason = (problem or "your identity provider did not sign you in").rstrip(".")
                    text = f"{reason[:1].upper()}{reason[1:]}. The command in your terminal says what to do."
                    self._answer(200, text, title="Sign-in failed", ok=False)
                elif claims is not None:
                    self._answer(
                        200,
                        "The command is saving your OpenFaaS token for faas-cli. You can close this window.",
                        title="You are signed in",
                        ok=True,
                        claims=claims,
                    )
                else:
                    self._answer(200, "Signed in. Return to your terminal; you can close this window.", ok=True)

            def log_message(self, *args: object) -> None:
                pass

        try:
            self.server = _BoundedServer((host, port), Handler)
        except OSError as e:
            raise AuthFlowError(f"cannot listen on {host}:{port} for the callback ({e.strerror}); use --port") from None
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def report(self, claims: dict[str, Any] | None = None, problem: str | None = None) -> None:
        """Give the callback's page the outcome: the verified id_token's claims, or the problem.

        When a callback is being answered, waits (briefly) until its page has been sent, so the
        command does not exit before the browser is told who signed in.
        """
        self._outcome = (claims, problem)
        self._reported.set()
        if self.result is not None:
            self._answered.wait(5)

    def wait(self, timeout: float) -> dict[str, str]:
        """The callback's query; `timeout` is the total time the sign-in may take.

        A callback that comes within CONTEST_WINDOW of the start page being served waits out
        the rest of that window: a second opening of the link (the victim's own browser, late)
        still aborts the flow.
        """
        try:
            if not self._done.wait(timeout):
                raise AuthFlowError(
                    f"no sign-in callback within {timeout:g}s; run the command again and finish signing in"
                )
            if not self.aborted and self._opened_at is not None:
                self._contested.wait(max(0.0, self._opened_at + CONTEST_WINDOW - time.monotonic()))
            if self.aborted:
                raise AuthFlowError(OPENED_TWICE)
            assert self.result is not None
            return self.result
        finally:
            self.server.shutdown()
            self.server.server_close()


def authorization_url(
    meta: ProviderMetadata,
    client_id: str,
    redirect_uri: str,
    scope: str,
    challenge: str,
    state: str,
    nonce: str,
    audience: str | None,
) -> str:
    if not meta.authorization_endpoint:
        raise AuthFlowError(
            f"the IdP {meta.issuer} has no authorization_endpoint; use --grant client_credentials or --token"
        )
    params = {
        "client_id": client_id,
        "response_type": "code",
        "scope": scope,
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": state,
        "nonce": nonce,
    }
    if audience:
        params["audience"] = audience
    sep = "&" if "?" in meta.authorization_endpoint else "?"
    return meta.authorization_endpoint + sep + urlencode(params)


def verify_id_token(
    id_token: str, meta: ProviderMetadata, client_id: str, nonce: str, session: requests.Session
) -> dict[str, Any]:
    """Signature from the IdP's own JWKS, `iss`, `aud` = our client, `nonce` = ours (OIDC Core §3.1.3.7)."""
    if not meta.jwks_uri:
        raise AuthFlowError("the IdP publishes no jwks_uri; cannot verify the id_token")
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError:
        raise AuthFlowError("the IdP returned an id_token that is not a JWT") from None
    alg = header.get("alg")
    if alg not in ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"):
        raise AuthFlowError(f"the id_token uses algorithm {alg!r}, which is not accepted")
    keys = _get_json(session, meta.jwks_uri, "the IdP's JWKS").get("keys", [])
    key = next((k for k in keys if k.get("kid") == header.get("kid")), None)
    if key is None:
        raise AuthFlowError(f"the id_token's key {header.get('kid')!r} is not in the IdP's JWKS")
    try:
        claims = jwt.decode(
            id_token,
            jwt.PyJWK(key, algorithm=alg).key,
            algorithms=[alg],
            audience=client_id,
            issuer=meta.issuer,
            leeway=60,
        )
    except jwt.PyJWTError as e:
        raise AuthFlowError(f"the id_token is invalid: {e}") from None
    if not secrets.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise AuthFlowError("the id_token's nonce does not match this sign-in (a replayed token?)")
    return claims


def code_flow(
    *,
    meta: ProviderMetadata,
    client_id: str,
    client_secret: str | None,
    redirect_host: str,
    port: int,
    scope: str,
    audience: str | None,
    timeout: float,
    open_browser: bool,
    say: Any,
    session: requests.Session,
) -> str:
    """Run the browser sign-in; return the verified id_token."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    host = urlsplit(redirect_host).hostname or "127.0.0.1"
    redirect_uri = f"{redirect_host.rstrip('/')}:{port}/oauth/callback"
    server = CallbackServer(host, port, state, awaits_report=True)
    url = authorization_url(meta, client_id, redirect_uri, scope, challenge, state, nonce, audience)
    server.authorize_url = url
    # The browser gets a one-shot local address, not the authorization URL: a browser's command
    # line is visible to every local user (ps), and that URL carries the challenge and state. The
    # same address is what we print: the callback is accepted only from the browser that opened it.
    start = f"{redirect_host.rstrip('/')}:{port}{server.start_path}"
    opened = False
    if open_browser:
        import webbrowser

        try:
            opened = webbrowser.open(start)
        except webbrowser.Error:
            opened = False
    say(
        ("Opened your browser to sign in. If it did not open, visit:\n" if opened else "Sign in by visiting:\n") + start
    )
    try:
        id_token, claims = _redeem_callback(
            server, timeout, state, meta, client_id, client_secret, redirect_uri, verifier, nonce, session
        )
    except AuthFlowError as e:
        server.report(problem=str(e))
        raise
    except BaseException:
        server.report(problem="the sign-in could not be finished")
        raise
    server.report(claims=claims)
    return id_token


def _redeem_callback(
    server: CallbackServer,
    timeout: float,
    state: str,
    meta: ProviderMetadata,
    client_id: str,
    client_secret: str | None,
    redirect_uri: str,
    verifier: str,
    nonce: str,
    session: requests.Session,
) -> tuple[str, dict[str, Any]]:
    """Wait for the callback, redeem its code, verify the id_token: (id_token, its claims)."""
    result = server.wait(timeout)
    if "error" in result:
        desc = result.get("error_description")
        raise AuthFlowError(f"the IdP refused the sign-in: {result['error']}" + (f": {desc}" if desc else ""))
    if not secrets.compare_digest(result.get("state", "").encode(), state.encode()):
        raise AuthFlowError("the callback's state does not match this sign-in; start again")
    tokens = _post_token(
        session,
        meta.token_endpoint,
        {
            "grant_type": "authorization_code",
            "code": result.get("code", ""),
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            **({} if client_secret else {"client_id": client_id}),
        },
        _client_auth(client_id, client_secret),
        "the IdP's token endpoint",
    )
    id_token = tokens.get("id_token")
    if not isinstance(id_token, str):
        raise AuthFlowError("the IdP returned no id_token; is the 'openid' scope allowed for this client?")
    return id_token, verify_id_token(id_token, meta, client_id, nonce, session)


def client_credentials(
    *,
    meta: ProviderMetadata,
    client_id: str,
    client_secret: str,
    scope: str | None,
    audience: str | None,
    session: requests.Session,
) -> str:
    data: dict[str, Any] = {"grant_type": "client_credentials"}
    if scope:
        data["scope"] = scope
    if audience:
        data["audience"] = audience  # Auth0, Okta
        data["resource"] = audience  # RFC 8707
    tokens = _post_token(
        session, meta.token_endpoint, data, _client_auth(client_id, client_secret), "the IdP's token endpoint"
    )
    token = tokens.get("access_token")
    if not isinstance(token, str) or token.count(".") != 2:
        raise AuthFlowError("the IdP returned an opaque access token; configure it to issue JWT access tokens")
    return token


def github_actions_token(env: dict[str, str], audience: str | None, session: requests.Session) -> str | None:
    """The job's OIDC token on GitHub Actions (needs `permissions: id-token: write`)."""
    url, bearer = env.get("ACTIONS_ID_TOKEN_REQUEST_URL"), env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if not url:
        return None
    if not bearer:
        raise AuthFlowError("ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set; add `permissions: id-token: write` to the job")
    if audience:
        url += ("&" if "?" in url else "?") + urlencode({"audience": audience})
    try:
        resp = session.get(url, headers={"Authorization": f"Bearer {bearer}"}, timeout=15)
    except requests.RequestException as e:
        raise AuthFlowError(f"cannot reach GitHub's token service ({type(e).__name__})") from None
    if resp.status_code != 200:
        raise AuthFlowError(f"GitHub's token service answered HTTP {resp.status_code}")
    value = resp.json().get("value")
    if not isinstance(value, str):
        raise AuthFlowError("GitHub's token service returned no token")
    return value


def exchange(
    token_endpoint: str,
    subject_token: str,
    subject_token_type: str,
    session: requests.Session,
    scope: str | None = None,
) -> dict[str, Any]:
    data = {"grant_type": GRANT_TYPE, "subject_token": subject_token, "subject_token_type": TT + subject_token_type}
    if scope:
        data["scope"] = scope
    return _post_token(session, token_endpoint, data, None, "the token exchange")


def decode_unverified(token: str) -> dict[str, Any]:
    """`{"header", "payload"}` for printing (the signature is not checked: inspection only)."""
    try:
        return {
            "header": jwt.get_unverified_header(token),
            "payload": jwt.decode(token, options={"verify_signature": False}),
        }
    except jwt.PyJWTError as e:
        raise AuthFlowError(f"not a JWT: {e}") from None


def expires_in(token: str) -> int:
    exp = decode_unverified(token)["payload"].get("exp")
    return int(exp - time.time()) if isinstance(exp, (int, float)) else 0
