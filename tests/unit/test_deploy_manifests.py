"""The manifests users apply: valid YAML, least privilege."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_rbac_grants_the_shared_account_nothing_on_secrets() -> None:
    """Every CE function runs as openfaas-fn's default account: a Secret grant would reach them all."""
    assert [d for d in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text()) if d] == []
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "crd-source" / "rbac-iam-objects.yaml").read_text()))
    reader = docs[0]
    assert reader["rules"] == [
        {"apiGroups": ["iam.openfaas.com"], "resources": ["jwtissuers", "policies", "roles"], "verbs": ["get", "list"]}
    ]


def test_crds_cover_the_three_kinds() -> None:
    crds = list(yaml.safe_load_all((ROOT / "deploy" / "crd-source" / "crds.yaml").read_text()))
    assert sorted(c["spec"]["names"]["kind"] for c in crds) == ["JwtIssuer", "Policy", "Role"]
    assert all(c["spec"]["group"] == "iam.openfaas.com" and c["spec"]["versions"][0]["name"] == "v1" for c in crds)


def test_signin_ingress_routes_its_own_host_to_iam_token_only() -> None:
    ingress = next(yaml.safe_load_all((ROOT / "deploy" / "signin-ingress.yaml").read_text()))
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "iam.example.com" and ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
    assert [p["backend"]["service"]["name"] for p in rule["http"]["paths"]] == ["iam-token"]


def test_authz_ingress_routes_its_own_host_to_iam_authz_and_asks_for_streams() -> None:
    (ingress,) = list(yaml.safe_load_all((ROOT / "deploy" / "authz-ingress.yaml").read_text()))
    route = next(yaml.safe_load_all((ROOT / "deploy" / "gateway-api" / "httproutes.yaml").read_text()))
    (rule,) = ingress["spec"]["rules"]
    assert [p["path"] for p in rule["http"]["paths"]] == ["/"], "a host root: faas-cli's namespace calls drop paths"
    assert [p["backend"]["service"]["name"] for p in rule["http"]["paths"]] == ["iam-authz"]
    assert (
        "application/x-ndjson"
        in ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/configuration-snippet"]
    )
    modifier = route["spec"]["rules"][0]["filters"][0]["requestHeaderModifier"]["set"]
    assert {"name": "Accept", "value": "application/x-ndjson"} in modifier
    assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == "iam-authz"
