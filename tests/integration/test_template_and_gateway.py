"""The python3-http-iam template contract and the local gateway's routing, through real processes."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture
def echo_gateway(local_gateway, tmp_path: Path):
    state = tmp_path / "state"
    (state / "secrets" / "api-key").mkdir(parents=True)
    (state / "secrets" / "api-key" / "api-key").write_text("s3cret")
    gw = local_gateway(
        stack=FIXTURES / "stack.yml", env={"TICKS_FILE": str(tmp_path / "ticks.jsonl")}, state_dir=state, cron=True
    )
    gw.ticks = tmp_path / "ticks.jsonl"
    return gw


def url(gw, path: str) -> str:
    return f"http://127.0.0.1:{gw.port}{path}"


def test_routing_keeps_path_query_method_headers_and_body(echo_gateway) -> None:
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        r = requests.request(
            method,
            url(echo_gateway, "/function/echo/a/b%20c?x=1&x=2&y=%2F"),
            data=b"\x00payload\xff",
            headers={"X-Custom": "v1", "Content-Type": "application/octet-stream"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["method"] == method
        assert got["path"] == "/a/b c"
        assert got["query"] == {"x": "1", "y": "/"}
        assert got["query_lists"] == {"x": ["1", "2"], "y": ["/"]}
        assert got["headers"]["x-custom"] == "v1"
        assert got["headers"]["content-type"] == "application/octet-stream"
        # As the CE gateway sets it when the caller sent none: the caller's ip:port.
        assert got["headers"]["x-forwarded-for"].startswith("127.0.0.1:")
        assert base64.b64decode(got["body"]) == b"\x00payload\xff"
        assert got["hostname"] == "echo-local-0"  # like a pod name: one per replica
        assert "x-call-id" in {k.lower() for k in r.headers}


def test_namespace_suffix_and_unknown_function(echo_gateway) -> None:
    assert requests.get(url(echo_gateway, "/function/echo.staging/x"), timeout=10).json()["path"] == "/x"
    assert requests.get(url(echo_gateway, "/function/echo"), timeout=10).json()["path"] == "/"
    r = requests.get(url(echo_gateway, "/function/echo.openfaas-fn/x"), timeout=10)
    assert r.status_code == 404 and "echo.openfaas-fn" in r.text
    r = requests.get(url(echo_gateway, "/function/nope/x"), timeout=10)
    assert r.status_code == 404 and "error finding function nope.openfaas-fn" in r.text
    assert requests.get(url(echo_gateway, "/elsewhere"), timeout=10).status_code == 404
    assert requests.get(url(echo_gateway, "/system/functions"), timeout=10).status_code == 401
    admin = echo_gateway.secrets.admin()
    listed = [
        f
        for ns in ("staging", "openfaas-fn")
        for f in requests.get(
            url(echo_gateway, "/system/functions"), params={"namespace": ns}, auth=admin, timeout=10
        ).json()
    ]
    assert {f["name"]: f["namespace"] for f in listed} == {"echo": "staging", "ticker": "openfaas-fn"}


@pytest.mark.parametrize(
    ("path", "status", "body", "content_type"),
    [
        ("/shape/none", 200, b"", None),
        ("/shape/str", 200, b"hello", "text/plain; charset=utf-8"),
        ("/shape/bytes", 200, b"\x00\x01binary", "application/octet-stream"),
        # A bytes body (an echo's `return event.body`) is never Flask's default text/html (issue 20).
        ("/shape/dict-raw", 200, b"<script>alert(1)</script>", "application/octet-stream"),
        ("/shape/dict-json", 201, b'{"a": 1}', "application/json"),
        ("/shape/dict-text", 200, b"text body", "text/plain; charset=utf-8"),
        ("/shape/dict-empty", 204, b"", None),
        ("/shape/dict-list", 200, b"[1, 2, 3]", "application/json"),
        ("/shape/dict-bytes", 200, b"raw", "application/octet-stream"),
        ("/shape/stream", 200, b'{"line": 0}\n{"line": 1}\n{"line": 2}\n', "application/x-ndjson"),
    ],
)
def test_every_return_shape(echo_gateway, path: str, status: int, body: bytes, content_type: str | None) -> None:
    r = requests.get(url(echo_gateway, f"/function/echo{path}"), timeout=10)
    assert r.status_code == status
    if content_type == "application/json":
        assert r.json() == json.loads(body)
    else:
        assert r.content == body
    if content_type:
        assert r.headers["Content-Type"].startswith(content_type)
    if path == "/shape/dict-json":
        assert r.headers["X-Test"] == "yes"
    # Unlike the official template (text/html for a str): no body is ever sniffed or served as HTML.
    assert r.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/shape/raise", "/shape/bad"])
def test_handler_errors_are_a_json_500_and_a_logged_traceback(echo_gateway, path: str) -> None:
    r = requests.get(url(echo_gateway, f"/function/echo{path}"), timeout=10)
    assert r.status_code == 500
    assert r.json() == {"error": "internal_error", "message": "the function failed; its log has the details"}
    assert "Traceback" not in r.text and "boom" not in r.text
    # The process survived and the traceback is in its log.
    assert requests.get(url(echo_gateway, "/function/echo/shape/str"), timeout=10).text == "hello"
    log = (echo_gateway.state_dir / "logs" / "echo.log").read_text()
    assert "Traceback (most recent call last)" in log
    assert ("ValueError: boom: handler failure" if path == "/shape/raise" else "TypeError: handler returned int") in log


def test_oversize_body_is_a_clear_413(echo_gateway) -> None:
    r = requests.post(url(echo_gateway, "/function/echo/x"), data=b"x" * (2 * 1024 * 1024), timeout=10)
    assert r.status_code == 413
    # Refused by waitress itself, before the handler: the same JSON as every template error, never its text page.
    assert r.headers["Content-Type"].startswith("application/json") and "generated by" not in r.text
    assert r.json()["error"] == "invalid_request" and "Too Large" in r.json()["error_description"]


def test_malformed_http_is_a_json_400(echo_gateway) -> None:
    echo = next(p for p in echo_gateway.processes if p.fn.name == "echo")
    upstream = urlsplit(echo.env["upstream_url"])
    with socket.create_connection((upstream.hostname, upstream.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, raw
    assert json.loads(body)["error"] == "invalid_request"


def test_secrets_are_mounted_per_function(echo_gateway) -> None:
    echo = next(p for p in echo_gateway.processes if p.fn.name == "echo")
    mount = Path(echo.env["secret_mount_path"])
    assert (mount / "api-key").read_text() == "s3cret"
    assert echo.env["greeting"] == "hello"
    ticker = next(p for p in echo_gateway.processes if p.fn.name == "ticker")
    assert not (Path(ticker.env["secret_mount_path"]) / "api-key").exists()


def test_cron_invokes_like_cron_connector(echo_gateway) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if echo_gateway.ticks.exists() and len(echo_gateway.ticks.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    ticks = [json.loads(line) for line in echo_gateway.ticks.read_text().splitlines()]
    assert len(ticks) >= 2
    assert ticks[0] == {"method": "POST", "topic": "cron-function", "connector": "cron-connector", "body": ""}


def test_a_burst_of_sigterms_still_ends_the_function(echo_gateway, tmp_path: Path) -> None:
    """SIGTERM often arrives more than once (the watchdog forwards it; a dying parent or the kubelet
    sends it too). A handler that logged or started a thread ran inside whatever it interrupted and
    deadlocked against the drain's own logging: the process lived on with every thread waiting."""
    echo = next(p for p in echo_gateway.processes if p.fn.name == "echo")
    for attempt in range(5):
        port = free_port()
        log = tmp_path / f"echo-{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "index.py"],
                cwd=echo.context,
                env={**echo.env, "upstream_url": f"http://127.0.0.1:{port}"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 30
            while b"Serving on" not in log.read_bytes():
                assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                time.sleep(0.05)
            # SIGTERM after SIGTERM, as fast as a shell can send them, until it exits: some land
            # inside the handling of the one before and while the drain shuts logging down.
            sender = subprocess.Popen(["sh", "-c", f"while kill -TERM {proc.pid} 2>/dev/null; do :; done"])
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            finally:
                sender.kill()
                sender.wait()
            if proc.poll() is None:
                pytest.fail(f"still running after 20 s of SIGTERMs (attempt {attempt}):\n{log.read_text()}")
            assert proc.returncode == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
