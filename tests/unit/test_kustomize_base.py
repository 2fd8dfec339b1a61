"""deploy/ is a kustomize base whose every rendering is valid Kubernetes, checked offline.

Each combination a user can pick (the base, with any of its components) is rendered, by
`kubectl kustomize` when kubectl is on PATH (it embeds kustomize; no network) and always by
tests/kustomize_lite.py (which must agree with kubectl), then every object is validated
against the Kubernetes OpenAPI schemas that the kubernetes-validate package ships, for the
oldest and newest Kubernetes the install supports. Gateway API routes have no schema there:
they are checked structurally (fields, hosts, backends).
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kustomize_lite import overlay, render

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPONENTS = ["redis", "crd-source", "gateway-api"]
# The install's supported range (docs/install.md, "Prerequisites"): schemas for both ends.
KUBERNETES = ["1.28.0", "1.33.0"]
NO_SCHEMA = {("gateway.networking.k8s.io/v1", "HTTPRoute")}
BUNDLE_SERVICES = {"iam-authz", "iam-token"}


def combinations() -> list[tuple[str, ...]]:
    return [c for n in range(len(COMPONENTS) + 1) for c in itertools.combinations(COMPONENTS, n)]


def rendered(tmp_path: Path, picked: tuple[str, ...]) -> list[dict[str, Any]]:
    folder = DEPLOY if not picked else overlay(tmp_path / "overlay", DEPLOY, [DEPLOY / c for c in picked])
    ours = render(folder)
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        theirs = [d for d in yaml.safe_load_all(out.stdout) if d]
        dump = sorted(json.dumps(d, sort_keys=True) for d in theirs)
        assert sorted(json.dumps(d, sort_keys=True) for d in ours) == dump, "kustomize_lite differs from kubectl"
    return ours


def check_route(obj: dict[str, Any]) -> None:
    """What an HTTPRoute must hold for the bundle: host names, parent, backends on port 8080."""
    name = f"HTTPRoute/{obj['metadata']['name']}"
    spec = obj["spec"]
    assert obj["metadata"].get("namespace") == "openfaas-fn", f"{name}: metadata.namespace"
    assert spec.get("parentRefs") and all(isinstance(p.get("name"), str) for p in spec["parentRefs"]), name
    assert spec.get("hostnames") and all(isinstance(h, str) and "." in h for h in spec["hostnames"]), name
    for i, rule in enumerate(spec["rules"]):
        for ref in rule["backendRefs"]:
            assert ref["name"] in BUNDLE_SERVICES and ref["port"] == 8080, f"{name}: spec.rules[{i}].backendRefs"
        for f in rule.get("filters", []):
            assert f["type"] in {"RequestHeaderModifier"}, f"{name}: spec.rules[{i}].filters"


@pytest.mark.parametrize("picked", combinations(), ids=lambda c: "+".join(("base", *c)))
def test_every_rendering_is_valid_kubernetes(tmp_path: Path, picked: tuple[str, ...]) -> None:
    import kubernetes_validate

    objects = rendered(tmp_path, picked)
    assert objects, "the rendering is empty"
    for obj in objects:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if (obj["apiVersion"], obj["kind"]) in NO_SCHEMA:
            check_route(obj)
            continue
        for version in KUBERNETES:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{where} (Kubernetes {version}): {'.'.join(map(str, e.path))}: {e.message}")
        if obj["kind"] != "CustomResourceDefinition":
            assert obj["metadata"].get("namespace") in {"openfaas", "openfaas-fn"}, f"{where}: metadata.namespace"


def test_the_base_routes_two_hosts_with_tls_and_the_components_add_what_they_say(tmp_path: Path) -> None:
    base = rendered(tmp_path, ())
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in base)
    assert kinds == [("Ingress", "iam-authz"), ("Ingress", "iam-signin")]
    for ing in base:
        (rule,) = ing["spec"]["rules"]
        assert ing["spec"]["tls"][0]["hosts"] == [rule["host"]], "TLS for the routed host"
        assert ing["metadata"]["labels"]["app.kubernetes.io/part-of"] == "openfaas-iam"
    everything = rendered(tmp_path, tuple(COMPONENTS))
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in everything)
    assert ("Deployment", "redis") in kinds and ("NetworkPolicy", "redis-only-openfaas-iam") in kinds
    assert [k for k in kinds if k[0] == "CustomResourceDefinition"] and ("Role", "openfaas-iam-objects-reader") in kinds
    assert not [k for k in kinds if k[0] == "Ingress"], "gateway-api replaces the Ingresses"
    assert {k for k in kinds if k[0] == "HTTPRoute"} == {("HTTPRoute", "iam-authz"), ("HTTPRoute", "iam-signin")}


def test_an_invalid_object_is_reported_with_its_field() -> None:
    """The validator really validates: a wrong type in a field fails, naming the field."""
    import kubernetes_validate

    policy = next(
        d for d in yaml.safe_load_all((DEPLOY / "redis" / "redis.yaml").read_text()) if d["kind"] == "NetworkPolicy"
    )
    policy["spec"]["policyTypes"] = "Ingress"
    with pytest.raises(kubernetes_validate.ValidationError) as e:
        kubernetes_validate.validate(policy, KUBERNETES[0], strict=True)
    assert list(e.value.path) == ["spec", "policyTypes"]
