"""Key rotation over late mounts: iam-rotate writes through the gateway's secrets API, reads its mounts.

The Kubernetes stand-in keeps the Secrets, the gateway stand-in writes them as faas-netes
does (values never returned), and KubeletStandIn mounts them into each pod late, each pod
with its own delay, on a simulated clock so hours of rotation run in seconds.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
import requests
import yaml
from gateway_standin import GatewayStandIn
from k8s_standin import TOKEN, KubeletStandIn, KubeStandIn
from tls_certs import make_ca_and_server_cert

from openfaas_iam.errors import StoreError
from openfaas_iam.jose.keyset import NEXT, RETIRED, initial_keyset, parse_keyset, parse_public_keys, rotate
from openfaas_iam.jose.mint import sign
from openfaas_iam.oidc.verify import OwnTokenVerifier
from openfaas_iam.service.config_source import KubernetesConfigSource
from openfaas_iam.service.rotation import Rotator
from openfaas_iam.stores.cache import LayeredCache, RedisCache
from openfaas_iam.stores.kubernetes import KubernetesClient
from openfaas_iam.stores.secrets import GatewaySecretWriter, MountedKeysetStore
from openfaas_iam.stores.watched_file import Unavailable

NS, NAME, PUBLIC = "openfaas-fn", "iam-signing-keys", "iam-public-keys"
ISSUER = "https://gateway.example.com/function/iam-discovery"
ADMIN = ("admin", "s3cret")
ROOT = Path(__file__).resolve().parents[2]

MOUNT_DELAY = 120.0  # the kubelet's worst case
JWKS_MAX_AGE = 60.0  # what external verifiers cache the JWKS for
LEAD = MOUNT_DELAY + JWKS_MAX_AGE
LIFETIME = 300.0
LEEWAY = 60.0
RETIRE_AFTER = LIFETIME + LEEWAY + MOUNT_DELAY


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class World:
    """The cluster: API server, gateway, and the pods' late secret mounts, on one simulated clock."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.clock = Clock()
        self.kube = KubeStandIn(clock=self.clock).start()
        self.gateway = GatewayStandIn(lambda: ADMIN, kube=self.kube).start()
        ks = initial_keyset(now=self.clock() - 2 * LEAD)
        for name, value in ((NAME, ks.to_json()), (PUBLIC, ks.public_json())):
            self.gateway.secrets[(NS, name)] = value
            self.kube.put_secret(NS, name, {name: base64.b64encode(value.encode()).decode()})
        self.pods: list[KubeletStandIn] = []

    def pod(self, name: str, secrets: list[str], delay: float) -> Path:
        folder = self.tmp / name
        self.pods.append(KubeletStandIn(self.kube, NS, secrets, folder, delay))
        return folder

    def rotator(self, folder: Path, *, lease=None, interval: float = 600.0) -> Rotator:
        writer = GatewaySecretWriter(self.gateway.url, lambda: ADMIN, NS, timeout=5)
        store = MountedKeysetStore(str(folder / NAME), str(folder / PUBLIC), writer)
        return Rotator(
            store,
            interval=interval,
            retire_after=lambda: RETIRE_AFTER,
            publish_lead=LEAD,
            lease=lease,
            lease_ttl=2 * MOUNT_DELAY + 10,
            clock=self.clock,
        )

    def advance(self, seconds: float) -> None:
        self.clock.t += seconds
        for p in self.pods:
            p.sync()

    def stored(self):
        return parse_keyset(base64.b64decode(self.kube.secrets[(NS, NAME)]["data"][NAME]))

    def secret_writes(self) -> int:
        return sum(
            1 for r in self.gateway.requests if r["path"] == "/system/secrets" and r["method"] in ("PUT", "POST")
        )

    def stop(self) -> None:
        self.gateway.stop()
        self.kube.stop()


@pytest.fixture
def world(tmp_path: Path):
    w = World(tmp_path)
    yield w
    w.stop()


def mounted_kids(folder: Path) -> set[str]:
    return set(parse_public_keys((folder / PUBLIC).read_bytes()).kids)


