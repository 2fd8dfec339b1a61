"""`make run` behaves like the real OpenFaaS pieces, and the bundle works with them.

Three parts:
- the local gateway and provider answer each row of `real-peers.md` that a stand-in must
  match (always runs: this is what every other test relies on);
- list, deploy, scale to 3 replicas and logs through the proxy, over HTTP (always runs);
- the real `faas-cli` and the real `of-watchdog` (public Go projects), when they are on
  PATH (or named by FAAS_CLI / OF_WATCHDOG): every faas-cli command the README shows,
  through the proxy at a host root, and a function under the real watchdog with the
  template's own function-token check, ready_path and SIGTERM drain. Skipped with the
  reason when they are not installed; they are never part of this repository.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from conftest import ROOT, free_port, make_project, start_gateway
from idp_server import OidcProvider

from openfaas_iam.client.faas_config import save_token

pytestmark = pytest.mark.e2e

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
TEAM_FN = """
  team-a-echo:
    lang: python3-http-iam
    handler: ./fixtures/echo
    image: test/team-a-echo:latest
    labels:
      com.openfaas.scale.min: "1"
"""


def docs(iss: str) -> list[dict[str, Any]]:
    def obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "iam.openfaas.com/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}

    def st(sid: str, actions: list[str], resources: list[str], effect: str = "Allow") -> dict[str, Any]:
        return {"sid": sid, "effect": effect, "action": actions, "resource": resources}

    return [
        obj("JwtIssuer", "idp", {"iss": iss, "aud": ["https://gateway.test"], "tokenExpiry": "1h"}),
        obj(
            "Policy",
            "team-a",
            {
                "statement": [
                    st("fns", ["Function:*"], ["openfaas-fn:team-a-*"]),
                    st("secrets", ["Secret:Create", "Secret:Update", "Secret:Delete"], ["openfaas-fn:team-a-*"]),
                    st("list", ["Function:List", "Secret:List", "Namespace:List"], ["openfaas-fn:*"]),
                    st("invoke", ["Function:Invoke"], ["openfaas-fn:team-a-*"]),
                    st("no-billing", ["Function:Invoke"], ["openfaas-fn:team-a-billing"], effect="Deny"),
                ]
            },
        ),
        obj("Role", "team-a", {"policy": ["team-a"], "principal": {"jwt:sub": ["ann"]}}),
    ]


class Bundle:
    def __init__(self, gw: Any, idp: OidcProvider, tmp: Path) -> None:
        self.gw, self.idp, self.tmp = gw, idp, tmp
        self.base = f"http://127.0.0.1:{gw.port}"
        self.proxy = f"http://127.0.0.1:{gw.authz_port}"
        user, password = gw.secrets.admin()
        self.admin = (user, password)

    def token(self, scope: str | None = None, audience: str | None = None) -> str:
        data = {"grant_type": EXCHANGE, "subject_token": self.idp.mint({"sub": "ann"}), "subject_token_type": ID_TOKEN}
        if scope:
            data["scope"] = scope
        if audience:
            data["audience"] = audience
        r = requests.post(f"{self.base}/function/iam-token/oauth/token", data=data, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Bundle]:
    tmp = tmp_path_factory.mktemp("peers")
    idp = OidcProvider(free_port()).start()
    (tmp / "iam.json").write_text(json.dumps(docs(idp.issuer)))
    gw = start_gateway(
        tmp,
        stack=make_project(tmp, TEAM_FN),
        iam_config=tmp / "iam.json",
        env={"REDIS_URL": redis_url, "LOCAL_SECRET_SYNC_DELAY": "0.3"},
        function_env={
            "redis_prefix": f"peers-{uuid.uuid4().hex[:6]}:",
            # keys rotate within seconds here (the late mount + the functions' once-a-second stat)
            "mount_sync_allowance": "1.5",
            "own_jwks_max_age": "0",
        },
        authz_port=free_port(),
        replicas=None,  # as make run with Redis: stack.yml's com.openfaas.scale.min
    )
    try:
        yield Bundle(gw, idp, tmp)
    finally:
        gw.stop()
        idp.stop()


# -- the local gateway answers each row of real-peers.md --------------------------------------


def test_system_api_needs_the_admin_password_and_refuses_a_bearer_token(bundle: Bundle) -> None:
    assert requests.get(f"{bundle.base}/system/functions", timeout=10).status_code == 401
    assert requests.get(f"{bundle.base}/system/functions", auth=("admin", "guess"), timeout=10).status_code == 401
    bearer = {"Authorization": f"Bearer {bundle.token()}"}
    assert requests.get(f"{bundle.base}/system/functions", headers=bearer, timeout=10).status_code == 401
    r = requests.get(f"{bundle.base}/system/functions", auth=bundle.admin, timeout=10)
    assert r.status_code == 200 and {f["name"] for f in r.json()} >= {"iam-authz", "team-a-echo"}


def test_x_forwarded_for_is_set_only_when_absent_and_bodies_arrive_chunked(bundle: Bundle) -> None:
    got = requests.post(f"{bundle.base}/function/team-a-echo/x", data=b"payload", timeout=10).json()
    assert got["headers"]["x-forwarded-for"].startswith("127.0.0.1:")  # RemoteAddr, ip:port
    assert got["body"] == "cGF5bG9hZA=="  # de-chunked by waitress, intact
    claimed = requests.get(
        f"{bundle.base}/function/team-a-echo/x", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10
    ).json()
    assert claimed["headers"]["x-forwarded-for"] == "203.0.113.9", "a client's own value passes through unchanged"
    assert claimed["remote_addr"] == "203.0.113.9", "so the template records it as the caller's claim"


def test_request_bodies_are_forwarded_chunked() -> None:
    """What a function's server receives on the wire: Transfer-Encoding: chunked, as from the real gateway."""
    import io

    from localgw.gateway import Backend, GatewayApp

    seen: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def backend() -> None:
        conn, _ = server.accept()
        conn.settimeout(5)
        data = b""
        while b"0\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        seen.append(data)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        conn.close()

    t = threading.Thread(target=backend, daemon=True)
    t.start()
    app = GatewayApp({"f": Backend("f", "openfaas-fn", [server.getsockname()[1]])})
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/function/f/x",
        "CONTENT_LENGTH": "7",
        "wsgi.input": io.BytesIO(b"payload"),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "5555",
        "HTTP_HOST": "127.0.0.1:8080",
    }
    body = b"".join(app(environ, lambda status, headers: None))
    t.join(timeout=5)
    server.close()
    head, _, rest = seen[0].partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"Content-Length" not in head
    assert rest.startswith(b"7\r\npayload\r\n") and body == b"ok"
    assert b"X-Forwarded-For: 127.0.0.1:5555" in head


