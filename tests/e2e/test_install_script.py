"""scripts/install.sh end to end: against the Kubernetes API stand-in and the local gateway.

The cluster is tests/cluster_standin.py (OpenFaaS CE's namespaces, gateway, basic-auth and
cron-connector already there; a stub `kubectl` on PATH talks to it) and the OpenFaaS REST
API is localgw's provider, running the bundle, driven by the real faas-cli (skipped, saying
so, when faas-cli is not on PATH: the script cannot run without it; --help and --dry-run
are still checked). Install, install again (the upgrade: keys kept, objects unchanged), a
failure that stops with its fix, and uninstall.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_standin import ClusterStandIn
from conftest import ROOT, start_gateway

pytestmark = pytest.mark.e2e
SCRIPT = ROOT / "scripts" / "install.sh"
FAAS_CLI = shutil.which("faas-cli")


def ce_cluster(admin_password: str) -> ClusterStandIn:
    """An OpenFaaS CE install as the chart leaves it (plus cron-connector)."""
    kube = ClusterStandIn().start()
    for ns in ("openfaas", "openfaas-fn"):
        kube.add({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for name in ("gateway", "cron-connector"):
        kube.add({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "openfaas"}})
    kube.add(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "basic-auth", "namespace": "openfaas"},
            "stringData": {"basic-auth-user": "admin", "basic-auth-password": admin_password},
        }
    )
    return kube


def stub_path(tmp: Path) -> Path:
    """A bin folder whose `kubectl` is the stub, first on PATH."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "kubectl"
    stub.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{ROOT / "tests" / "cluster_standin.py"}" kubectl "$@"\n')
    stub.chmod(0o755)
    return bin_dir


def run_script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_help_says_what_it_needs() -> None:
    out = run_script({"PATH": os.environ["PATH"]}, "--help")
    assert out.returncode == 0
    for word in ("--dry-run", "uninstall", "REGISTRY", "no images are published", "OPENFAAS_URL", "ALLOW_NO_CRON"):
        assert word in out.stdout
    assert run_script({"PATH": os.environ["PATH"]}, "--nope").returncode == 2


class Installed:
    def __init__(self, gw: Any, kube: ClusterStandIn, env: dict[str, str], tmp: Path) -> None:
        self.gw, self.kube, self.env, self.tmp = gw, kube, env, tmp


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    if not FAAS_CLI:
        pytest.skip("faas-cli is not on PATH: install.sh drives it; only --help is checked")
    tmp = tmp_path_factory.mktemp("install")
    config = tmp / "iam.yaml"
    config.write_text((ROOT / "examples" / "iam.yaml").read_text())
    gw = start_gateway(tmp, iam_config=config, replicas=1)
    _user, password = gw.secrets.admin()
    kube = ce_cluster(password)
    (tmp / "home").mkdir()
    env = {
        "PATH": f"{stub_path(tmp)}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(tmp / "home"),  # faas-cli login writes ~/.openfaas/config.yml here, not in the real home
        "KUBE_STANDIN_URL": kube.url,
        "GATEWAY": f"http://127.0.0.1:{gw.port}",
        "PUBLIC_GATEWAY_URL": f"http://127.0.0.1:{gw.port}",
        "AUTHZ_HOST": "openfaas-api.example.com",
        "SIGNIN_HOST": "iam.example.com",
        "CLUSTER_ISSUER": "letsencrypt-staging",
        "SKIP_BUILD": "1",
        "REGISTRY": "registry.example.com/team",
        "IAM_CONFIG": str(config),
        "WORK_DIR": str(tmp / "work"),
        # A leftover from signing in: the proxy, which must not be where the install deploys.
        "OPENFAAS_URL": "https://openfaas-api.example.com",
        "READY_WAIT": "30",
    }
    if shutil.which("kubectl", path=os.environ["PATH"]):
        env["REAL_KUBECTL"] = shutil.which("kubectl") or ""
    try:
        yield Installed(gw, kube, env, tmp)
    finally:
        gw.stop()
        kube.stop()