def test_rotation_under_late_mounts_keeps_every_live_token_valid(world: World) -> None:
    """Hours of scheduled and impatient forced rotations; pods see each write up to 2 minutes late."""
    rot = world.rotator(world.pod("iam-rotate", [NAME, PUBLIC], delay=90))
    signers = [world.pod(f"iam-token-{d}", [NAME, PUBLIC], delay=d) for d in (0, 45, MOUNT_DELAY)]
    verifiers = [world.pod(f"iam-authz-{d}", [PUBLIC], delay=d) for d in (0, 70, MOUNT_DELAY)]
    discovery = world.pod("iam-discovery", [PUBLIC], delay=MOUNT_DELAY)
    client_cache: tuple[float, set[str]] = (world.clock(), mounted_kids(discovery))  # a client caching the JWKS
    live: list[tuple[float, str, str]] = []  # (exp, kid, token)
    failures: list[str] = []
    rotated = refused = 0
    signer_kids: set[str] = set()
    for step in range(int(3 * 3600 / 15)):
        world.advance(15)
        now = world.clock()
        if step % 4 == 0:
            rotated += rot.run().rotated  # cron-connector, every minute
        if step % 3 == 0:  # an operator forcing a rotation every 45 s
            r = rot.run(force=True)
            rotated += r.rotated
            refused += r.retry_after is not None
        for folder in signers:
            key = parse_keyset((folder / NAME).read_bytes()).current
            signer_kids.add(key.kid)
            claims = {"iss": ISSUER, "aud": ISSUER, "sub": "fed:a", "iat": now, "exp": now + LIFETIME}
            live.append((now + LIFETIME, key.kid, sign(claims, key)))
        live = [t for t in live if t[0] >= now]
        if now >= client_cache[0] + JWKS_MAX_AGE:
            client_cache = (now, mounted_kids(discovery))
        views = [(f"iam-authz +{v.name}", mounted_kids(v)) for v in verifiers] + [("client", client_cache[1])]
        for exp, kid, _ in live:
            for who, kids in views:
                if kid not in kids:
                    failures.append(f"t+{step * 15}s {who}: kid {kid} of a live token (exp in {exp - now:g}s) unknown")
    assert failures == []
    assert rotated >= 10, "rotations kept happening"
    assert refused > 0, "forced rotations that came too soon were refused"
    assert len(signer_kids) >= 10
    # The mounted keys really verify the tokens (kid is the key's thumbprint, but check the signature too).
    keys = {k["kid"]: k for k in parse_public_keys((verifiers[0] / PUBLIC).read_bytes()).jwks["keys"]}
    import jwt

    pub = {kid: jwt.PyJWK(k).key for kid, k in keys.items()}
    for exp, _, token in live[-6:]:
        assert OwnTokenVerifier(ISSUER, lambda: pub).verify_uncached(token, now=exp - 1)["sub"] == "fed:a"
    # Retired keys leave once their tokens have expired: with a step at most every LEAD seconds,
    # at most RETIRE_AFTER / LEAD (+1) of them are still published, plus current and next.
    assert len(world.stored().keys) <= 3 + int(RETIRE_AFTER // LEAD)


def test_two_forced_rotations_in_a_row_lose_no_key(world: World) -> None:
    folder = world.pod("iam-rotate", [NAME, PUBLIC], delay=MOUNT_DELAY)
    rot = world.rotator(folder)
    before = world.stored()
    first = rot.run(force=True)
    assert first.rotated
    second = rot.run(force=True)
    assert not second.rotated and "mount still shows" in second.reason
    world.advance(MOUNT_DELAY + 1)  # the mount has caught up, the new next key is young
    third = rot.run(force=True)
    assert not third.rotated and third.retry_after is not None and "may sign only after" in third.reason
    after = world.stored()
    assert {k.kid for k in before.keys} <= {k.kid for k in after.keys}, "no key that signed was lost"
    assert after.generation == before.generation + 1
    world.advance(third.retry_after + 1)
    assert rot.run(force=True).rotated
    final = world.stored()
    assert before.current.kid in {k.kid for k in final.keys if k.state == RETIRED}, (
        "still published while it may have live tokens"
    )


def test_six_concurrent_forced_rotations_apply_one_step(world: World) -> None:
    rot = world.rotator(world.pod("iam-rotate", [NAME, PUBLIC], delay=MOUNT_DELAY))
    before = world.stored()
    barrier = threading.Barrier(6)
    results = []

    def go() -> None:
        barrier.wait()
        results.append(rot.run(force=True))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.rotated for r in results) == 1
    assert world.stored().generation == before.generation + 1
    assert world.secret_writes() == 2, "one step: the public keyset, then the private one"


