"""iam-token: RFC 8693 token exchange, and a browser sign-in page for people.

POST /oauth/token exchanges an IdP token for an OpenFaaS token. GET / shows who you are
once signed in; /login, /callback and /logout run the authorization-code flow (PKCE,
state, nonce) against the SSO JwtIssuer configured for people. The pages answer only on
the dedicated sign-in origin (`signin_origin`), never on the gateway's shared one.
"""

from __future__ import annotations

import functools
import os
import secrets
from urllib.parse import parse_qsl

import requests

from openfaas_iam.errors import InvalidRequest, OAuthError
from openfaas_iam.jose.jws import decode_json
from openfaas_iam.observability.audit import AuditLog
from openfaas_iam.observability.metrics import CONTENT_TYPE
from openfaas_iam.service.exchange import TT, ExchangeRequest, TokenExchange, parse_request
from openfaas_iam.service.responses import NO_STORE, json_response, metrics_response, not_ready_message, oauth_error
from openfaas_iam.service.routing import Router
from openfaas_iam.service.runtime import Runtime
from openfaas_iam.settings import Settings
from openfaas_iam.signin import pages
from openfaas_iam.signin.flow import (
    FLOW_COOKIE,
    SESSION_COOKIE,
    SESSION_TTL,
    SignIn,
    SignInError,
    SsoSettings,
    cookie,
    log_failure,
    parse_cookies,
)
from openfaas_iam.stores.watched_file import Unavailable, WatchedFile, read_stripped

rt = Runtime.build(Settings.from_env(os.environ))
s = rt.settings
exchange = TokenExchange(
    issuer_url=s.issuer_url,
    config=rt.config.get,
    keyset=rt.keyset.get,
    jwks=rt.jwks,
    audit=AuditLog(background=True),
    leeway=s.leeway_seconds,
    own_keys=rt.own_public_keys,
    metrics=rt.metrics,
)
router = Router()


@router.route("/oauth/token", "POST")
def token(event):
    if len(event.body) > s.max_body_bytes:
        return oauth_error(
            OAuthError("invalid_request", f"the request body is larger than {s.max_body_bytes} bytes", 413)
        )
    try:
        req = parse_request(event.body, event.headers.get("Content-Type"))
        return json_response(200, exchange.exchange(req, client=event.remote_addr), dict(NO_STORE))
    except OAuthError as e:
        return oauth_error(e)
    except Unavailable as e:
        return oauth_error(OAuthError("temporarily_unavailable", not_ready_message(e), 503))


@router.route("/oauth/token", "GET", "PUT", "PATCH", "DELETE")
def token_wrong_method(event):
    e = InvalidRequest(f"{event.method} is not allowed at the token endpoint; use POST (RFC 6749 §3.2)")
    e.status = 405
    resp = oauth_error(e)
    resp["headers"]["Allow"] = "POST"
    return resp


# -- browser sign-in ------------------------------------------------------------------------------
# Every page below answers only on the dedicated sign-in origin (`signin_origin`). On the gateway's
# shared origin any function's script could read it with fetch(), so there it refuses, sets no
# cookie and links to the right address (docs/architecture.md, "The sign-in origin").


_client_secret = WatchedFile(s.secret_path(s.sso_client_secret), read_stripped, what="SSO client secret")
_signin: SignIn | None = None
BASE = ""


def signin() -> SignIn:
    """Built on first use: the secret is mounted only where people sign in."""
    global _signin
    if not s.sso_issuer or not s.sso_client_id:
        raise SignInError("Sign-in is not configured", "Set sso_issuer and sso_client_id for iam-token.", 404)
    try:
        secret = _client_secret.get()
    except Unavailable:
        raise SignInError(
            "Sign-in is not configured", f"Mount the secret {s.sso_client_secret} for iam-token.", 404
        ) from None
    if _signin is None or _signin.sso.client_secret != secret:
        sso = SsoSettings(
            s.sso_issuer,
            s.sso_client_id,
            secret,
            s.sso_redirect_url,
            s.sso_scopes,
            origin=s.signin_origin,
            display_name=s.sso_display_name,
        )
        _signin = SignIn(
            sso=sso,
            config=rt.config.get,
            discovery=rt.jwks.discovery,
            jwks=rt.jwks,
            exchange=exchange,
            leeway=s.leeway_seconds,
            session_secret=("openfaas-iam:" + secret).encode(),
            store=rt.cache,
        )
    return _signin


def html(status: int, rendered: tuple[str, dict[str, str]], cookies: list[str] = ()) -> dict:
    body, headers = rendered
    return {"statusCode": status, "body": body, "headers": list(headers.items()) + [("Set-Cookie", c) for c in cookies]}


def unavailable(e: Exception) -> dict:
    return failed(
        SignInError("Sign-in is not available", "The IAM configuration is not loaded yet.", 503, not_ready_message(e))
    )


def failed(e: SignInError) -> dict:
    return html(e.status, pages.error(BASE, e.title, e.message, e.detail))


def browser_page(view):
    """Only on the sign-in origin, only for navigations; configuration problems as a page."""

    @functools.wraps(view)
    def guarded(event):
        if not s.signin_origin or not SsoSettings("", "", "", "", origin=s.signin_origin).serves(event.headers):
            return html(404, pages.wrong_origin(s.signin_origin))
        # Fetch metadata, where the browser sends it: the page is for top-level navigations only,
        # so a script's fetch() (even one claiming this host) gets nothing, whatever its cookies.
        mode = event.headers.get("Sec-Fetch-Mode")
        if mode is not None and mode != "navigate":
            return html(403, pages.error(BASE, "Open this page in the browser", "It is not served to scripts."))
        try:
            return view(event, signin())
        except SignInError as e:
            return failed(e)
        except Unavailable as e:
            return unavailable(e)

    return guarded


