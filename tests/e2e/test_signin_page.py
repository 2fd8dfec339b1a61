"""The browser sign-in page, driven in real headless Chromium through the real IdP's login pages."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from conftest import ROOT, free_port, make_project, start_gateway
from idp_server import OidcProvider, drive_login

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
CLIENT_SECRET = "openfaas-secret"
DISPLAY_NAME = "Example Corp SSO"  # sso_display_name: what people know their IdP as
ACCOUNTS: dict[str, Any] = {
    "alice": {
        "groups": ["dev", "ops"],
        "email": "alice@example.com",
        "preferred_username": "alice",
        "name": "Alice Example",
    },
    "mallory": {"groups": ["guests"], "preferred_username": "mallory"},
    "eve": {"groups": ["dev"], "preferred_username": "eve"},
}
# A user's function on the shared gateway origin whose page's script goes after the sign-in page.
HOSTILE = """
  evil:
    lang: python3-http-iam
    handler: ./fixtures/hostile
    image: test/evil:latest
    namespace: openfaas-fn
"""


def _transient() -> tuple[type[Exception], ...]:
    """Errors a navigation can cause between finding an element and reading it (not failures)."""
    try:
        from selenium.common.exceptions import (
            NoSuchElementException,
            StaleElementReferenceException,
            WebDriverException,
        )
    except ImportError:  # pragma: no cover - the browser tests skip without selenium
        return ()
    return (NoSuchElementException, StaleElementReferenceException, WebDriverException)


TRANSIENT = _transient()


def docs(iss: str) -> list[dict[str, Any]]:
    def obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "iam.openfaas.com/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}

    return [
        obj("JwtIssuer", "people", {"iss": iss, "aud": ["openfaas"], "tokenExpiry": "1h"}),
        # CE: one namespace, access by name prefix (issue 17).
        obj(
            "Policy",
            "dev-rw",
            {
                "statement": [
                    {
                        "sid": "own",
                        "effect": "Allow",
                        "action": ["Function:*"],
                        "resource": ["openfaas-fn:dev-${jwt:preferred_username}-*"],
                    },
                    {"sid": "no-secrets", "effect": "Deny", "action": ["Secret:*"], "resource": ["*"]},
                ]
            },
        ),
        obj(
            "Policy",
            "ops-ro",
            {
                "statement": [
                    {
                        "sid": "read",
                        "effect": "Allow",
                        "action": ["Function:Get", "Function:List", "Function:Logs", "Function:Invoke"],
                        "resource": ["openfaas-fn:*"],
                    },
                    {
                        "sid": "not-billing",
                        "effect": "Deny",
                        "action": ["Function:Invoke"],
                        "resource": ["openfaas-fn:billing"],
                    },
                ]
            },
        ),
        obj(
            "Role",
            "developers",
            {"policy": ["dev-rw"], "condition": {"ForAnyValue:StringEqual": {"jwt:groups": ["dev"]}}},
        ),
        obj(
            "Role",
            "operators",
            {"policy": ["ops-ro"], "condition": {"ForAnyValue:StringEqual": {"jwt:groups": ["ops"]}}},
        ),
    ]


class Env:
    def __init__(self, idp: OidcProvider, gw: Any, proxy: str) -> None:
        self.idp, self.gw, self.proxy = idp, gw, proxy
        self.base = f"http://127.0.0.1:{gw.port}"  # the gateway's shared origin: every function lives here
        self.page = gw.signin_origin  # the sign-in page's own origin: http://localhost:<port>
        self.shared_page = f"{self.base}/function/iam-token"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("signin")
    port, signin_port, authz_port = free_port(), free_port(), free_port()
    idp = OidcProvider(free_port(), redirect_uris=[f"http://localhost:{signin_port}/callback"]).start(accounts=ACCOUNTS)
    (tmp / "iam.json").write_text(json.dumps(docs(idp.issuer)))
    store = tmp / "state" / "secrets" / "sso-client-secret"
    store.mkdir(parents=True)
    (store / "sso-client-secret").write_text(CLIENT_SECRET)
    gw = start_gateway(
        tmp,
        iam_config=tmp / "iam.json",
        port=port,
        env={"SSO_ISSUER": "people", "SSO_CLIENT_ID": "openfaas", "SSO_DISPLAY_NAME": DISPLAY_NAME},
        stack=make_project(tmp / "project", HOSTILE),
        signin_port=signin_port,
        authz_port=authz_port,
    )
    try:
        yield Env(idp, gw, f"http://127.0.0.1:{authz_port}")
    finally:
        gw.stop()
        idp.stop()


@pytest.fixture
def browser(tmp_path: Path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "Chromium is not installed (Debian: apt-get install chromium chromium-driver; make test does it as root)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1700",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(browser, path: Path, width: int, height: int) -> Path:
    """The viewport at `width` x `height` CSS pixels (a phone: mobile emulation), checked for sideways scrolling."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    try:
        assert browser.execute_script("return window.innerWidth") == width
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways at {width}px ({overflow}px)"
        browser.save_screenshot(str(path))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert path.stat().st_size > 10_000
    return path