def test_six_replicas_forcing_at_once_apply_one_step(world: World, redis_url: str) -> None:
    """Six iam-rotate replicas, each with its own (stale) mount, share a lease in Redis."""
    prefix = f"rot-{uuid.uuid4().hex[:8]}:"
    rotators = [
        world.rotator(
            world.pod(f"iam-rotate-{i}", [NAME, PUBLIC], delay=MOUNT_DELAY),
            lease=LayeredCache(RedisCache(redis_url, prefix)),
        )
        for i in range(6)
    ]
    before = world.stored()
    barrier = threading.Barrier(6)
    results = []

    def go(r: Rotator) -> None:
        barrier.wait()
        results.append(r.run(force=True))

    threads = [threading.Thread(target=go, args=(r,)) for r in rotators]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.rotated for r in results) == 1
    assert world.stored().generation == before.generation + 1
    assert world.secret_writes() == 2
    # Their mounts are stale for two minutes: a scheduled run on any replica changes nothing.
    world.advance(30)
    assert not any(r.run().rotated for r in rotators)
    assert world.secret_writes() == 2


def test_without_a_lease_racing_replicas_still_agree_on_the_signing_key(world: World) -> None:
    """The lease is the tidy path; safety never depends on it (Redis may be flushed or written by anyone)."""
    rotators = [world.rotator(world.pod(f"r{i}", [NAME, PUBLIC], delay=MOUNT_DELAY)) for i in range(3)]
    before = world.stored()
    results = [r.run(force=True) for r in rotators]
    assert all(r.rotated for r in results)
    assert {r.current for r in results} == {next(k.kid for k in before.keys if k.state == NEXT)}
    after = world.stored()
    assert after.generation == before.generation + 1, "every racer wrote the same generation"
    assert {k.kid for k in before.keys} <= {k.kid for k in after.keys}


def test_public_keyset_is_written_before_the_private_one(world: World) -> None:
    rot = world.rotator(world.pod("iam-rotate", [NAME, PUBLIC], delay=0))
    rot.run(force=True)
    writes = [r["body"]["name"] for r in world.gateway.requests if r["path"] == "/system/secrets"]
    assert writes == [PUBLIC, NAME]
    public = parse_public_keys(world.gateway.secrets[(NS, PUBLIC)])
    assert all("d" not in k for k in public.jwks["keys"]), "no private part in the public keyset"
    assert public.kids == {k.kid for k in world.stored().keys}


def test_gateway_failure_mid_rotation_is_clear_and_loses_nothing(world: World) -> None:
    rot = world.rotator(world.pod("iam-rotate", [NAME, PUBLIC], delay=0))
    before = world.stored()
    bad = world.rotator(world.tmp / "iam-rotate")
    bad.store.writer.credentials = lambda: ("admin", "wrong")  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match="refused the admin credentials"):
        bad.run(force=True)
    assert world.stored().current.kid == before.current.kid
    world.gateway.stop()
    with pytest.raises(StoreError, match="unreachable"):
        rot.run(force=True)
    world.gateway.restart()
    assert rot.run(force=True).rotated


