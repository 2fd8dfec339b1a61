"""Key custody: only the bundle's signers can mount the private keyset; nobody plants a key.

Through the proxy (a caller's deploy) and on the local provider (a function in the
stack that is not the bundle's signer), the private keyset cannot be mounted, and the
bundle's secrets cannot be replaced. Mounts update late, as the kubelet's do.
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import pytest
import yaml

from localgw.local_secrets import SecretMounts, ensure_defaults, project
from localgw.provider import Provider
from localgw.stack import Function, StackError, load_stack
from openfaas_iam.jose.keyset import parse_keyset, parse_public_keys
from openfaas_iam.model.custody import SECRET_READERS, may_mount
from openfaas_iam.proxy.rest_api import BadApiRequest, NotCovered, map_call

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "body",
    [
        {"service": "evil", "image": "evil:1", "secrets": ["iam-signing-keys"]},
        {"service": "evil", "image": "evil:1", "Secrets": ["iam-cache-key"]},  # Go matches keys case-insensitively
        {"service": "evil", "image": "evil:1", "secrets": ["db"], "SECRETS": ["basic-auth"]},
        {"service": "iam-token", "image": "evil:1", "secrets": ["redis-password"]},
    ],
)
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_deploy_through_the_proxy_cannot_mount_the_bundles_secrets(method: str, body: dict) -> None:
    # Refused either way: as a bundle secret, or first as a body Go could read two ways.
    with pytest.raises((NotCovered, BadApiRequest), match=r"may not mount the bundle's secrets|given twice"):
        map_call(method, "/system/functions", {}, json.dumps(body).encode())


def test_a_deploy_with_its_own_secrets_is_decided_as_usual() -> None:
    body = {"service": "app", "image": "app:1", "secrets": ["db", "iam-public-keys"]}
    assert map_call("POST", "/system/functions", {}, json.dumps(body).encode()).action == "Function:Create"


@pytest.mark.parametrize("name", ["iam-signing-keys", "iam-public-keys", "iam-cache-key", "iam-config", "basic-auth"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_the_bundles_secrets_cannot_be_written_through_the_proxy(method: str, name: str) -> None:
    with pytest.raises(NotCovered, match="belongs to openfaas-iam"):
        map_call(method, "/system/secrets", {}, json.dumps({"name": name, "value": "x"}).encode())
    sneaky = {"name": "db", "Name": name, "value": "x"}  # the gateway would act on the last match
    with pytest.raises(BadApiRequest, match="given twice"):
        map_call(method, "/system/secrets", {}, json.dumps(sneaky).encode())


def test_stack_mounts_the_private_keyset_only_where_it_signs() -> None:
    stack = load_stack(ROOT / "stack.yml", {})
    holders = {name for name, fn in stack.functions.items() if "iam-signing-keys" in fn.secrets}
    assert holders == {"iam-token", "iam-rotate"}
    for name, fn in stack.functions.items():
        assert "iam-public-keys" in fn.secrets and "iam-cache-key" in fn.secrets
        assert all(may_mount(name, secret) for secret in fn.secrets), name
    assert SECRET_READERS["iam-signing-keys"] == frozenset(holders)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    config = tmp_path / "iam.yaml"
    config.write_text("")
    created = ensure_defaults(tmp_path / "secrets", config)
    assert any("iam-public-keys" in c for c in created)
    return tmp_path / "secrets"


def fn(name: str, *secrets: str) -> Function:
    return Function(
        name=name, lang="python3-http-iam", handler=".", image="x", namespace="openfaas-fn", secrets=secrets
    )


def test_the_local_provider_refuses_the_private_keyset_to_other_functions(store: Path, tmp_path: Path) -> None:
    for secret in ("iam-signing-keys", "iam-cache-key", "basic-auth"):
        with pytest.raises(StackError, match=f"secret '{secret}' belongs to openfaas-iam"):
            project(store, fn("user-fn", secret), tmp_path / "mounts" / "user-fn")
    with pytest.raises(StackError, match="belongs to openfaas-iam"):
        project(store, fn("iam-authz", "iam-signing-keys"), tmp_path / "mounts" / "iam-authz")
    project(store, fn("user-fn", "iam-public-keys"), tmp_path / "mounts" / "user-fn")
    mount = tmp_path / "mounts" / "user-fn"
    assert sorted(p.name for p in mount.iterdir()) == ["iam-public-keys"]
    assert not (mount / "iam-public-keys").is_symlink(), "a copy: no path into the store"
    assert "PRIVATE" not in (mount / "iam-public-keys").read_text()


def _api(provider: Provider, method: str, body: dict | None = None, auth: tuple[str, str] | None = None):
    """One /system/secrets call on the local provider, as the gateway routes it."""
    raw = json.dumps(body).encode() if body is not None else b""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": "/system/secrets",
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(raw)),
        "wsgi.input": io.BytesIO(raw),
    }
    if auth:
        environ["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    status: list[str] = []
    out = b"".join(provider(environ, lambda s, h: status.append(s)))
    return int(status[0].split()[0]), out


def test_local_mounts_update_late(store: Path, tmp_path: Path) -> None:
    mounts = SecretMounts(store, sync_delay=30)
    provider = Provider(mounts.admin, secrets=mounts)
    admin = mounts.admin()
    mounts.add(fn("iam-token", "iam-signing-keys", "iam-public-keys"), tmp_path / "m")
    before = (tmp_path / "m" / "iam-public-keys").read_text()
    new = {"name": "iam-public-keys", "value": '{"generation": 7, "keys": []}'}
    assert _api(provider, "PUT", new, admin)[0] == 202
    assert mounts.sync_once() == 0 and (tmp_path / "m" / "iam-public-keys").read_text() == before, "not yet"
    assert mounts.sync_once(now=time.time() + 31) == 1
    assert parse_public_keys((tmp_path / "m" / "iam-public-keys").read_bytes()).generation == 7
    assert _api(provider, "PUT", {"name": "nope", "value": "x"}, admin)[0] == 404, "PUT never creates"
    assert _api(provider, "POST", {"name": "iam-public-keys", "value": "x"}, admin)[0] == 409, "POST never replaces"


def test_local_secrets_api_needs_the_admin_and_never_returns_a_value(store: Path) -> None:
    mounts = SecretMounts(store)
    provider = Provider(mounts.admin, secrets=mounts)
    user, password = mounts.admin()
    assert _api(provider, "GET", auth=(user, "guess"))[0] == 401
    assert _api(provider, "GET", auth=(user, "gu\u00e9ss"))[0] == 401, "non-ASCII: a 401 like the gateway's, not a 500"
    assert _api(provider, "GET")[0] == 401
    status, listing = _api(provider, "GET", auth=(user, password))
    assert status == 200 and "iam-signing-keys" in {s["name"] for s in json.loads(listing)}
    assert b"PRIVATE KEY" not in listing
    keyset = parse_keyset((store / "iam-signing-keys" / "iam-signing-keys").read_bytes())
    assert parse_public_keys((store / "iam-public-keys" / "iam-public-keys").read_bytes()).kids == {
        k.kid for k in keyset.keys
    }


def test_redis_manifest_uses_a_password_and_a_network_policy() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "redis" / "redis.yaml").read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "NetworkPolicy"} <= kinds
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--requirepass" in " ".join(container.get("args", []) + container.get("command", []))
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    allowed = policy["spec"]["ingress"][0]["from"][0]
    names = allowed["podSelector"]["matchExpressions"][0]["values"]
    assert sorted(names) == ["iam-authz", "iam-discovery", "iam-rotate", "iam-token"]


def test_keys_init_writes_the_private_and_the_public_keyset(tmp_path: Path) -> None:
    from openfaas_iam.cli.main import main

    private, public = tmp_path / "priv.json", tmp_path / "pub.json"
    assert main(["keys", "init", "-o", str(private), "--public-output", str(public)]) == 0
    keyset = parse_keyset(private.read_bytes())
    published = parse_public_keys(public.read_bytes())
    assert published.kids == {k.kid for k in keyset.keys} and "PRIVATE" not in public.read_text()
    assert (private.stat().st_mode & 0o777) == 0o600
    assert main(["keys", "init", "-o", str(tmp_path / "new.json"), "--public-output", str(public)]) == 1, "no overwrite"