def visible(browser) -> str:
    """What a person sees: the rendered text of the whole page (closed disclosures excluded)."""
    from selenium.webdriver.common.by import By

    return browser.find_element(By.TAG_NAME, "body").text


def test_sign_in_see_copy_use_and_sign_out(env: Env, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20, ignored_exceptions=TRANSIENT)
    browser.get(env.page + "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in to OpenFaaS"
    # The IdP by the name people know (sso_display_name), not the JwtIssuer's internal name.
    assert browser.find_element(By.ID, "idp").text == DISPLAY_NAME and "people" not in visible(browser)
    browser.find_element(By.LINK_TEXT, f"Sign in with {DISPLAY_NAME}").click()
    # The real provider's login page (oidc-provider's dev interactions), then its consent page.
    wait.until(ec.presence_of_element_located((By.NAME, "login"))).send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys("any password")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[name=prompt][value=consent]")))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "You are signed in"))

    assert browser.current_url == env.page + "/"
    assert browser.find_element(By.ID, "subject").text == "fed:alice"
    assert browser.find_element(By.ID, "idp").text == DISPLAY_NAME
    policies = browser.find_element(By.ID, "policies").text
    assert "dev-rw" in policies and "ops-ro" in policies
    body = browser.find_element(By.TAG_NAME, "main").text
    assert env.idp.issuer in body and "Alice Example" in body and "dev" in body and "ops" in body
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "tbody tr")]
    assert len(rows) == 4 and "openfaas-fn:dev-alice-*" in rows[0] and "Deny" in rows[1]
    countdown = browser.find_element(By.ID, "countdown")
    wait.until(lambda d: "left" in countdown.text)
    first = countdown.text
    time.sleep(1.2)
    assert countdown.text != first and re.match(r"\d+m \d\ds left", countdown.text), "the expiry counts down"
    # Commands first, for this user: save a token for the proxy's host root, then what the policies allow.
    auth = browser.find_element(By.ID, "auth-command").text
    assert f"openfaas-iam auth --gateway {env.proxy}" in auth
    assert f"--authority {env.idp.issuer} --client-id openfaas" in auth
    commands = browser.find_element(By.ID, "commands").text
    assert f"faas-cli list --gateway {env.proxy}" in commands

    # The token: hidden until asked for, and in the page once.
    token = browser.find_element(By.ID, "token").get_attribute("value")
    assert token.count(".") == 2
    assert browser.page_source.count(token) == 1, "the token is in the page once"
    assert token not in visible(browser) and token[:40] not in visible(browser), "hidden until asked for"
    assert not browser.find_element(By.ID, "token").is_displayed()
    # Copy works without revealing it; then use what was copied against /authorize.
    button = browser.find_element(By.CSS_SELECTOR, "button[data-copy=token]")
    assert button.is_displayed(), "the script shows the copy button"
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": env.page, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    button.click()
    wait.until(lambda d: button.text == "Copied")
    copied = browser.execute_async_script(
        "var done = arguments[0]; navigator.clipboard.readText().then(done, function (e) { done('error: ' + e); });"
    )
    assert copied == token, "the clipboard holds the token"
    assert token[:40] not in visible(browser) and not browser.find_element(By.ID, "token").is_displayed()
    browser.find_element(By.XPATH, "//summary[normalize-space()='Show token']").click()
    wait.until(lambda d: d.find_element(By.ID, "token").is_displayed())
    assert browser.find_element(By.XPATH, "//summary[normalize-space()='Hide token']")
    decision = requests.post(
        f"{env.base}/function/iam-authz/authorize",
        json=[
            {"action": "Function:Deploy", "resource": "openfaas-fn:dev-alice-x"},
            {"action": "Function:Create", "resource": "openfaas-fn:dev-alice-x"},
        ],
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    assert [d["allowed"] for d in decision] == [False, True]

    cookies = {c["name"]: c for c in browser.get_cookies()}
    session = cookies["iam_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and not session["secure"], "loopback: not Secure"
    assert token not in session["value"] and token.split(".")[1] not in session["value"], "no token in clear"
    assert session["domain"] == "localhost" and session["path"] == "/", "host-only, for the sign-in origin"
    assert len(session["value"]) < 400, "the token stays server-side: the cookie is an id"

    # The function-token form, in the browser: answered on the page, the token hidden until asked for.
    browser.get(env.page + "/")
    field = browser.find_element(By.ID, "audience")
    field.send_keys("dev-alice-api")
    browser.find_element(By.XPATH, "//button[normalize-space()='Get function token']").click()
    wait.until(ec.presence_of_element_located((By.ID, "fn-result")))
    assert "openfaas-fn:dev-alice-api" in browser.find_element(By.ID, "fn-result").text
    fn_token = browser.find_element(By.ID, "fn-token").get_attribute("value")
    assert fn_token.count(".") == 2 and browser.page_source.count(fn_token) == 1
    assert fn_token[:40] not in visible(browser) and not browser.find_element(By.ID, "fn-token").is_displayed()
    browser.find_element(By.XPATH, "//summary[normalize-space()='Show function token']").click()
    wait.until(lambda d: d.find_element(By.ID, "fn-token").is_displayed())

    # Screenshots at desktop and phone widths, of the page as people first see it.
    browser.get(env.page + "/")
    wait.until(lambda d: "left" in d.find_element(By.ID, "countdown").text)
    shots = {}
    for name, (width, height) in {"signin.png": (1280, 800), "signin-phone.png": (390, 844)}.items():
        shots[name] = screenshot(browser, tmp_path / name, width, height)
    if os.environ.get("UPDATE_SCREENSHOT"):
        for name, shot in shots.items():
            shutil.copy(shot, ROOT / "docs" / name)

    # A GET of /logout (a link, an image, another site) only asks.
    browser.get(env.page + "/logout")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign out?"
    browser.get(env.page + "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "You are signed in"
    copied_cookie = {"iam_session": session["value"]}
    browser.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "You are signed out"))
    browser.get(env.page + "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in to OpenFaaS"
    # A copy of the cookie taken before sign-out is no session any more (revoked server-side).
    r = requests.get(env.page + "/", cookies=copied_cookie, timeout=10)
    assert "Sign in to OpenFaaS" in r.text and token not in r.text


def start_flow(env: Env) -> tuple[requests.Session, str]:
    s = requests.Session()
    r = s.get(f"{env.page}/login", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and "iam_signin=" in r.headers["Set-Cookie"]
    assert "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Lax" in r.headers["Set-Cookie"]
    return s, r.headers["Location"]


def test_errors_people_understand(env: Env) -> None:
    # The IdP refused (the person pressed "cancel").
    s, url = start_flow(env)
    state = parse_qs(urlsplit(url).query)["state"][0]
    r = s.get(
        f"{env.page}/callback",
        params={"error": "access_denied", "error_description": "End-User aborted interaction", "state": state},
        timeout=10,
    )
    assert (
        r.status_code == 400
        and "Your identity provider refused the sign-in" in r.text
        and "End-User aborted interaction" in r.text
    )
    # No policies: the page gives the subject to pass to an admin.
    s, url = start_flow(env)
    callback = drive_login(url, login="mallory", redirect_uri=f"{env.page}/callback")
    r = s.get(callback, timeout=10)
    assert r.status_code == 403 and "You have no access yet" in r.text and "this subject: mallory" in r.text
    # The flow cookie is gone (another browser, or too late).
    _, url = start_flow(env)
    callback = drive_login(url, login="alice", redirect_uri=f"{env.page}/callback")
    r = requests.get(callback, timeout=10)
    assert r.status_code == 400 and "Your sign-in expired" in r.text
    # A callback whose state is not this browser's (login CSRF).
    s, _ = start_flow(env)
    r = s.get(f"{env.page}/callback", params={"code": "x", "state": "forged"}, timeout=10)
    assert r.status_code == 400 and "This sign-in link is not yours" in r.text
    # A copy of the flow cookie replayed at /callback: the flow is used once, on the server (issue 20).
    s, url = start_flow(env)
    flow_cookie = s.cookies.get("iam_signin")
    callback = drive_login(url, login="mallory", redirect_uri=f"{env.page}/callback")
    assert s.get(callback, timeout=10).status_code == 403
    r = requests.get(callback, cookies={"iam_signin": flow_cookie}, timeout=10)
    assert r.status_code == 400 and "This sign-in was already used" in r.text
    # Text anyone can put in a link is not shown without this browser's flow.
    r = requests.get(f"{env.page}/callback", params={"error": "x", "error_description": "Call 555-EVIL"}, timeout=10)
    assert r.status_code == 400 and "Your sign-in expired" in r.text and "EVIL" not in r.text
    # A forged session cookie is no session.
    r = requests.get(f"{env.page}/", cookies={"iam_session": "forged"}, timeout=10)
    assert "Sign in to OpenFaaS" in r.text
    for page in (r,):
        assert (
            "default-src 'none'" in page.headers["Content-Security-Policy"]
            and page.headers["Cache-Control"] == "no-store"
        )


def signed_in_session(env: Env, login: str) -> tuple[requests.Session, str]:
    """A requests session signed in as `login` on the sign-in origin, and the page it sees."""
    s, url = start_flow(env)
    assert s.get(drive_login(url, login=login, redirect_uri=f"{env.page}/callback"), timeout=10).status_code == 200
    r = s.get(f"{env.page}/", timeout=10)
    assert "You are signed in" in r.text
    return s, r.text


def section(page: str, element_id: str) -> str:
    """The text of the element with this id (tags dropped), from the page's HTML."""
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</(pre|p|div)>', page, re.S)
    assert m, element_id
    return html.unescape(re.sub(r"<[^>]+>", "", m.group(1)))


def test_suggested_commands_follow_each_users_permissions(env: Env) -> None:
    """Issue 17: a `faas-cli list` for someone whose access is a name prefix answers 403."""
    _, alice = signed_in_session(env, "alice")  # dev-rw and ops-ro: the whole namespace to read
    _, eve = signed_in_session(env, "eve")  # dev-rw only: her own prefix
    for page in (alice, eve):
        auth = section(page, "auth-command")
        assert f"openfaas-iam auth --gateway {env.proxy}" in auth and f"--authority {env.idp.issuer}" in auth
        assert "secret list" not in section(page, "commands"), "Secret:* is denied"
    a, e = section(alice, "commands"), section(eve, "commands")
    assert f"faas-cli list --gateway {env.proxy}" in a
    assert "faas-cli list" not in e, "eve may not list the namespace"
    assert f"faas-cli describe dev-eve-NAME --gateway {env.proxy}" in e
    assert f"faas-cli deploy --image IMAGE --name dev-eve-NAME --gateway {env.proxy}" in e
    assert f"faas-cli logs dev-eve-NAME --gateway {env.proxy}" in e
    assert "dev-alice" not in e and "dev-eve" not in a
    # What each suggestion needs is said next to it, and the proxy agrees with it.
    assert "# Function:List on openfaas-fn:*" in a and "# Function:Get on openfaas-fn:dev-eve-NAME" in e


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m
    return html.unescape(m.group(1))


def test_function_token_form(env: Env) -> None:
    s, page = signed_in_session(env, "alice")
    assert "You may invoke" in page and "openfaas-fn:dev-alice-NAME" in page
    # Allowed: a function token for that one function, in the page once, behind "Show".
    r = s.post(f"{env.page}/function-token", data={"csrf": csrf_of(page), "audience": "dev-alice-api"}, timeout=10)
    assert r.status_code == 200 and 'id="fn-result"' in r.text
    m = re.search(r'<textarea id="fn-token"[^>]*>([^<]+)</textarea>', r.text)
    assert m and r.text.count(m.group(1)) == 1
    claims = jwt.decode(m.group(1), options={"verify_signature": False})
    assert claims["function"]["audience"] == ["openfaas-fn:dev-alice-api"]
    assert "<details" in r.text and 'id="fn-token-box"' in r.text
    # Denied (a Deny on billing): refused, with the exchange's reason, and no token.
    r = s.post(
        f"{env.page}/function-token", data={"csrf": csrf_of(page), "audience": "openfaas-fn:billing"}, timeout=10
    )
    assert r.status_code == 403 and 'id="fn-error"' in r.text and 'id="fn-token"' not in r.text
    assert "openfaas-fn:billing is outside the subject&#x27;s Function:Invoke permissions" in r.text
    # eve may invoke only her own prefix.
    s2, page2 = signed_in_session(env, "eve")
    r = s2.post(f"{env.page}/function-token", data={"csrf": csrf_of(page2), "audience": "dev-alice-api"}, timeout=10)
    assert r.status_code == 403 and "outside the subject" in r.text
    # Without the page's CSRF value nothing is minted.
    r = s.post(f"{env.page}/function-token", data={"csrf": "guess", "audience": "dev-alice-api"}, timeout=10)
    assert r.status_code == 403 and "fn-token" not in r.text and "The form did not come from this page" in r.text
    # A non-ASCII CSRF value is refused the same way (compare_digest on str raised TypeError: a 500).
    r = s.post(f"{env.page}/function-token", data={"csrf": "\u00e9", "audience": "dev-alice-api"}, timeout=10)
    assert r.status_code == 403 and "The form did not come from this page" in r.text
    # Not signed in: the landing page.
    r = requests.post(f"{env.page}/function-token", data={"audience": "dev-alice-api"}, timeout=10)
    assert r.status_code == 401 and "Sign in to OpenFaaS" in r.text


def signin_failures(env: Env) -> list[dict[str, Any]]:
    path = env.gw.log_dir / "iam-token.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line[line.index("{") :]) for line in lines if '"signin_failed"' in line]


def wait_for_failures(env: Env, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(found := signin_failures(env)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_failed_sign_ins_are_logged_once_with_the_reason_and_no_secret(env: Env) -> None:
    before = len(signin_failures(env))
    secret_code = "CODE-" + "s3cr3t" * 4
    # A state that is not this browser's flow.
    s, _ = start_flow(env)
    assert (
        s.get(f"{env.page}/callback", params={"code": secret_code, "state": "forged-state"}, timeout=10).status_code
        == 400
    )
    found = wait_for_failures(env, before + 1)
    assert len(found) == before + 1
    line = found[-1]
    assert line["stage"] == "flow" and "does not belong to this sign-in" in line["reason"]
    # The IdP refused (the person pressed cancel): its reason, once.
    s, url = start_flow(env)
    state = parse_qs(urlsplit(url).query)["state"][0]
    r = s.get(
        f"{env.page}/callback",
        params={"error": "access_denied", "error_description": "End-User aborted\ninteraction", "state": state},
        timeout=10,
    )
    assert r.status_code == 400
    found = wait_for_failures(env, before + 2)
    time.sleep(0.5)
    found = signin_failures(env)
    assert len(found) == before + 2, "one line per failed sign-in"
    assert found[-1]["stage"] == "idp" and found[-1]["reason"] == "End-User aborted interaction"
    raw = (env.gw.log_dir / "iam-token.log").read_text()
    assert secret_code not in raw and state not in raw and "forged-state" not in raw
    assert s.cookies.get("iam_signin") is None or s.cookies.get("iam_signin") not in raw


def test_not_configured_is_a_404_page(local_gateway) -> None:
    gw = local_gateway()  # no sign-in origin: the page answers nowhere, and says what to set
    r = requests.get(f"http://127.0.0.1:{gw.port}/function/iam-token/", timeout=10)
    assert r.status_code == 404 and "Sign-in is not served here" in r.text and "signin_origin" in r.text
    assert "Set-Cookie" not in r.headers
    signin_port = free_port()
    gw2 = local_gateway(env={"SSO_ISSUER": "nobody", "SIGNIN_ORIGIN": f"http://localhost:{signin_port}"})
    r = requests.get(f"http://127.0.0.1:{gw2.port}/function/iam-token/", timeout=10)
    assert r.status_code == 404 and f"http://localhost:{signin_port}/" in r.text, "points to the right address"
    # As an Ingress host route would reach it: the configured host, so the configuration problem shows.
    r = requests.get(
        f"http://127.0.0.1:{gw2.port}/function/iam-token/",
        headers={"X-Forwarded-Host": f"localhost:{signin_port}"},
        timeout=10,
    )
    assert r.status_code == 404 and "Sign-in is not configured" in r.text and "nobody" in r.text


def test_logout_post_needs_the_page_csrf_value(env: Env) -> None:
    s, url = start_flow(env)
    callback = drive_login(url, login="alice", redirect_uri=f"{env.page}/callback")
    assert s.get(callback, timeout=10).status_code == 200
    r = s.post(f"{env.page}/logout", data={"csrf": "guess"}, timeout=10)
    assert r.status_code == 403 and "Sign-out refused" in r.text
    r = s.post(f"{env.page}/logout", data={"csrf": "\u00e9"}, timeout=10)
    assert r.status_code == 403 and "Sign-out refused" in r.text, "a non-ASCII value is refused, not a 500"
    assert "You are signed in" in s.get(f"{env.page}/", timeout=10).text


def test_idp_unreachable(env: Env) -> None:
    s, url = start_flow(env)
    callback = drive_login(url, login="alice", redirect_uri=f"{env.page}/callback")
    env.idp.stop()  # gone between the login page and the code redemption
    try:
        r = s.get(callback, timeout=30)
        assert r.status_code == 503
        assert "The identity provider is unreachable" in r.text and "Try again in a minute" in r.text
    finally:
        env.idp.start(accounts=ACCOUNTS)


def sign_in_in_browser(browser, env: Env, login: str) -> str:
    """Sign `login` in on the sign-in origin; returns the token the page shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20, ignored_exceptions=TRANSIENT)
    browser.get(env.page + "/login")
    wait.until(ec.presence_of_element_located((By.NAME, "login"))).send_keys(login)
    browser.find_element(By.NAME, "password").send_keys("any password")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "input[name=prompt][value=consent]")))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "You are signed in"))
    return browser.find_element(By.ID, "token").get_attribute("value")


def test_a_hostile_function_cannot_read_the_token_or_plant_a_session(env: Env, browser) -> None:
    """Issue 20's attack, in a real browser: a user's function on the gateway origin goes after the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    # The attacker's own valid session, from signing in on the sign-in origin as themselves.
    s, url = start_flow(env)
    s.get(drive_login(url, login="eve", redirect_uri=f"{env.page}/callback"), timeout=10)
    planted = s.cookies.get("iam_session")
    assert planted and "You are signed in" in s.get(f"{env.page}/", timeout=10).text

    token = sign_in_in_browser(browser, env, "alice")
    assert token.count(".") == 2

    # The victim opens the hostile function's page on the shared origin.
    browser.get(f"{env.base}/function/evil/?" + urlencode({"origin": env.page, "plant": planted}))
    WebDriverWait(browser, 40).until(lambda d: d.find_element(By.ID, "out").text)
    loot = json.loads(browser.find_element(By.ID, "out").text)
    everything = json.dumps(loot)
    assert token not in everything and token.split(".")[1] not in everything, "no token reaches the script"
    assert "You are signed in" not in everything
    assert loot["shared"]["status"] == 404 and "Sign-in is not served here" in loot["shared"]["text"]
    # Claiming the sign-in host does not help: the fetch carries no sign-in cookie, and the page is
    # not served to scripts at all.
    assert loot["spoofed"]["status"] == 403
    assert loot["logout"]["status"] == 404
    assert "error" in loot["cross"], "another origin without CORS: the browser gives the script nothing"

    # The victim is still alice on the sign-in origin: the planted cookies never reach it.
    browser.get(env.page + "/")
    assert browser.find_element(By.ID, "subject").text == "fed:alice"
    assert browser.find_element(By.ID, "token").get_attribute("value") == token
    names = {c["name"]: c for c in browser.get_cookies()}
    assert names["iam_session"]["value"] != planted

    # The shared origin, navigated to by a person: refuses, points to the right address, sets nothing.
    browser.get(env.shared_page + "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign-in is not served here"
    assert browser.find_element(By.LINK_TEXT, env.page).get_attribute("href") == env.page + "/"
    r = requests.get(env.shared_page + "/login", timeout=10)
    assert r.status_code == 404 and "Set-Cookie" not in r.headers and token not in r.text

    # Signed out, with the attacker's cookies planted on the shared origin: still nobody signed in.
    browser.get(env.page + "/logout")
    browser.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
    WebDriverWait(browser, 20, ignored_exceptions=TRANSIENT).until(
        ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "You are signed out")
    )
    browser.get(f"{env.base}/function/evil/?" + urlencode({"origin": env.page, "plant": planted}))
    WebDriverWait(browser, 40).until(lambda d: d.find_element(By.ID, "out").text)
    assert token not in browser.find_element(By.ID, "out").text
    browser.get(env.page + "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in to OpenFaaS", "the attacker's session is not ours"


def test_each_local_listener_answers_only_as_its_own_host(env: Env, browser) -> None:
    """Issue 20: cookies are not per port. A gateway answering as `localhost:<port>` would be sent the
    sign-in origin's `localhost` session cookie, and any function's server side could replay it."""
    from selenium.webdriver.common.by import By

    port, signin_port = env.gw.port, urlsplit(env.page).port
    assert requests.get(f"{env.base}/function/evil/", timeout=10).status_code == 200
    for host in (f"localhost:{port}", "localhost", f"evil.example:{port}"):
        r = requests.get(f"{env.base}/function/evil/", headers={"Host": host}, timeout=10)
        assert r.status_code == 421, host
    assert requests.get(f"http://localhost:{port}/function/evil/", timeout=10).status_code == 421
    # The sign-in listener answers only as the sign-in origin's host.
    assert requests.get(f"http://127.0.0.1:{signin_port}/", timeout=10).status_code == 421
    assert requests.get(f"{env.page}/", timeout=10).status_code == 200
    # In a browser: signed in at http://localhost:<signin port>, then a function opened as localhost.
    sign_in_in_browser(browser, env, "alice")
    browser.get(f"http://localhost:{port}/function/evil/")
    assert "421 Misdirected Request" in browser.find_element(By.TAG_NAME, "body").text


def test_cli_callback_page_in_a_browser(browser, tmp_path: Path) -> None:
    """`openfaas-iam auth`'s loopback page: the sign-in page's look, the subject named, at both widths."""
    import threading

    from selenium.webdriver.common.by import By

    from openfaas_iam.client.oidc_client import CallbackServer

    port = free_port()
    server = CallbackServer("127.0.0.1", port, "the-state", awaits_report=True)
    # The "IdP" sends the browser straight back with a code, as after a real login.
    server.authorize_url = f"http://127.0.0.1:{port}/oauth/callback?code=c&state=the-state"
    claims = {"sub": "alice", "name": "Alice Example", "iss": "https://keycloak.example.com/realms/openfaas"}
    threading.Thread(target=lambda: (server.wait(20), server.report(claims=claims)), daemon=True).start()
    browser.get(f"http://127.0.0.1:{port}{server.start_path}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "You are signed in"
    assert browser.find_element(By.ID, "subject").text == "alice"
    assert "Alice Example" in visible(browser)
    color = browser.execute_script("return getComputedStyle(document.querySelector('header')).backgroundColor")
    assert color == "rgb(13, 17, 23)", "styled like the sign-in page (its stylesheet applied under the CSP)"
    shots = {
        "cli-callback.png": screenshot(browser, tmp_path / "cli-callback.png", 1280, 800),
        "cli-callback-phone.png": screenshot(browser, tmp_path / "cli-callback-phone.png", 390, 844),
    }
    if os.environ.get("UPDATE_SCREENSHOT"):
        for name, shot in shots.items():
            shutil.copy(shot, ROOT / "docs" / name)