def test_the_gateway_never_returns_a_secret_value(world: World) -> None:
    r = requests.get(f"{world.gateway.url}/system/secrets", params={"namespace": NS}, auth=ADMIN, timeout=5)
    assert r.status_code == 200
    assert "PRIVATE KEY" not in r.text and {s["name"] for s in r.json()} >= {NAME, PUBLIC}
    assert requests.get(f"{world.gateway.url}/system/secrets", timeout=5).status_code == 401
    put = requests.put(
        f"{world.gateway.url}/system/secrets", json={"name": "nope", "value": "x"}, auth=ADMIN, timeout=5
    )
    assert put.status_code == 404, "PUT never creates"
    post = requests.post(
        f"{world.gateway.url}/system/secrets", json={"name": NAME, "value": "x"}, auth=ADMIN, timeout=5
    )
    assert post.status_code == 409, "POST never replaces"


# -- a Redis writer against the lease; a Redis outage; interleaved writers (red team, issue 14) -------


class MemStore:
    """Private and public keysets as two values, like the two secrets (mounts without delay)."""

    name = "memory"

    def __init__(self, ks) -> None:
        self.private, self.public = ks.to_json(), ks.public_json()
        self.writes: list[str] = []

    def read(self):
        return parse_keyset(self.private)

    def public_view(self):
        return parse_public_keys(self.public)

    def write(self, keyset) -> None:
        self.public = keyset.public_json()
        self.writes.append("public")
        self.private = keyset.to_json()
        self.writes.append("private")


def mem_rotator(store: MemStore, clock: Clock, lease=None) -> Rotator:
    return Rotator(store, interval=3600, retire_after=lambda: 1000, publish_lead=LEAD, lease=lease, clock=clock)