def test_providers_read_bodies_like_go_and_ce_has_one_namespace(bundle: Bundle) -> None:
    a = bundle.admin
    body = '{"service":"team-a-x","Service":"team-a-y","image":"i"}'
    assert requests.post(f"{bundle.base}/system/functions", data=body, auth=a, timeout=10).status_code == 202
    names = {f["name"] for f in requests.get(f"{bundle.base}/system/functions", auth=a, timeout=10).json()}
    assert "team-a-y" in names and "team-a-x" not in names, "the last key wins, case-insensitively"
    r = requests.get(f"{bundle.base}/system/functions", params={"namespace": "staging"}, auth=a, timeout=10)
    assert r.status_code == 400 and "namespace must be: openfaas-fn" in r.text
    # Delete reads the namespace from the query only (a body namespace is ignored, as faas-netes does).
    r = requests.delete(
        f"{bundle.base}/system/functions",
        data='{"functionName":"team-a-y","namespace":"staging"}',
        auth=a,
        timeout=10,
    )
    assert r.status_code == 202
    scale = requests.post(f"{bundle.base}/system/scale-function/team-a-echo", data='{"replicas":0}', auth=a, timeout=10)
    assert scale.status_code == 400 and "cannot be set to 0 in OpenFaaS CE" in scale.text


