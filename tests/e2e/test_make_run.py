"""What `make run` starts: the four functions behind the local gateway, discovery answering."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from conftest import ROOT, free_port


def test_all_functions_start_and_discovery_names_the_issuer(local_gateway) -> None:
    gw = local_gateway()
    base = f"http://127.0.0.1:{gw.port}"
    doc = requests.get(f"{base}/function/iam-discovery/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == f"{base}/function/iam-discovery"
    assert doc["jwks_uri"] == f"{base}/function/iam-discovery/.well-known/jwks.json"
    assert doc["token_endpoint"] == f"{base}/function/iam-token/oauth/token"
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in doc["grant_types_supported"]
    assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
    jwks = requests.get(doc["jwks_uri"], timeout=10).json()
    assert len(jwks["keys"]) == 2 and all(k["alg"] == "ES256" and "d" not in k for k in jwks["keys"])
    for name in ("iam-discovery", "iam-token", "iam-authz", "iam-rotate"):
        assert requests.get(f"{base}/function/{name}/healthz", timeout=10).status_code == 200


def test_issuer_url_is_configurable(local_gateway) -> None:
    gw = local_gateway(env={"ISSUER_URL": "https://gateway.example.com/function/iam-discovery"})
    doc = requests.get(
        f"http://127.0.0.1:{gw.port}/function/iam-discovery/.well-known/openid-configuration", timeout=10
    )
    assert doc.json()["issuer"] == "https://gateway.example.com/function/iam-discovery"


def _children_of(pid: int) -> list[int]:
    """Every process whose parent is `pid` (from /proc, so no tool is needed)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def _local_gateway_command(tmp_path, port: int) -> list[str]:
    """make run's gateway with only its main port, its state in `tmp_path`, and no cron."""
    state, build = str(tmp_path / "state"), str(tmp_path / "build")
    return [
        sys.executable,
        "-m",
        "localgw.main",
        "--port",
        str(port),
        "--signin-port",
        "0",
        "--authz-port",
        "0",
        "--state-dir",
        state,
        "--build-dir",
        build,
        "--no-cron",
    ]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL"])
def test_no_process_is_left_behind_whatever_stops_make_run(tmp_path, sig: str) -> None:
    """`make run` stopped by any signal, even one it cannot handle (SIGKILL), leaves no function running."""
    port = free_port()
    log = tmp_path / "make-run.log"
    output = log.open("w")
    proc = subprocess.Popen(
        _local_gateway_command(tmp_path, port),
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        # A file, not a pipe nobody reads: a full pipe would block make run's own logging and
        # with it the shutdown under test; the file is also what a failure shows.
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def shown() -> str:
        return "make run said:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:])

    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(children) < 4:
            children = _children_of(proc.pid)
            time.sleep(0.2)
        assert len(children) == 4, f"one process per function: {children}\n{shown()}"
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        proc.send_signal(getattr(signal, sig))
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make run did not exit within 30 s of {sig}\n{shown()}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(c) for c in children):
            time.sleep(0.1)
        left = [c for c in children if _alive(c)]
        assert not left, f"left behind after {sig}: {left}\n{shown()}"
    finally:
        output.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for c in children:
            if _alive(c):  # a failed run must not leave its functions behind for the next test
                os.kill(c, signal.SIGKILL)


def test_a_stop_while_the_functions_start_stops_the_ones_started(tmp_path) -> None:
    """Ctrl-C during start-up: make run stops what it started so far and exits, rather than finishing
    start-up first or dying with functions running."""
    log = tmp_path / "make-run.log"
    with log.open("w") as output:
        proc = subprocess.Popen(
            _local_gateway_command(tmp_path, free_port()),
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen:
            seen.update(_children_of(proc.pid))
            time.sleep(0.02)
        assert seen, "no function started"
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            seen.update(_children_of(proc.pid))
            time.sleep(0.05)
        said = log.read_text(errors="replace")
        assert proc.poll() is not None, f"make run did not exit within 30 s of SIGINT during start-up\n{said}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(c) for c in seen):
            time.sleep(0.1)
        assert not [c for c in seen if _alive(c)], f"left behind: {seen}\n{said}"
        if proc.returncode == 130:  # the usual case: the signal landed while functions were starting
            assert "stopped while starting" in said
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for c in seen:
            if _alive(c):
                os.kill(c, signal.SIGKILL)