def load_rotate_handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """functions/iam-rotate/handler.py as the watchdog loads it (no Redis, mounts in tmp_path)."""
    import importlib.util

    ks = initial_keyset()
    (tmp_path / NAME).write_text(ks.to_json())
    (tmp_path / PUBLIC).write_text(ks.public_json())
    monkeypatch.setenv("secret_mount_path", str(tmp_path))
    monkeypatch.setenv("redis_url", "")
    spec = importlib.util.spec_from_file_location(
        f"iam_rotate_handler_{uuid.uuid4().hex[:6]}", ROOT / "functions" / "iam-rotate" / "handler.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_planted_lease_neither_freezes_rotation_nor_answers_a_quiet_200(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"rot-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(redis_url)
    clock = Clock()
    store = MemStore(initial_keyset(now=clock() - 10_000))
    rot = mem_rotator(store, clock, lease=LayeredCache(RedisCache(redis_url, prefix)))
    gen = store.read().generation  # public at GET /function/iam-rotate/status
    for g in range(gen + 1, gen + 50):  # planted by any pod in openfaas-fn: no TTL
        client.set(f"{prefix}rotation-lease:{g}", b"1")
    client.set(f"{prefix}rotation-lease:{gen + 2}", b"1", ex=30 * 86400)  # a TTL far beyond the lease's own
    first = rot.run(force=True)
    assert first.rotated and store.read().generation == gen + 1, "the foreign lease was replaced"
    lease = client.get(f"{prefix}rotation-lease:{gen + 1}")
    assert lease not in (None, b"1") and 0 < client.pttl(f"{prefix}rotation-lease:{gen + 1}") <= rot.lease_ttl * 1000
    clock.t += rot.lease_ttl + LEAD + 1
    assert rot.run(force=True).rotated, "the lease with 30 days' TTL was foreign too"
    # A lease held within its TTL by someone else: a forced run says so, never a plain 200.
    client.set(f"{prefix}rotation-lease:{gen + 3}", b"someone-else", px=int(rot.lease_ttl * 1000))
    clock.t += rot.lease_ttl + LEAD + 1
    held = rot.run(force=True)
    assert not held.rotated and held.refusal == "lease_held" and held.retry_after is not None
    handler = load_rotate_handler(tmp_path, monkeypatch)
    forced = handler.answer(held, force=True)
    assert forced["statusCode"] == 409 and "Retry-After" in forced["headers"]
    body = forced["body"]
    assert body["error"] == "rotation_in_progress" and "lease" in body["message"]
    assert handler.answer(held, force=False)["statusCode"] == 200, "a scheduled run: a peer is doing the step"
    for k in client.scan_iter(prefix + "*"):
        client.delete(k)


def test_a_redis_outage_refuses_the_step_instead_of_failing_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    store = MemStore(initial_keyset(now=clock() - 10_000))
    dead = LayeredCache(RedisCache("redis://127.0.0.1:1/14", "x:", timeout=0.05))
    for force in (False, True):
        result = mem_rotator(store, clock, lease=dead).run(force=force)
        assert not result.rotated and result.refusal == "lease_unavailable" and store.writes == []
        assert "cannot be checked" in result.reason
    handler = load_rotate_handler(tmp_path, monkeypatch)
    answer = handler.answer(result, force=True)
    assert answer["statusCode"] == 503 and answer["body"]["error"] == "lease_unavailable"
    assert handler.answer(result, force=False)["statusCode"] == 503, "cron sees the pause too"
    # Without Redis configured (make run), the process lock is the lease: rotation works.
    assert mem_rotator(store, clock, lease=LayeredCache(None)).run(force=True).rotated


def test_interleaved_writers_are_healed_instead_of_stalling_rotation() -> None:
    """Two steps from one generation whose writes interleaved: public from B, private from A."""
    clock = Clock()
    ks = initial_keyset(now=clock() - 10_000)
    a, b = rotate(ks, clock(), 1000), rotate(ks, clock(), 1000)
    store = MemStore(ks)
    store.public, store.private = b.public_json(), a.to_json()
    nxt = next(k for k in a.keys if k.state == NEXT)
    assert nxt.kid not in parse_public_keys(store.public).kids
    rot = mem_rotator(store, clock)
    clock.t += 60
    young = rot.run(force=True)  # within the publish lead a late mount could explain it: wait
    assert not young.rotated and "not yet in this pod's mounted public keyset" in young.reason
    assert store.writes == []
    clock.t += LEAD
    healed = rot.run(force=True)
    assert not healed.rotated and "republished" in healed.reason and healed.retry_after == LEAD
    assert store.writes == ["public", "private"], "public first"
    assert nxt.kid in parse_public_keys(store.public).kids
    after = store.read()
    assert after.generation == a.generation + 1 and after.current.kid == a.current.kid, "no signing key changed"
    clock.t += 1
    early = rot.run(force=True)
    assert not early.rotated and "may sign only after" in early.reason, "the publish lead restarts at the heal"
    clock.t += LEAD
    done = rot.run(force=True)
    assert done.rotated and done.current == nxt.kid


# -- RBAC: the shared service account reads no Secret ------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca_and_server_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def kube(tls, tmp_path: Path):
    ca, cert, key = tls
    api = KubeStandIn(tls=(str(cert), str(key))).start()
    ks = initial_keyset()
    api.put_secret(NS, NAME, {NAME: base64.b64encode(ks.to_json().encode()).decode()})
    (tmp_path / "token").write_text(TOKEN)
    api.client = KubernetesClient(api.url, token_path=str(tmp_path / "token"), ca_path=str(ca), timeout=1.0)
    api.ca = ca
    yield api
    api.stop()


def manifests(*names: str) -> list[dict]:
    docs: list[dict] = []
    for name in names:
        docs += [d for d in yaml.safe_load_all((ROOT / "deploy" / name).read_text()) if d]
    return docs


def test_a_function_running_as_the_shared_account_cannot_read_the_private_keys(kube: KubeStandIn) -> None:
    kube.enforce_rbac(manifests("rbac.yaml", "crd-source/rbac-iam-objects.yaml"))
    path = f"/api/v1/namespaces/{NS}/secrets/{NAME}"
    for method, what in (("GET", "get"), ("PUT", "update"), ("PATCH", "patch")):
        with pytest.raises(StoreError, match=f'HTTP 403 .*cannot {what} resource "secrets"'):
            kube.client.request(method, path, body={} if method != "GET" else None, what="reading")
    with pytest.raises(StoreError, match="HTTP 403"):
        kube.client.request("GET", f"/api/v1/namespaces/{NS}/secrets", what="listing")


def test_the_crd_source_reads_under_the_shipped_rbac_and_not_without_it(kube: KubeStandIn) -> None:
    """The stand-in checks custom resources' API group too, so a wrong apiGroups in the manifest fails here."""
    kube.custom[("openfaas", "roles")] = []
    kube.enforce_rbac(manifests("rbac.yaml", "crd-source/rbac-iam-objects.yaml"))
    assert KubernetesConfigSource(kube.client, "openfaas", poll_interval=0).get() is not None
    kube.enforce_rbac(manifests("rbac.yaml"))
    source = KubernetesConfigSource(kube.client, "openfaas", poll_interval=0)
    with pytest.raises(Unavailable):
        source.get()
    assert 'in API group "iam.openfaas.com"' in (source.last_error or "")


def test_the_rbac_check_would_catch_a_secret_grant(kube: KubeStandIn) -> None:
    """The check above can fail: the grant this bundle used to ship lets any function read the keys."""
    old = [
        {
            "kind": "Role",
            "metadata": {"name": "keys", "namespace": NS},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [NAME], "verbs": ["get"]}],
        },
        {
            "kind": "RoleBinding",
            "metadata": {"name": "keys", "namespace": NS},
            "roleRef": {"kind": "Role", "name": "keys"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": NS}],
        },
    ]
    kube.enforce_rbac(old)
    doc = kube.client.request("GET", f"/api/v1/namespaces/{NS}/secrets/{NAME}", what="reading")
    assert "PRIVATE KEY" in base64.b64decode(doc["data"][NAME]).decode()