def test_secrets_are_never_returned_and_logs_carry_rfc3339_timestamps(bundle: Bundle) -> None:
    a = bundle.admin
    new = {"name": "team-a-peer", "value": "s3cret-value"}
    assert requests.post(f"{bundle.base}/system/secrets", json=new, auth=a, timeout=10).status_code == 202
    assert requests.post(f"{bundle.base}/system/secrets", json=new, auth=a, timeout=10).status_code == 409
    assert requests.put(f"{bundle.base}/system/secrets", json={"name": "nope", "value": "x"}, auth=a).status_code == 404
    listing = requests.get(f"{bundle.base}/system/secrets", auth=a, timeout=10)
    assert "s3cret-value" not in listing.text and {"name": "team-a-peer", "namespace": "openfaas-fn"} in listing.json()
    assert requests.delete(f"{bundle.base}/system/secrets", json={"name": "team-a-peer"}, auth=a).status_code == 202
    # Not "Serving on" among the last five: whatever ran before (replicas scaled away logging their
    # exit, in any test order) decides what those are. `tail` is checked on lines of our own, and the
    # function's own output in the whole log.
    for i in range(5):
        bundle.gw.provider.logs.add("openfaas-fn", "team-a-echo", "team-a-echo-local-0", f"tail-marker-{i}")
    r = requests.get(
        f"{bundle.base}/system/logs", params={"name": "team-a-echo", "tail": "5", "follow": "false"}, auth=a, timeout=10
    )
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert len(lines) == 5 and all(isinstance(m["timestamp"], str) and m["timestamp"].endswith("Z") for m in lines)
    every = requests.get(
        f"{bundle.base}/system/logs", params={"name": "team-a-echo", "follow": "false"}, auth=a, timeout=10
    )
    assert any("Serving on" in json.loads(line)["text"] for line in every.text.splitlines()), "its own output"
    info = requests.get(f"{bundle.base}/system/info", auth=a, timeout=10).json()
    assert info["provider"]["orchestration"] and info["version"]["release"]


def test_list_deploy_scale_to_three_and_logs_through_the_proxy(bundle: Bundle) -> None:
    auth = {"Authorization": f"Bearer {bundle.token()}"}
    proxy = bundle.proxy
    listed = requests.get(f"{proxy}/system/functions", headers=auth, timeout=10)
    assert listed.status_code == 200 and "team-a-echo" in {f["name"] for f in listed.json()}
    deploy = {"service": "team-a-new", "image": "ghcr.io/example/new:1"}
    assert requests.put(f"{proxy}/system/functions", json=deploy, headers=auth, timeout=10).status_code == 404
    assert requests.post(f"{proxy}/system/functions", json=deploy, headers=auth, timeout=10).status_code == 202
    r = requests.post(
        f"{proxy}/system/scale-function/team-a-echo",
        json={"serviceName": "team-a-echo", "replicas": 3},
        headers=auth,
        timeout=60,
    )
    assert r.status_code == 202, r.text
    described = requests.get(f"{proxy}/system/function/team-a-echo", headers=auth, timeout=10).json()
    assert described["replicas"] == 3 and described["availableReplicas"] == 3
    hosts = {requests.get(f"{bundle.base}/function/team-a-echo/", timeout=10).json()["hostname"] for _ in range(9)}
    assert hosts == {f"team-a-echo-local-{i}" for i in range(3)}, "round-robin over three replicas"
    logs = requests.get(f"{proxy}/system/logs", params={"name": "team-a-echo", "tail": "50"}, headers=auth, timeout=10)
    instances = {json.loads(line)["instance"] for line in logs.text.splitlines()}
    assert {f"team-a-echo-local-{i}" for i in range(3)} <= instances
    assert requests.post(
        f"{proxy}/system/scale-function/team-a-echo", json={"replicas": 1}, headers=auth, timeout=60
    ).ok
    assert requests.delete(
        f"{proxy}/system/functions", json={"functionName": "team-a-new"}, headers=auth, timeout=10
    ).ok


# -- the real faas-cli --------------------------------------------------------------------------


def _binary(name: str, env: str) -> str:
    found = os.environ.get(env) or shutil.which(name)
    if not found:
        pytest.skip(
            f"the real {name} is not installed (put it on PATH or set {env}); it is a public Go project "
            "you can build on your own machine"
        )
    return found