def test_install_runs_every_step_and_check_then_again_as_an_upgrade(cluster: Installed) -> None:
    gw, kube = cluster.gw, cluster.kube
    # Two secrets a fresh cluster lacks (make run's gateway creates the others for itself).
    for name in ("sso-client-secret", "redis-password"):
        gw.secrets.delete("openfaas-fn", name)
    out = run_script(cluster.env)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    (cluster.tmp / "install.out").write_text(text)
    assert "OPENFAAS_URL=https://openfaas-api.example.com is ignored" in text
    for expected in (
        "got: namespace/openfaas-fn",
        "got: deployment.apps/gateway",
        "got: deployment.apps/cron-connector",
        "got: ok: 3 issuer(s), 8 policy(ies), 6 role(s)",
        "got: Function",
        "got: secret/basic-auth",
        "got: ingress.networking.k8s.io/iam-authz",
        'got: {"issuer"',
        "ingress.networking.k8s.io/iam-authz created",
        "ingress.networking.k8s.io/iam-signin created",
        "openfaas-iam is installed",
    ):
        assert expected in text, expected
    (cluster.tmp / "install.out").write_text(text)
    assert text.count("Status:") >= 4 and "faas-cli deploy -f stack.yml" in text
    for name in ("sso-client-secret", "redis-password", "iam-config"):
        assert gw.secrets.exists("openfaas-fn", name)
    stored = (gw.secret_store / "iam-config" / "iam-config").read_text()
    assert stored.strip() == Path(cluster.env["IAM_CONFIG"]).read_text().strip()  # faas-cli trims the file
    basic = kube.secrets[("openfaas-fn", "basic-auth")]["data"]
    assert base64.b64decode(basic["basic-auth-password"]).decode() == gw.secrets.admin()[1]
    ingress = kube.objects["/apis/networking.k8s.io/v1/namespaces/openfaas-fn/ingresses/iam-authz"]
    assert ingress["spec"]["rules"][0]["host"] == "openfaas-api.example.com"
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-staging"
    signin = kube.objects["/apis/networking.k8s.io/v1/namespaces/openfaas-fn/ingresses/iam-signin"]
    assert signin["spec"]["tls"][0]["hosts"] == ["iam.example.com"]
    functions = {name for (_, name) in gw.provider.functions}
    assert {"iam-authz", "iam-token", "iam-discovery", "iam-rotate"} <= functions
    record = gw.provider.functions[("openfaas-fn", "iam-token")]
    assert record["envVars"]["signin_origin"] == "https://iam.example.com"
    assert record["image"] == "registry.example.com/team/iam-token:0.1.0"
    keys_before = (gw.secret_store / "iam-signing-keys" / "iam-signing-keys").read_text()

    again = run_script(cluster.env)  # the upgrade path: nothing is lost, nothing is duplicated
    assert again.returncode == 0, again.stdout + again.stderr
    assert "iam-signing-keys exists: kept" in again.stdout and "iam-cache-key exists: kept" in again.stdout
    assert "ingress.networking.k8s.io/iam-authz unchanged" in again.stdout
    assert (gw.secret_store / "iam-signing-keys" / "iam-signing-keys").read_text() == keys_before


def guide_checks() -> list[tuple[str, list[str]]]:
    """docs/install.md's checks: in each ```console block, `$ command` and the lines it must print."""
    checks: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", (ROOT / "docs" / "install.md").read_text(), re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                checks.append((line[2:], []))
            elif line.strip():
                checks[-1][1].append(line)
    return checks


def squash(text: str) -> str:
    return " ".join(text.split())


def test_the_install_guides_checks_give_the_shown_output(cluster: Installed) -> None:
    """After the install, every check in docs/install.md prints what the page shows."""
    checks = guide_checks()
    assert len(checks) >= 8
    env = {**cluster.env, "OPENFAAS_CONFIG": str(Path(cluster.env["HOME"]) / ".openfaas")}
    for command, expected in checks:
        out = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, f"{command}: {out.stderr}"
        for line in expected:
            pattern = ".*".join(re.escape(part) for part in squash(line).split("..."))
            assert re.search(pattern, squash(out.stdout)), f"{command}: expected {line!r}, got {out.stdout[:300]!r}"


