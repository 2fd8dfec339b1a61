"""`make token`: a token for trying make run, minted as the exchange would for those claims."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jwt
import pytest

from openfaas_iam.jose.keyset import initial_keyset

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import local_token  # noqa: E402


def test_the_token_names_the_policies_the_roles_give(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "secrets" / "iam-signing-keys"
    keys.mkdir(parents=True)
    keyset = initial_keyset()
    (keys / "iam-signing-keys").write_text(keyset.to_json())
    assert local_token.main(["--state-dir", str(tmp_path), "--config", str(ROOT / "examples" / "iam.yaml")]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(
        token, keyset.current.private_key.public_key(), algorithms=["ES256"], options={"verify_aud": False}
    )
    assert claims["sub"] == "fed:0f2d6c1e" and claims["policy"] == ["team-a-ro", "own-prefix", "team-a-invoke"]
    nobody = json.dumps({"iss": "https://elsewhere", "sub": "x"})
    assert local_token.main(["--state-dir", str(tmp_path), "--claims", nobody]) == 1
    assert "no Role" in capsys.readouterr().err
    assert local_token.main(["--state-dir", str(tmp_path / "none")]) == 2


def test_claims_that_are_not_a_json_object_are_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CLAIMS='{sub: bob}' (not JSON) was a JSONDecodeError traceback; a list crashed in role matching."""
    keys = tmp_path / "secrets" / "iam-signing-keys"
    keys.mkdir(parents=True)
    (keys / "iam-signing-keys").write_text(initial_keyset().to_json())
    base = ["--state-dir", str(tmp_path), "--config", str(ROOT / "examples" / "iam.yaml")]
    assert local_token.main([*base, "--claims", "{sub: bob}"]) == 2
    assert "CLAIMS is not JSON" in capsys.readouterr().err
    assert local_token.main([*base, "--claims", '["x"]']) == 2
    assert "must be a JSON object" in capsys.readouterr().err