@pytest.fixture
def faas_cli(bundle: Bundle, tmp_path: Path) -> Any:
    binary = _binary("faas-cli", "FAAS_CLI")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "OPENFAAS_CONFIG": str(tmp_path / ".openfaas")}
    save_token(bundle.proxy, bundle.token(), {}, env=env)

    def run(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, *args, "--gateway", bundle.proxy],
            env=env,
            cwd=tmp_path,  # no stack.yml here: faas-cli must not pick one up
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def test_every_readme_faas_cli_command_through_the_proxy(faas_cli: Any, bundle: Bundle) -> None:
    listed = faas_cli("list")
    assert listed.returncode == 0 and "team-a-echo" in listed.stdout, listed.stderr
    deployed = faas_cli("deploy", "--image", "ghcr.io/example/cli:1", "--name", "team-a-cli")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    described = faas_cli("describe", "team-a-cli")
    assert described.returncode == 0 and "team-a-cli" in described.stdout, described.stderr
    assert faas_cli("secret", "create", "team-a-cli-db", "--from-literal", "v").returncode == 0
    secrets = faas_cli("secret", "list")
    assert secrets.returncode == 0 and "team-a-cli-db" in secrets.stdout, secrets.stderr
    assert faas_cli("secret", "remove", "team-a-cli-db").returncode == 0
    namespaces = faas_cli("namespace", "list")  # the SDK drops any path: the proxy is at a host root
    assert namespaces.returncode == 0 and "openfaas-fn" in namespaces.stdout, namespaces.stderr
    # A line of our own: replicas an earlier test scaled away may still be logging their exit.
    marker = f"cli-marker-{uuid.uuid4().hex[:8]}"
    bundle.gw.provider.logs.add("openfaas-fn", "team-a-echo", "team-a-echo-local-0", marker)
    logs = faas_cli("logs", "team-a-echo", "--tail=false", "--lines", "50")
    assert logs.returncode == 0 and marker in logs.stdout, logs.stdout + logs.stderr
    denied = faas_cli("remove", "iam-authz")
    assert "403" in denied.stdout + denied.stderr or "forbidden" in (denied.stdout + denied.stderr).lower()
    assert bundle.gw.provider.functions.get(("openfaas-fn", "iam-authz")), "the bundle is still there"
    removed = faas_cli("remove", "team-a-cli")
    assert removed.returncode == 0 and ("openfaas-fn", "team-a-cli") not in bundle.gw.provider.functions


