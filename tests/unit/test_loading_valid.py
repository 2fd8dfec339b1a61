"""Valid documents, including OpenFaaS for Enterprises' own examples, load unchanged."""

from __future__ import annotations

import json
from pathlib import Path

from openfaas_iam.model.loading import load_paths, load_texts

ROOT = Path(__file__).resolve().parents[2]

# As written in OpenFaaS's IAM docs and walkthrough (StringEqual, legacy names, Auth0's trailing slash).
OPENFAAS_DOCS = """
apiVersion: iam.openfaas.com/v1
kind: JwtIssuer
metadata:
  name: auth0.example.com
  namespace: openfaas
spec:
  iss: https://example.eu.auth0.com/
  aud:
    - https://gateway.example.com
  tokenExpiry: 12h
---
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata:
  name: dev-rw
  namespace: openfaas
spec:
  statement:
  - sid: 1-rw-dev
    action:
    - Function:Admin
    - Secret:Read
    effect: Allow
    resource: ["dev:*"]
---
apiVersion: iam.openfaas.com/v1
kind: Role
metadata:
  name: dev-rw-role
  namespace: openfaas
spec:
  policy:
  - dev-rw
  principal:
    jwt:sub:
      - repo:alexellis/minty:ref:refs/heads/master
  condition:
    StringEqual:
      jwt:iss: ["https://token.actions.githubusercontent.com"]
      jwt:repository_owner: ["alexellis"]
    ForAnyValue:StringEquals:
      jwt:groups: ["dev"]
    StringLike:
      jwt:email: ["*@example.com"]
"""


def test_openfaas_documents_load_unchanged() -> None:
    config = load_texts([("docs.yaml", OPENFAAS_DOCS)])
    issuer = config.issuer("https://example.eu.auth0.com/")
    assert issuer is not None and issuer.token_expiry == 12 * 3600 and issuer.aud == ("https://gateway.example.com",)
    assert config.issuer("https://example.eu.auth0.com") is None, "iss is compared exactly"
    assert [r.name for r in config.roles] == ["dev-rw-role"]
    assert config.roles[0].principal["jwt:sub"] == ("repo:alexellis/minty:ref:refs/heads/master",)
    assert config.policy("dev-rw") is not None


def test_json_list_and_kubernetes_list(tmp_path: Path) -> None:
    import yaml

    docs = list(yaml.safe_load_all(OPENFAAS_DOCS))
    (tmp_path / "a.json").write_text(json.dumps(docs))
    (tmp_path / "b.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
        .replace("dev-rw", "dev-rw2")
        .replace("example.eu", "other.eu")
        .replace("auth0.example.com", "auth0-b.example.com")
    )
    config = load_paths([tmp_path])
    assert sorted(p.name for p in config.policies) == ["dev-rw", "dev-rw2"]


def test_example_config_loads() -> None:
    config = load_paths([ROOT / "examples" / "iam.yaml"])
    assert {i.name for i in config.issuers} == {"keycloak", "github-actions", "kubernetes"}
    assert config.issuer("https://kubernetes.default.svc.cluster.local").fetch_base == "https://kubernetes.default.svc"


def test_default_token_expiry_is_two_hours() -> None:
    config = load_texts(
        [
            (
                "f",
                "apiVersion: iam.openfaas.com/v1\nkind: JwtIssuer\nmetadata: {name: i}\nspec: {iss: 'https://i.example', aud: [a]}",
            )
        ]
    )
    assert config.issuers[0].token_expiry == 7200


def test_a_gzip_or_gzip_base64_configuration_loads_like_the_yaml(tmp_path: Path) -> None:
    """Configurations beyond one Secret's 1 MiB (issue 16): the loader expands gzip and gzip+base64."""
    import base64
    import gzip

    from openfaas_iam.model.loading import load_paths

    text = (Path(__file__).resolve().parents[2] / "examples" / "iam.yaml").read_bytes()
    plain = load_paths([Path(__file__).resolve().parents[2] / "examples" / "iam.yaml"])
    (tmp_path / "raw").write_bytes(gzip.compress(text))
    (tmp_path / "b64").write_bytes(base64.b64encode(gzip.compress(text)) + b"\n")
    for name in ("raw", "b64"):
        config = load_paths([tmp_path / name])
        assert [r.name for r in config.roles] == [r.name for r in plain.roles], name
        assert len(config.policies) == len(plain.policies) and len(config.issuers) == len(plain.issuers)


def test_a_gzip_bomb_is_refused(tmp_path: Path, monkeypatch) -> None:
    import gzip

    import pytest

    from openfaas_iam.errors import ConfigError
    from openfaas_iam.model import loading

    monkeypatch.setattr(loading, "MAX_EXPANDED_BYTES", 1000)
    (tmp_path / "bomb").write_bytes(gzip.compress(b"#" * 100_000))
    with pytest.raises(ConfigError, match="expands to more than 1000 bytes"):
        loading.load_paths([tmp_path / "bomb"])