def test_rbac_manifest_grants_nothing_on_secrets() -> None:
    for doc in manifests("rbac.yaml", "crd-source/rbac-iam-objects.yaml"):
        for rule in doc.get("rules") or []:
            assert "secrets" not in rule.get("resources", []) and "*" not in rule.get("resources", [])


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
    assert (
        parse_keyset(base64.b64decode(doc["data"][NAME])).current.kid
        == parse_keyset(base64.b64decode(kube.secrets[(NS, NAME)]["data"][NAME])).current.kid
    )


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


def test_the_kubernetes_source_polls_in_the_background(kube: KubeStandIn) -> None:
    """The functions' mode: a poll never holds a request (a slow API answers in the background while
    the configuration in force is served), a valid change is swapped in whole, an API failure keeps
    the last good configuration, and only one poll runs at a time."""
    root = Path(__file__).resolve().parents[2]
    for doc in yaml.safe_load_all((root / "examples" / "iam.yaml").read_text()):
        if doc:
            plural = {"JwtIssuer": "jwtissuers", "Policy": "policies", "Role": "roles"}[doc["kind"]]
            kube.custom.setdefault(("openfaas", plural), []).append(doc)
    source = KubernetesConfigSource(kube.client, "openfaas", poll_interval=0, background=True)
    first = source.get()  # the first load is waited for: there is nothing to serve before it
    assert source.generation == 1 and len(first.roles) == 6

    extra = copy.deepcopy(kube.custom[("openfaas", "roles")][0])
    extra["metadata"]["name"] = "added-in-the-background"
    kube.custom[("openfaas", "roles")].append(extra)
    kube.version += 1
    kube.inject(method="GET", delay=0.6, count=3)  # each list of the next poll is slow (client timeout: 1 s)
    started = time.monotonic()
    served = [source.get() for _ in range(50)]
    assert time.monotonic() - started < 0.5, "requests never wait for a poll"
    assert all(c is first for c in served), "the configuration in force until the new one is whole"
    deadline = time.monotonic() + 15
    while source.generation == 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        source.get()
    assert source.generation == 2, source.last_error
    assert "added-in-the-background" in {r.name for r in source.get().roles}

    kube.inject(method="GET", code=503, count=3)
    kube.version += 1
    before = source.get()
    deadline = time.monotonic() + 15
    while source.last_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
        source.get()
    assert source.last_error and "503" in source.last_error, source.last_error
    assert source.get() is before and source.generation == 2, "an API failure keeps the last good configuration"