def test_faas_cli_logs_follow_streams_as_lines_arrive(bundle: Bundle) -> None:
    binary = _binary("faas-cli", "FAAS_CLI")
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    out: list[str] = []
    proc: dict[str, Any] = {}

    def follow() -> None:
        proc["p"] = p = subprocess.Popen(
            [binary, "logs", "team-a-echo", "--gateway", bundle.proxy],
            env={**os.environ, "OPENFAAS_CONFIG": str(bundle.tmp / "follow-cfg")},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert p.stdout is not None
        for line in p.stdout:
            out.append(line)

    save_token(bundle.proxy, bundle.token(), {}, env={"OPENFAAS_CONFIG": str(bundle.tmp / "follow-cfg")})
    t = threading.Thread(target=follow, daemon=True)
    t.start()
    try:
        time.sleep(1.5)
        bundle.gw.provider.logs.add("openfaas-fn", "team-a-echo", "team-a-echo-local-0", marker)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(marker in line for line in out):
            time.sleep(0.1)
        assert any(marker in line for line in out), f"the line arrived while following: {out[-5:]}"
    finally:
        if "p" in proc:
            proc["p"].terminate()
            proc["p"].wait(timeout=10)


# -- the real of-watchdog -------------------------------------------------------------------------


def _wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def test_a_function_under_the_real_watchdog(bundle: Bundle, tmp_path: Path) -> None:
    """The template's own check (iam_auth) under the real of-watchdog: tokens, ready_path, SIGTERM drain."""
    watchdog = _binary("of-watchdog", "OF_WATCHDOG")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8081)) == 0:
            pytest.skip("of-watchdog always serves its metrics on :8081, which something else holds here")
    from localgw.build_context import assemble

    fn = bundle.gw.contexts["team-a-echo"][0]
    context = assemble(bundle.gw.stack, fn, tmp_path / "build", ROOT / "template")
    port, upstream = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TMPDIR": str(tmp_path),  # its lock file, not the machine's /tmp/.lock
        "fprocess": f"{shutil.which('python3') or 'python3'} index.py",
        "mode": "http",
        "upstream_url": f"http://127.0.0.1:{upstream}",
        "port": str(port),
        "ready_path": "/_/ready",
        "healthcheck_interval": "1s",
        "write_timeout": "10s",
        "exec_timeout": "10s",
        "iam_auth": "true",
        "iam_auth_issuer": f"{bundle.base}/function/iam-discovery",
        "function_name": "team-a-echo",
        "function_namespace": "openfaas-fn",
        "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""),) if p),
        "VIRTUAL_ENV": os.environ.get("VIRTUAL_ENV", ""),
    }
    venv_python = ROOT / ".venv" / "bin" / "python"
    if venv_python.exists():
        env["fprocess"] = f"{venv_python} index.py"
    proc = subprocess.Popen([watchdog], cwd=context, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_port(port)
        # ready_path: the watchdog's /_/ready asks the template's /_/ready, 200 only once waitress serves
        # (its /_/health is true from the fork; the template binds first thing to narrow that gap).
        deadline = time.monotonic() + 20
        while requests.get(f"http://127.0.0.1:{port}/_/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the watchdog never became ready"
            time.sleep(0.05)
        first = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert first.status_code == 401 and first.headers["WWW-Authenticate"] == "Bearer realm=IAM function invoke"
        fn_token = bundle.token(scope="function", audience="openfaas-fn:team-a-echo")
        ok = requests.get(f"http://127.0.0.1:{port}/", headers={"Authorization": f"Bearer {fn_token}"}, timeout=10)
        assert ok.status_code == 200, ok.text
        api = requests.get(
            f"http://127.0.0.1:{port}/", headers={"Authorization": f"Bearer {bundle.token()}"}, timeout=10
        )
        assert api.status_code == 403 and api.text.strip() == "insufficient permissions"
        claims = jwt.decode(fn_token, options={"verify_signature": False})
        assert claims["function"]["permissions"] == ["openfaas-fn:team-a-echo"]
        # Two rotations of the bundle's keys: tokens signed by each new key keep opening the function
        # (the template re-reads the JWKS on an unknown kid; the real watchdog's own jwt_auth does not).
        kids = {jwt.get_unverified_header(fn_token)["kid"]}
        for _ in range(2):
            deadline = time.monotonic() + 30
            while True:
                r = requests.post(f"{bundle.base}/function/iam-rotate/?force=true", auth=bundle.admin, timeout=10)
                if r.status_code == 200 and r.json().get("rotated"):
                    break
                assert time.monotonic() < deadline, r.text
                time.sleep(0.5)
            deadline = time.monotonic() + 30
            while True:
                token = bundle.token(scope="function", audience="openfaas-fn:team-a-echo")
                kid = jwt.get_unverified_header(token)["kid"]
                got = requests.get(
                    f"http://127.0.0.1:{port}/", headers={"Authorization": f"Bearer {token}"}, timeout=10
                )
                if kid not in kids and got.status_code == 200:
                    kids.add(kid)
                    break
                assert time.monotonic() < deadline, (kid, kids, got.status_code, got.text)
                time.sleep(0.5)
        assert len(kids) == 3
        # SIGTERM: an in-flight request finishes (the template drains through the watchdog's window).
        result: dict[str, Any] = {}

        def slow() -> None:
            result["r"] = requests.get(
                f"http://127.0.0.1:{port}/shape/slow", headers={"Authorization": f"Bearer {fn_token}"}, timeout=20
            )

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)  # the request is in flight (it takes 1.5 s)
        proc.send_signal(signal.SIGTERM)
        t.join(timeout=20)
        assert result["r"].status_code == 200 and result["r"].text == "slow done"
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_auth_at_the_proxys_host_root_finds_the_issuer_and_saves_a_token(bundle: Bundle, tmp_path: Path) -> None:
    """The host route serves only iam-authz: the issuer comes from the proxy's marker, not a guessed path."""
    from openfaas_iam.cli.main import main

    env_before = os.environ.get("OPENFAAS_CONFIG")
    os.environ["OPENFAAS_CONFIG"] = str(tmp_path / "cfg")
    try:
        assert main(["auth", "--gateway", bundle.proxy, "--token", bundle.idp.mint({"sub": "ann"})]) == 0
        saved = (tmp_path / "cfg" / "config.yml").read_text()
        assert bundle.proxy in saved and "oauth2" in saved
        assert main(["whoami", "--gateway", bundle.proxy]) == 0
    finally:
        if env_before is None:
            os.environ.pop("OPENFAAS_CONFIG", None)
        else:
            os.environ["OPENFAAS_CONFIG"] = env_before
