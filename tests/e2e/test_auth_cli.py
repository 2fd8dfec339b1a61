"""`openfaas-iam auth` against the real OpenID Provider and the bundle behind the local gateway."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import yaml
from conftest import ROOT, free_port, start_gateway
from idp_server import OidcProvider, drive_login

CLI = [sys.executable, "-m", "openfaas_iam.cli.main", "auth"]


def docs(iss: str) -> list[dict[str, Any]]:
    def obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "iam.openfaas.com/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}

    return [
        obj("JwtIssuer", "idp", {"iss": iss, "aud": ["openfaas", "https://gateway.test"], "tokenExpiry": "1h"}),
        obj(
            "Policy",
            "fn-ro",
            {"statement": [{"sid": "ro", "effect": "Allow", "action": ["Function:List"], "resource": ["*"]}]},
        ),
        obj("Role", "people", {"policy": ["fn-ro"], "condition": {"ForAnyValue:StringEqual": {"jwt:groups": ["dev"]}}}),
        obj(
            "Role",
            "machines",
            {"policy": ["fn-ro"], "principal": {"jwt:sub": ["ci-machine", "repo:org/app:ref:refs/heads/main"]}},
        ),
    ]


class Env:
    def __init__(self, idp: OidcProvider, gw: Any, port: int) -> None:
        self.idp, self.gw, self.callback_port = idp, gw, port
        self.gateway = f"http://127.0.0.1:{gw.port}/function/iam-authz"
        self.issuer = f"http://127.0.0.1:{gw.port}/function/iam-discovery"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("auth")
    port = free_port()
    idp = OidcProvider(free_port(), redirect_uris=[f"http://127.0.0.1:{port}/oauth/callback"]).start(
        accounts={"alice": {"groups": ["dev"], "email": "alice@example.com", "preferred_username": "alice"}}
    )
    (tmp / "iam.json").write_text(json.dumps(docs(idp.issuer)))
    gw = start_gateway(tmp, iam_config=tmp / "iam.json")
    try:
        yield Env(idp, gw, port)
    finally:
        gw.stop()
        idp.stop()


def run_cli(
    args: list[str], config_dir: Path, extra_env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONS_ID_TOKEN")}
    env.update({"OPENFAAS_CONFIG": str(config_dir), **(extra_env or {})})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def saved(config_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((config_dir / "config.yml").read_text())


def test_human_code_flow_through_the_real_login_pages(env: Env, tmp_path: Path) -> None:
    config_dir = tmp_path / "faas"
    proc = subprocess.Popen(
        [
            *CLI,
            "--gateway",
            env.gateway,
            "--authority",
            env.idp.issuer,
            "--client-id",
            "openfaas",
            "--client-secret",
            "openfaas-secret",
            "--no-browser",
            "--port",
            str(env.callback_port),
            "--timeout",
            "30",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OPENFAAS_CONFIG": str(config_dir)},
    )
    try:
        assert proc.stderr is not None
        line = ""
        while not line.startswith("http"):
            line = proc.stderr.readline().strip()
            assert line or proc.poll() is None, "the CLI ended before printing the sign-in URL"
        # The CLI prints its one-shot start link; the browser that opens it gets the cookie the callback needs.
        browser = requests.Session()
        start = browser.get(line, allow_redirects=False, timeout=10)
        assert start.status_code == 302 and "HttpOnly" in start.headers["Set-Cookie"]
        url = start.headers["Location"]
        assert "code_challenge_method=S256" in url and "state=" in url and "nonce=" in url
        callback = drive_login(url, login="alice", redirect_uri=f"http://127.0.0.1:{env.callback_port}/oauth/callback")
        assert requests.get(callback, timeout=10).status_code == 400, "not from the browser that opened the link"
        page = browser.get(callback, timeout=30)
        # The callback page names who signed in (the verified id_token's subject), styled like the sign-in page.
        assert "You are signed in" in page.text and '<code id="subject">alice</code>' in page.text
        assert "'nonce-" in page.headers["Content-Security-Policy"]
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Signed in as fed:alice with policies fn-ro" in err
    doc = saved(config_dir)
    assert list(doc) == ["auths"] and len(doc["auths"]) == 1
    entry = doc["auths"][0]
    assert list(entry) == ["gateway", "auth", "token", "options"]
    assert entry["gateway"] == env.gateway and entry["auth"] == "oauth2"
    assert entry["options"] == [
        {"name": "issuer", "value": env.issuer},
        {"name": "authority", "value": env.idp.issuer},
        {"name": "client_id", "value": "openfaas"},
        {"name": "grant", "value": "code"},
    ]
    claims = jwt.decode(entry["token"], options={"verify_signature": False})
    assert claims["sub"] == "fed:alice" and claims["iss"] == env.issuer and claims["email"] == "alice@example.com"
    assert (config_dir.stat().st_mode & 0o777) == 0o700 and (
        (config_dir / "config.yml").stat().st_mode & 0o777
    ) == 0o600
    # faas-cli then sends it by itself; the proxy accepts it.
    r = requests.get(f"{env.gateway}/whoami", headers={"Authorization": f"Bearer {entry['token']}"}, timeout=10)
    assert r.status_code == 200 and r.json()["subject"] == "fed:alice"


def test_client_credentials_then_a_second_login_updates_the_entry(env: Env, tmp_path: Path) -> None:
    config_dir = tmp_path / "faas"
    config_dir.mkdir(mode=0o700)
    other = {"gateway": "https://other.example.com", "auth": "basic", "token": "YWRtaW46cGFzcw=="}
    (config_dir / "config.yml").write_text(yaml.safe_dump({"auths": [other]}))
    args = [
        "--gateway",
        env.gateway + "/",
        "--authority",
        env.idp.issuer,
        "--client-id",
        "ci-machine",
        "--client-secret",
        "ci-machine-secret",
        "--grant",
        "client_credentials",
        "--audience",
        "https://gateway.test",
        "--scope",
        "deploy",
    ]
    first = run_cli(args, config_dir)
    assert first.returncode == 0, first.stderr
    token1 = saved(config_dir)["auths"][1]["token"]
    second = run_cli([*args, "--print-token"], config_dir)
    assert second.returncode == 0, second.stderr
    doc = saved(config_dir)
    assert doc["auths"][0] == other, "other gateways are left untouched"
    assert len(doc["auths"]) == 2, "a second login replaces the entry for the gateway"
    assert doc["auths"][1]["gateway"] == env.gateway and doc["auths"][1]["token"] != token1
    assert second.stdout.strip() == doc["auths"][1]["token"]
    assert jwt.decode(token1, options={"verify_signature": False})["client_id"] == "ci-machine"


def test_ci_token_and_pretty(env: Env, tmp_path: Path) -> None:
    ci = env.idp.mint({"sub": "repo:org/app:ref:refs/heads/main", "repository": "org/app"})
    (tmp_path / "token").write_text(ci + "\n")
    r = run_cli(["--gateway", env.gateway, "--token-file", str(tmp_path / "token"), "--pretty"], tmp_path / "faas")
    assert r.returncode == 0, r.stderr
    decoded = json.loads(r.stdout)
    assert list(decoded) == ["header", "payload"] and decoded["header"]["alg"] == "ES256"
    assert decoded["payload"]["sub"] == "fed:repo:org/app:ref:refs/heads/main" and decoded["payload"]["policy"] == [
        "fn-ro"
    ]
    r = run_cli(["--gateway", env.gateway, "--token", ci, "--no-exchange", "--pretty"], tmp_path / "faas2")
    assert json.loads(r.stdout)["payload"]["iss"] == env.idp.issuer and not (tmp_path / "faas2" / "config.yml").exists()


def test_github_actions_token_is_fetched_with_the_audience(env: Env, tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    minted = env.idp.mint({"sub": "repo:org/app:ref:refs/heads/main"})

    class Actions(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization", "")))
            body = json.dumps({"value": minted}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Actions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/token?api-version=2.0"
        r = run_cli(
            ["--gateway", env.gateway, "--audience", "https://gateway.test"],
            tmp_path / "faas",
            {"ACTIONS_ID_TOKEN_REQUEST_URL": url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "gh-request-token", "CI": "true"},
        )
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stderr
    assert seen == [("/token?api-version=2.0&audience=https%3A%2F%2Fgateway.test", "Bearer gh-request-token")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "--authority",
                "{idp}",
                "--client-id",
                "ci-machine",
                "--client-secret",
                "wrong",
                "--grant",
                "client_credentials",
            ],
            "openfaas-iam auth: the IdP's token endpoint refused: invalid_client: client authentication failed",
        ),
        (
            ["--authority", "http://127.0.0.1:9", "--client-id", "x"],
            "openfaas-iam auth: cannot reach the discovery document at http://127.0.0.1:9/.well-known/openid-configuration (ConnectionError)",
        ),
        (
            ["--token", "{unknown_subject}"],
            "openfaas-iam auth: the token exchange refused: invalid_request: No policies found for subject: stranger",
        ),
        (
            ["--token", "not-a-jwt"],
            "openfaas-iam auth: the token exchange refused: invalid_request: invalid subject token: the token is not a JWT (expected three dot-separated parts)",
        ),
        (
            ["--authority", "{idp}", "--client-id", "openfaas", "--no-browser", "--port", "{port}", "--timeout", "1"],
            "openfaas-iam auth: no sign-in callback within 1s; run the command again and finish signing in",
        ),
        ([], "openfaas-iam auth: give --authority and --client-id to sign in, or --token/--token-file (CI)"),
    ],
)
def test_errors_a_user_can_act_on(env: Env, tmp_path: Path, args: list[str], message: str) -> None:
    filled = [
        a.format(
            idp=env.idp.issuer,
            port=env.callback_port,
            unknown_subject=env.idp.mint({"sub": "stranger"}) if "{unknown_subject}" in a else "",
        )
        for a in args
    ]
    r = run_cli(["--gateway", env.gateway, *filled], tmp_path / "faas")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == message


def test_decode_and_help(env: Env) -> None:
    token = env.idp.mint({"sub": "x"})
    r = subprocess.run(
        [sys.executable, "-m", "openfaas_iam.cli.main", "decode", token],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert json.loads(r.stdout)["payload"]["sub"] == "x"
    for cmd in (["auth"], ["decode"], ["lint"], ["simulate"], ["keys", "init"]):
        h = subprocess.run(
            [sys.executable, "-m", "openfaas_iam.cli.main", *cmd, "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=30,
        )
        assert h.returncode == 0 and h.stdout.startswith(f"usage: openfaas-iam {' '.join(cmd)}")


def whoami_cli(args: list[str], config_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENFAAS_CONFIG": str(config_dir)}
    return subprocess.run(
        [sys.executable, "-m", "openfaas_iam.cli.main", "whoami", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )


def test_the_gateway_itself_is_refused_with_the_proxy_to_use(env: Env, tmp_path: Path) -> None:
    root = f"http://127.0.0.1:{env.gw.port}"
    ci = env.idp.mint({"sub": "ci-machine"})
    r = run_cli(["--gateway", root, "--token", ci], tmp_path / "faas")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"openfaas-iam auth: {root} is the OpenFaaS gateway itself, which would refuse the token with 401; "
        f"use the proxy: https://<host-route> (deploy/authz-ingress.yaml) or {root}/function/iam-authz"
    )
    assert not (tmp_path / "faas" / "config.yml").exists(), "nothing saved for the wrong URL"
    # Another function is not the proxy either; the suggestion keeps the gateway root.
    other = f"{root}/function/iam-discovery"
    r = run_cli(["--gateway", other, "--token", ci], tmp_path / "faas")
    assert r.returncode == 1
    assert "does not answer as openfaas-iam's proxy (GET /.well-known/openfaas-iam: HTTP 404)" in r.stderr
    assert f"or {root}/function/iam-authz" in r.stderr
    # The check can be skipped (a proxy not reachable from here yet): the token is saved as asked.
    r = run_cli(["--gateway", root, "--token", ci, "--skip-gateway-check"], tmp_path / "faas")
    assert r.returncode == 0, r.stderr


def test_whoami_and_refresh_from_the_saved_options(env: Env, tmp_path: Path) -> None:
    config_dir = tmp_path / "faas"
    ci = env.idp.mint({"sub": "ci-machine"})
    (tmp_path / "token").write_text(ci)
    assert run_cli(["--gateway", env.gateway, "--token-file", str(tmp_path / "token")], config_dir).returncode == 0
    first = saved(config_dir)["auths"][0]
    assert {"name": "token_file", "value": str(tmp_path / "token")} in first["options"]
    r = whoami_cli(["--gateway", env.gateway], config_dir)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "subject   fed:ci-machine" and "policies  fn-ro" in lines
    assert any(line.startswith("expires   ") and ("(in 59 min)" in line or "(in 60 min)" in line) for line in lines)
    assert "  may     Function:List on *" in lines
    # --refresh: the same options again (a new CI token in the same file), nothing else given.
    (tmp_path / "token").write_text(env.idp.mint({"sub": "ci-machine", "jti": "second"}))
    r = run_cli(["--gateway", env.gateway, "--refresh"], config_dir)
    assert r.returncode == 0, r.stderr
    second = saved(config_dir)["auths"][0]
    assert second["token"] != first["token"] and second["options"] == first["options"]
    r = run_cli(["--gateway", env.gateway + "/nothing-saved", "--refresh"], tmp_path / "empty")
    assert r.returncode == 1 and "nothing is saved for" in r.stderr
    r = whoami_cli(["--gateway", env.gateway], tmp_path / "empty")
    assert r.returncode == 1 and f"run: openfaas-iam auth --gateway {env.gateway}" in r.stderr


def test_expired_tokens_say_when_and_what_to_run(env: Env, tmp_path: Path) -> None:
    from openfaas_iam.client.faas_config import save_token
    from openfaas_iam.jose.keyset import read_keyset_file

    keyset = read_keyset_file(str(env.gw.secret_store / "iam-signing-keys" / "iam-signing-keys"))
    now = int(time.time())
    expired = jwt.encode(
        {"iss": env.issuer, "aud": env.issuer, "sub": "fed:alice", "iat": now - 900, "exp": now - 300, "policy": []},
        keyset.current.private_key,
        algorithm="ES256",
        headers={"kid": keyset.current.kid},
    )
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 300))
    # The proxy's own 401 says it (faas-cli prints the message).
    r = requests.get(f"{env.gateway}/whoami", headers={"Authorization": f"Bearer {expired}"}, timeout=10)
    assert r.status_code == 401
    assert r.json()["message"] == (
        f"the token expired at {when} (5 minutes ago); run: openfaas-iam auth --gateway {env.gateway} --refresh"
    )
    # ... and so does whoami, for the gateway the token was saved for.
    save_token(env.gateway, expired, {"issuer": env.issuer}, {"OPENFAAS_CONFIG": str(tmp_path / "faas")})
    r = whoami_cli(["--gateway", env.gateway], tmp_path / "faas")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"openfaas-iam whoami: the token expired at {when} (5 minutes ago); "
        f"run: openfaas-iam auth --gateway {env.gateway} --refresh"
    )
