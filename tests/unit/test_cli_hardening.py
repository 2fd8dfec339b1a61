"""The CLI on a shared machine or in CI: no write through planted links, a callback that ends once.

Issue 20: with CI=true the config folder is `./.openfaas` in a checked-out repository, whose
author chose its contents (a committed symlink made `openfaas-iam auth` write the token into
its target, mode 644).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
import yaml

from openfaas_iam.cli.main import main
from openfaas_iam.client.faas_config import UnsafeConfigPath, save_token
from openfaas_iam.client.oidc_client import AuthFlowError, CallbackServer


def ci_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    return {"CI": "true"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_symlinked_config_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / ".openfaas").symlink_to(elsewhere)
    with pytest.raises(UnsafeConfigPath, match="symbolic link"):
        save_token("http://gw", "secret-token", {}, ci_env(tmp_path, monkeypatch))
    assert list(elsewhere.iterdir()) == []


def test_a_planted_temporary_file_link_is_never_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / ".openfaas"
    folder.mkdir(mode=0o700)
    target = tmp_path / "stolen.txt"
    (folder / ".config.yml.tmp").symlink_to(target)  # the committed link of the issue
    path = save_token("http://gw", "secret-token", {}, ci_env(tmp_path, monkeypatch))
    assert not target.exists()
    assert mode(path) == 0o600 and yaml.safe_load(path.read_text())["auths"][0]["token"] == "secret-token"
    assert sorted(p.name for p in folder.iterdir()) == [".config.yml.tmp", "config.yml"], "no temporary file left"


def test_a_linked_config_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / ".openfaas"
    folder.mkdir(mode=0o700)
    target = tmp_path / "target.yml"
    target.write_text("auths: []\n")
    (folder / "config.yml").symlink_to(target)
    with pytest.raises(UnsafeConfigPath, match="symbolic link"):
        save_token("http://gw", "secret-token", {}, ci_env(tmp_path, monkeypatch))
    assert target.read_text() == "auths: []\n"


def test_an_existing_readable_file_becomes_0600_and_a_shared_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / ".openfaas"
    folder.mkdir(mode=0o700)
    (folder / "config.yml").write_text("auths: [{gateway: http://other, auth: oauth2, token: t}]\n")
    os.chmod(folder / "config.yml", 0o644)
    path = save_token("http://gw", "secret-token", {}, ci_env(tmp_path, monkeypatch))
    assert mode(path) == 0o600 and len(yaml.safe_load(path.read_text())["auths"]) == 2
    os.chmod(folder, 0o777)
    with pytest.raises(UnsafeConfigPath, match="others may write"):
        save_token("http://gw", "secret-token", {}, {"CI": "true"})


def test_a_new_folder_is_0700(tmp_path: Path) -> None:
    path = save_token("http://gw", "t", {}, {"OPENFAAS_CONFIG": str(tmp_path / "a" / "cfg")})
    assert mode(path.parent) == 0o700 and mode(path) == 0o600


def test_keys_init_force_writes_0600_and_never_through_a_link(tmp_path: Path) -> None:
    existing = tmp_path / "keys.json"
    existing.write_text("old")
    os.chmod(existing, 0o644)
    assert main(["keys", "init", "-o", str(existing), "--force"]) == 0
    assert mode(existing) == 0o600 and existing.read_text() != "old"
    dangling = tmp_path / "link.json"
    dangling.symlink_to(tmp_path / "target-of-link.json")
    assert main(["keys", "init", "-o", str(dangling)]) == 1, "a dangling link counts as existing"
    assert main(["keys", "init", "-o", str(dangling), "--force"]) == 0
    assert not (tmp_path / "target-of-link.json").exists() and not dangling.is_symlink()
    assert mode(dangling) == 0o600


def get(port: int, path: str, cookie: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    resp = conn.getresponse()
    out = resp.status, resp.getheader("Location") or resp.read().decode()
    conn.close()
    return out


def open_start(port: int, server: CallbackServer) -> tuple[str, str]:
    """Open the start link as the browser does: (authorization URL, the cookie it set)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", server.start_path)
    resp = conn.getresponse()
    assert resp.status == 302
    set_cookie = resp.getheader("Set-Cookie") or ""
    assert "HttpOnly" in set_cookie
    conn.close()
    return resp.getheader("Location") or "", set_cookie.split(";")[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_callback_counts_only_the_exact_path_and_state_once() -> None:
    port = free_port()
    server = CallbackServer("127.0.0.1", port, "the-state")
    authorize = "https://idp.example/auth?code_challenge=c&state=the-state"
    server.authorize_url = authorize
    result: list[dict[str, str]] = []
    waiter = threading.Thread(target=lambda: result.append(server.wait(10)))
    waiter.start()
    # The one-shot start address: the authorization URL, and a cookie binding the callback to this browser.
    assert open_start(port, server) == (authorize, f"openfaas_iam_cli_{port}={server._browser}")
    browser = f"openfaas_iam_cli_{port}={server._browser}"
    # Anything else is answered and ignored: the flow goes on.
    assert get(port, "/")[0] == 404
    assert get(port, "/oauth/callback/extra?code=x&state=the-state", browser)[0] == 404
    assert get(port, "/oauth/callback?code=evil&state=guess", browser)[0] == 400
    assert get(port, "/oauth/callback?code=evil", browser)[0] == 400
    assert get(port, "/oauth/callback?code=evil&state=the-state&state=the-state", browser)[0] == 400
    # Non-ASCII where a secret is compared: a 400 page, not a traceback and a dropped connection.
    assert get(port, "/oauth/callback?code=evil&state=%C3%A9", browser)[0] == 400
    assert get(port, "/oauth/callback?code=evil&state=the-state", f"openfaas_iam_cli_{port}=\xe9")[0] == 400
    # The right state from a browser that did not open the link (no cookie, or another one).
    assert get(port, "/oauth/callback?code=evil&state=the-state")[0] == 400
    assert get(port, "/oauth/callback?code=evil&state=the-state", f"openfaas_iam_cli_{port}=guess")[0] == 400
    assert not result
    assert get(port, "/oauth/callback?code=good&state=the-state", browser)[0] == 200
    waiter.join(5)
    assert result == [{"code": "good", "state": "the-state"}]


def test_a_start_link_opened_twice_aborts_the_sign_in() -> None:
    """Issue 20: another local user reads the start URL from the browser's command line and opens it first.

    The victim's browser opening it too stops the flow, even when the attacker's callback (with the
    attacker's own cookie, from signing in as themself) came first.
    """
    port = free_port()
    server = CallbackServer("127.0.0.1", port, "s")
    server.authorize_url = "https://idp.example/auth?state=s"
    _, attacker_cookie = open_start(port, server)  # the attacker, first
    assert get(port, "/oauth/callback?code=attackers&state=s", attacker_cookie)[0] == 200
    status, text = get(port, server.start_path)  # the victim's browser, a moment later
    assert status == 409 and "opened twice" in text
    with pytest.raises(AuthFlowError) as e:
        server.wait(5)
    assert str(e.value) == (
        "the sign-in link was opened twice; another local user may have tried to use it; run the command again"
    )
    # Opened twice before any callback: stopped at once, the later callback is not the flow's.
    port = free_port()
    server = CallbackServer("127.0.0.1", port, "s")
    server.authorize_url = "https://idp.example/auth?state=s"
    open_start(port, server)
    assert get(port, server.start_path)[0] == 409
    start = time.monotonic()
    with pytest.raises(AuthFlowError, match="opened twice"):
        server.wait(5)
    assert time.monotonic() - start < 1


def test_the_callback_server_caps_its_threads() -> None:
    port = free_port()
    server = CallbackServer("127.0.0.1", port, "s")
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        time.sleep(0.5)
        assert threading.active_count() - before <= 8, "one thread per connection, without a cap"
    finally:
        for c in idle:
            c.close()
    with pytest.raises(AuthFlowError):
        server.wait(0.1)


def test_an_idle_connection_does_not_hold_the_total_timeout() -> None:
    port = free_port()
    server = CallbackServer("127.0.0.1", port, "s")
    idle = socket.create_connection(("127.0.0.1", port))  # connects, never sends a byte
    try:
        start = time.monotonic()
        with pytest.raises(AuthFlowError, match="no sign-in callback within 1s"):
            server.wait(1)
        elapsed = time.monotonic() - start
        assert elapsed < 3, f"--timeout 1 took {elapsed:.1f}s"
    finally:
        idle.close()


def test_a_wrong_state_does_not_end_the_flow_before_the_right_one(tmp_path: Path) -> None:
    port = free_port()
    server = CallbackServer("127.0.0.1", port, "right")
    browser = f"openfaas_iam_cli_{port}={server._browser}"
    threading.Timer(0.2, lambda: get(port, "/oauth/callback?code=x&state=wrong", browser)).start()
    threading.Timer(0.6, lambda: get(port, "/oauth/callback?code=y&state=right", browser)).start()
    assert server.wait(5)["code"] == "y"


def test_the_callback_page_names_who_signed_in_and_looks_like_the_sign_in_page() -> None:
    """Issue 17: the CLI's loopback page is styled like the sign-in page and says whom the command signed in."""
    port = free_port()
    server = CallbackServer("127.0.0.1", port, "s", awaits_report=True)
    server.authorize_url = "https://idp.example/auth?state=s"
    _, browser = open_start(port, server)
    answers: list[tuple[int, str, dict[str, str]]] = []

    def callback() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/oauth/callback?code=c&state=s", headers={"Cookie": browser})
        resp = conn.getresponse()
        answers.append((resp.status, resp.read().decode(), dict(resp.getheaders())))

    asker = threading.Thread(target=callback)
    asker.start()
    assert server.wait(5) == {"code": "c", "state": "s"}
    time.sleep(0.2)
    assert not answers, "the page waits until the command has verified who signed in"
    server.report(claims={"sub": "alice", "name": "Alice <Example>", "iss": "https://idp.example"})
    asker.join(5)
    status, page, headers = answers[0]
    assert status == 200 and "You are signed in" in page
    assert (
        '<code id="subject">alice</code>' in page and "Alice &lt;Example&gt;" in page and "https://idp.example" in page
    )
    nonce = re.search(r'<style nonce="([^"]+)">', page)
    assert nonce and f"style-src 'nonce-{nonce.group(1)}'" in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"] and headers["Cache-Control"] == "no-store"
    assert "header .logo" in page, "the sign-in page's own stylesheet, inlined"
    assert not re.search(r'(src|href)="', page), "nothing loaded from anywhere"

    # A failure after the callback (the code could not be redeemed): the page says so, and why.
    port = free_port()
    server = CallbackServer("127.0.0.1", port, "s", awaits_report=True)
    server.authorize_url = "https://idp.example/auth?state=s"
    _, browser = open_start(port, server)
    answers.clear()
    asker = threading.Thread(target=callback)
    asker.start()
    server.wait(5)
    server.report(problem="the IdP refused the code: invalid_grant")
    asker.join(5)
    assert "Sign-in failed" in answers[0][1] and "The IdP refused the code: invalid_grant." in answers[0][1]


def test_keys_init_public_output_never_writes_through_a_link(tmp_path: Path) -> None:
    """--public-output is written like the private file: a dangling link exists, and --force replaces it."""
    victim = tmp_path / "victim" / "authorized_keys"
    victim.parent.mkdir()
    link = tmp_path / "pub.json"
    link.symlink_to(victim)  # dangling: os.path.exists() says False
    keys = str(tmp_path / "keys.json")
    assert main(["keys", "init", "-o", keys, "--public-output", str(link)]) == 1, "a dangling link counts as existing"
    assert not victim.exists() and not os.path.lexists(keys)
    assert main(["keys", "init", "-o", keys, "--public-output", str(link), "--force"]) == 0
    assert not victim.exists(), "never written through the planted link"
    assert not link.is_symlink() and '"keys"' in link.read_text()
    assert mode(link) == 0o644 and mode(Path(keys)) == 0o600


def test_the_clis_idp_calls_have_a_total_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A discovery or token endpoint dripping one byte at a time ends the command at the deadline."""
    from openfaas_iam.client import oidc_client as oc

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def drip() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
            for _ in range(40):
                if stop.wait(0.2):
                    break
                with contextlib.suppress(OSError):
                    conn.sendall(b" ")
            conn.close()

    threading.Thread(target=drip, daemon=True).start()
    monkeypatch.setattr(oc, "CALL_DEADLINE", 1.0)
    try:
        for call in (
            lambda: oc.discover(f"http://127.0.0.1:{port}", oc._session()),
            lambda: oc._post_token(oc._session(), f"http://127.0.0.1:{port}/token", {}, None, "the token endpoint"),
        ):
            start = time.monotonic()
            with pytest.raises(AuthFlowError, match="did not answer within 1s"):
                call()
            assert time.monotonic() - start < 2
    finally:
        stop.set()
        listener.close()
