"""Key rotation against the Kubernetes API stand-in, with injected faults, and kubectl reading it."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from pathlib import Path

import jwt
import pytest
from k8s_standin import TOKEN, KubeStandIn
from tls_certs import make_ca_and_server_cert

from openfaas_iam.config_source import KubernetesConfigSource
from openfaas_iam.errors import StoreError
from openfaas_iam.keyset import CURRENT, NEXT, RETIRED, initial_keyset, parse_keyset, rotate
from openfaas_iam.mint import sign
from openfaas_iam.rotation import Rotator, publisher
from openfaas_iam.stores.cache import LayeredCache
from openfaas_iam.stores.kubernetes import KubernetesClient
from openfaas_iam.stores.secrets import KubernetesSecretStore, LocalFolderStore
from openfaas_iam.verify import OwnTokenVerifier

NS, NAME = "openfaas-fn", "iam-signing-keys"
ISSUER = "https://gateway.example.com/function/iam-discovery"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca_and_server_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def kube(tls, tmp_path: Path):
    ca, cert, key = tls
    api = KubeStandIn(tls=(str(cert), str(key))).start()
    api.put_secret(
        NS,
        NAME,
        {NAME: base64.b64encode(initial_keyset(now=time.time() - 100).to_json().encode()).decode(), "other": "eA=="},
    )
    (tmp_path / "token").write_text(TOKEN)
    api.client = KubernetesClient(api.url, token_path=str(tmp_path / "token"), ca_path=str(ca), timeout=1.0)
    api.ca = ca
    yield api
    api.stop()


def stored(kube: KubeStandIn):
    return parse_keyset(base64.b64decode(kube.secrets[(NS, NAME)]["data"][NAME]))


def rotator(kube: KubeStandIn, **kw) -> Rotator:
    store = KubernetesSecretStore(kube.client, NS, NAME, NAME)
    return Rotator(
        store,
        interval=kw.pop("interval", 3600),
        retire_after=lambda: kw.get("retire_after", 600),
        **{k: v for k, v in kw.items() if k != "retire_after"},
    )


def test_rotation_step_states() -> None:
    ks = initial_keyset(now=0)
    cur, nxt = ks.current.kid, next(k.kid for k in ks.keys if k.state == NEXT)
    r1 = rotate(ks, now=100, retire_after=50)
    assert {k.kid: k.state for k in r1.keys}[cur] == RETIRED
    assert r1.current.kid == nxt and r1.current.activated_at == 100
    assert sum(1 for k in r1.keys if k.state == NEXT) == 1
    r2 = rotate(r1, now=140, retire_after=50)
    assert cur in {k.kid for k in r2.keys}, "retired 40s ago, tokens may live 50s: still published"
    r3 = rotate(r2, now=151, retire_after=50)
    assert cur not in {k.kid for k in r3.keys}, "every token it signed has expired: removed"
    assert [k.state for k in r3.keys].count(RETIRED) == 2 and [k.state for k in r3.keys].count(CURRENT) == 1


def test_cron_run_rotates_only_when_due(kube: KubeStandIn) -> None:
    before = stored(kube)
    assert not rotator(kube, interval=3600).run().rotated
    assert stored(kube).current.kid == before.current.kid
    result = rotator(kube, interval=60).run()
    assert result.rotated and result.reason == "due"
    after = stored(kube)
    assert after.current.kid == next(k.kid for k in before.keys if k.state == NEXT)
    assert kube.secrets[(NS, NAME)]["data"]["other"] == "eA==", "other keys of the Secret are kept"
    assert not rotator(kube, interval=60).run().rotated, "twice in a row: the second is a no-op"


def test_two_rotations_at_once_apply_exactly_one_step(kube: KubeStandIn) -> None:
    before = stored(kube)
    results = []
    barrier = threading.Barrier(4)

    def go() -> None:
        barrier.wait()
        results.append(rotator(kube, interval=60).run())

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.rotated for r in results) == 1
    after = stored(kube)
    assert {k.kid for k in before.keys} <= {k.kid for k in after.keys}, "no key lost"
    assert len(after.keys) == 3


def test_forced_rotations_racing_apply_one_step(kube: KubeStandIn) -> None:
    kube.bump_before_put = 1  # another writer lands first
    before = stored(kube)
    result = rotator(kube).run(force=True)
    assert result.rotated
    assert stored(kube).current.kid != before.current.kid


@pytest.mark.parametrize(
    ("fault", "message"),
    [({"code": 500}, "HTTP 500 injected fault"), ({"delay": 1.5, "code": 503}, "did not answer within 1s")],
)
def test_failure_mid_rotation_leaves_the_keyset_unchanged(kube: KubeStandIn, fault: dict, message: str) -> None:
    before = kube.secrets[(NS, NAME)]["data"][NAME]
    kube.inject(method="PUT", **fault)
    with pytest.raises(StoreError, match=message):
        rotator(kube, interval=60).run()
    time.sleep(0.6 if fault.get("delay") else 0)
    assert kube.secrets[(NS, NAME)]["data"][NAME] == before
    assert rotator(kube, interval=60).run().rotated, "the next run succeeds"


def test_timeout_after_the_write_landed_loses_no_key(kube: KubeStandIn) -> None:
    """A timed-out PUT may still have been applied: then it is one whole, valid step."""
    before = stored(kube)
    kube.inject(method="PUT", delay=1.5)  # the server applies it after the client gave up
    with pytest.raises(StoreError, match="did not answer within 1s"):
        rotator(kube, interval=60).run()
    time.sleep(0.8)
    after = stored(kube)
    assert {k.kid for k in before.keys} <= {k.kid for k in after.keys}
    assert not rotator(kube, interval=60).run().rotated, "the step already happened; the next run is a no-op"


def test_clear_errors(kube: KubeStandIn, tmp_path: Path) -> None:
    missing = KubernetesSecretStore(kube.client, NS, "nope", "nope")
    with pytest.raises(StoreError, match=r'reading Secret openfaas-fn/nope: HTTP 404 secrets "nope" not found'):
        missing.read()
    (tmp_path / "token").write_text("wrong")
    bad = KubernetesClient(kube.url, token_path=str(tmp_path / "token"), ca_path=str(kube.ca))
    with pytest.raises(StoreError, match="HTTP 401 Unauthorized"):
        KubernetesSecretStore(bad, NS, NAME, NAME).read()
    down = KubernetesClient(
        "https://127.0.0.1:9", token_path=str(tmp_path / "token"), ca_path=str(kube.ca), timeout=0.5
    )
    with pytest.raises(StoreError, match="is unreachable"):
        KubernetesSecretStore(down, NS, NAME, NAME).read()


def test_token_is_reread_for_every_call(kube: KubeStandIn, tmp_path: Path) -> None:
    store = KubernetesSecretStore(kube.client, NS, NAME, NAME)
    store.read()
    Path(kube.client.token_path).write_text("rotated-by-kubelet")
    with pytest.raises(StoreError, match="401"):
        store.read()


def test_stale_mounted_file_keeps_signing_with_a_published_key(kube: KubeStandIn, tmp_path: Path) -> None:
    stale = stored(kube)  # what the kubelet still has mounted
    cache = LayeredCache(None)
    rotator(kube, interval=60, publish=publisher(cache, "own-jwks", 3600)).run()
    published = json.loads(cache.get("own-jwks"))
    assert stale.current.kid in {k["kid"] for k in published["keys"]}, "the old current is retired, still published"
    now = int(time.time())
    token = sign({"iss": ISSUER, "aud": ISSUER, "sub": "fed:a", "iat": now, "exp": now + 60}, stale.current)
    keys = {k["kid"]: jwt.PyJWK(k).key for k in published["keys"]}
    assert OwnTokenVerifier(ISSUER, lambda: keys).verify(token)["sub"] == "fed:a"
    fresh = stored(kube)
    next_kid = next(k.kid for k in fresh.keys if k.state == NEXT)
    assert next_kid in keys, "the next key is published a full interval before it signs"


def test_local_folder_store_compare_and_swap(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(initial_keyset().to_json())
    store = LocalFolderStore(str(path))
    a, b = store.read(), store.read()
    store.write(rotate(a.keyset, time.time(), 60), a.version)
    from openfaas_iam.errors import ConflictError

    with pytest.raises(ConflictError):
        store.write(rotate(b.keyset, time.time(), 60), b.version)
    assert (path.stat().st_mode & 0o777) == 0o600


def test_kubectl_reads_the_secret_from_the_standin(kube: KubeStandIn) -> None:
    out = subprocess.run(
        [
            "kubectl",
            "--server",
            kube.url,
            "--certificate-authority",
            str(kube.ca),
            "--token",
            TOKEN,
            "-n",
            NS,
            "get",
            "secret",
            NAME,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0 and "not found" in out.stderr and "kubectl" in out.stderr:
        pytest.skip("kubectl is not installed")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (
        doc["kind"] == "Secret"
        and doc["metadata"]["resourceVersion"] == kube.secrets[(NS, NAME)]["metadata"]["resourceVersion"]
    )
    assert parse_keyset(base64.b64decode(doc["data"][NAME])).current.kid == stored(kube).current.kid


def test_iam_objects_from_the_kubernetes_api(kube: KubeStandIn) -> None:
    root = Path(__file__).resolve().parents[2]
    import yaml

    for doc in yaml.safe_load_all((root / "examples" / "iam.yaml").read_text()):
        if doc:
            plural = {"JwtIssuer": "jwtissuers", "Policy": "policies", "Role": "roles"}[doc["kind"]]
            kube.custom.setdefault(("openfaas", plural), []).append(doc)
    source = KubernetesConfigSource(kube.client, "openfaas", poll_interval=0)
    config = source.get()
    assert len(config.issuers) == 3 and len(config.roles) == 6
    kube.custom[("openfaas", "roles")][0]["spec"]["policy"] = ["missing"]
    kube.version += 1
    assert source.get() is config, "an invalid change keeps the last good configuration"
    assert "Policy 'missing' does not exist" in (source.last_error or "")