def test_every_switch_redis_crds_gateway_api_ca_bundle_audit_without_kubectls_kustomize(cluster: Installed) -> None:
    """The optional parts, rendered by tests/kustomize_lite.py (as where kubectl is absent)."""
    gw, kube = cluster.gw, cluster.kube
    gw.secrets.delete("openfaas-fn", "redis-password")  # Redis needs its password in both namespaces
    (cluster.tmp / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n")
    env = {k: v for k, v in cluster.env.items() if k not in ("REAL_KUBECTL", "SIGNIN_HOST")}
    env.update(
        WORK_DIR=str(cluster.tmp / "work-all"),
        REDIS="1",
        IAM_CONFIG_SOURCE="kubernetes",
        ROUTES="gateway-api",
        CA_BUNDLE=str(cluster.tmp / "ca.pem"),
        AUDIT_WEBHOOK_URL="https://audit.example.com/hook",
        AUDIT_WEBHOOK_SECRET="hmac-key",
    )
    out = run_script(env)
    assert out.returncode == 0, out.stdout + out.stderr
    for expected in (
        "got: deployment.apps/redis",
        "got: httproute.gateway.networking.k8s.io/iam-authz",
        "got: policy.iam.openfaas.com/team-a-ro",
        "customresourcedefinition.apiextensions.k8s.io/policies.iam.openfaas.com created",
        "IAM_CONFIG_MOUNT=  ",
    ):
        assert expected in out.stdout, expected
    assert "httproute.gateway.networking.k8s.io/iam-signin" not in out.stdout, "no SIGNIN_HOST: no sign-in route"
    assert ("openfaas", "redis-password") in kube.secrets and ("openfaas-fn", "ca-bundle") in kube.secrets
    assert gw.secrets.exists("openfaas-fn", "audit-webhook-secret")
    assert len(kube.custom[("openfaas", "policies")]) == 8
    authz = gw.provider.functions[("openfaas-fn", "iam-authz")]
    assert authz["envVars"]["redis_url"] == "redis://redis.openfaas:6379/0"
    assert authz["envVars"]["iam_config"] == "kubernetes"
    assert authz["envVars"]["audit_webhook_url"] == "https://audit.example.com/hook"
    assert sorted(authz["secrets"]) == sorted(
        ["iam-public-keys", "iam-cache-key", "redis-password", "basic-auth", "ca-bundle", "audit-webhook-secret"]
    )
    route = kube.objects["/apis/gateway.networking.k8s.io/v1/namespaces/openfaas-fn/httproutes/iam-authz"]
    assert route["spec"]["hostnames"] == ["openfaas-api.example.com"]
    assert not [p for p in kube.objects if p.endswith("/httproutes/iam-signin")]


def test_the_first_failure_stops_the_script_with_its_fix(cluster: Installed) -> None:
    cron = "/apis/apps/v1/namespaces/openfaas/deployments/cron-connector"
    saved = cluster.kube.objects.pop(cron)
    try:
        out = run_script(cluster.env)
        assert out.returncode == 1
        assert "FAILED: cron-connector" in out.stderr
        assert "fix: helm upgrade --install cron-connector openfaas/cron-connector --namespace openfaas" in out.stderr
        assert "faas-cli login" not in out.stdout, "nothing after the failed step ran"
        skipped = run_script({**cluster.env, "ALLOW_NO_CRON": "1", "GATEWAY": "http://127.0.0.1:1"})
        assert skipped.returncode == 1 and "keys never rotate" in skipped.stdout + skipped.stderr
        assert "FAILED: faas-cli login" in skipped.stderr and "port-forward" in skipped.stderr
    finally:
        cluster.kube.objects[cron] = saved
    missing = run_script({k: v for k, v in cluster.env.items() if k != "AUTHZ_HOST"})
    assert missing.returncode == 1 and "AUTHZ_HOST is not set" in missing.stderr


def test_dry_run_prints_the_commands_and_changes_nothing(cluster: Installed) -> None:
    before = dict(cluster.kube.objects)
    out = run_script(cluster.env, "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    for command in (
        "+ kubectl apply -k",
        "+ faas-cli secret update iam-config",
        "faas-cli login --gateway",
        "+ env PUBLIC_GATEWAY_URL=",
        "check: faas-cli describe iam-authz",
    ):
        assert command in out.stdout, command
    assert cluster.kube.objects == before


def test_uninstall_removes_what_install_made(cluster: Installed) -> None:
    out = run_script(cluster.env, "uninstall")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "openfaas-iam is removed" in out.stdout
    assert not {n for (_, n) in cluster.gw.provider.functions} & {
        "iam-authz",
        "iam-token",
        "iam-discovery",
        "iam-rotate",
    }
    assert not cluster.gw.secrets.exists("openfaas-fn", "iam-signing-keys")
    assert ("openfaas-fn", "basic-auth") not in cluster.kube.secrets
    assert not [p for p in cluster.kube.objects if "/ingresses/" in p]