@router.route("/", "GET")
@browser_page
def home(event, si: SignIn):
    session = si.current(parse_cookies(event.headers.get("Cookie")))
    if session is None:
        return html(200, pages.landing(BASE, si.idp_name(si.issuer(rt.config.get()))))
    return html(200, signed_in_page(si, session))


def signed_in_page(si: SignIn, session: dict, function_token: pages.FunctionTokenResult | None = None):
    """The signed-in page for `session`, with its effective permissions asked of iam-authz (/whoami)."""
    token_value = session["t"]
    claims = decode_json(token_value.split(".")[1])
    whoami, problem = None, None
    try:
        r = requests.get(f"{s.authz_url}/whoami", headers={"Authorization": f"Bearer {token_value}"}, timeout=5)
        if r.status_code == 200:
            whoami = r.json()
        else:
            problem = f"HTTP {r.status_code}"
    except (requests.RequestException, ValueError) as e:
        problem = type(e).__name__
    issuer = si.issuer(rt.config.get())
    return pages.signed_in(
        base=BASE,
        claims=claims,
        token=token_value,
        whoami=whoami,
        whoami_error=problem,
        gateway=s.proxy_url,
        csrf=session["c"],
        idp_name=si.idp_name(issuer),
        authority=issuer.iss,
        client_id=si.sso.client_id,
        namespace=s.bundle_namespace,
        gateway_url=s.public_gateway_url,
        function_token=function_token,
    )


@router.route("/function-token", "POST")
@browser_page
def function_token(event, si: SignIn):
    """The page's form: a function token for one function (`audience=<ns>:<fn>`), answered on the page.

    Like sign-out, the form carries the session's CSRF value, so another site cannot mint
    tokens in the person's name (it could not read them either: the answer is a navigation).
    The exchange decides it exactly as POST /oauth/token would, audited the same way.
    """
    session = si.current(parse_cookies(event.headers.get("Cookie")))
    if session is None:
        return html(401, pages.landing(BASE, si.idp_name(si.issuer(rt.config.get()))))
    form = dict(parse_qsl(event.body.decode("utf-8", "replace")[: s.max_body_bytes]))
    # Bytes: compare_digest raises TypeError on a non-ASCII str, which would be a 500, not a refusal.
    if not secrets.compare_digest(form.get("csrf", "").encode(), session["c"].encode()):
        return failed(SignInError("Request refused", "The form did not come from this page.", 403))
    audience = form.get("audience", "").strip()[:200]
    if audience and ":" not in audience:
        audience = f"{s.bundle_namespace}:{audience}"
    if not audience:
        result = pages.FunctionTokenResult("", refused="Name the function: namespace:name, or a name.")
        return html(400, signed_in_page(si, session, result))
    request = ExchangeRequest(session["t"], TT + "access_token", "function", (audience,), None)
    try:
        answer = exchange.exchange(request, client=event.remote_addr)
    except OAuthError as e:
        return html(403, signed_in_page(si, session, pages.FunctionTokenResult(audience, refused=e.description)))
    result = pages.FunctionTokenResult(audience, answer["access_token"], int(answer.get("expires_in", 0)))
    return html(200, signed_in_page(si, session, result))


@router.route("/login", "GET")
@browser_page
def login(event, si: SignIn):
    try:
        url, flow = si.start()
    except SignInError as e:
        log_failure(e, event.remote_addr)
        raise
    return {
        "statusCode": 302,
        "body": "",
        "headers": [("Location", url), ("Cache-Control", "no-store"), ("Set-Cookie", flow)],
    }


@router.route("/callback", "GET")
@browser_page
def callback(event, si: SignIn):
    clear_flow = cookie(FLOW_COOKIE, "", si.sso, 0, "Lax")
    try:
        sealed, _ = si.finish(dict(event.query), parse_cookies(event.headers.get("Cookie")), event.remote_addr)
    except SignInError as e:
        log_failure(e, event.remote_addr)  # one line per failed sign-in: stage and reason, never a secret
        return html(e.status, pages.error(BASE, e.title, e.message, e.detail), [clear_flow])
    # 200 and a same-site step to the page, not a redirect: see pages.signing_in.
    return html(200, pages.signing_in(BASE), [clear_flow, cookie(SESSION_COOKIE, sealed, si.sso, SESSION_TTL)])


@router.route("/logout", "GET", "POST")
@browser_page
def logout(event, si: SignIn):
    session = si.current(parse_cookies(event.headers.get("Cookie")))
    if event.method == "GET":
        if session is None:
            return html(200, pages.signed_out(BASE))
        return html(200, pages.confirm_sign_out(BASE, session["c"]))
    # The form carries the session's own CSRF value; a cross-site POST cannot know it.
    form = dict(parse_qsl(event.body.decode("utf-8", "replace")))
    if session is not None:
        if not secrets.compare_digest(form.get("csrf", "").encode(), session["c"].encode()):
            return failed(SignInError("Sign-out refused", "The sign-out form did not come from this page.", 403))
        si.revoke(session)
    return html(200, pages.signed_out(BASE), [cookie(SESSION_COOKIE, "", si.sso, 0)])


@router.route("/metrics", "GET")
def metrics(event):
    """Prometheus text format, unauthenticated like every in-cluster scrape target: no secret or per-user label."""
    return metrics_response(rt.metrics.render(), CONTENT_TYPE)


@router.route("/healthz", "GET")
def healthz(event):
    return json_response(200, rt.health())


def handle(event, context):
    return router.dispatch(event)
