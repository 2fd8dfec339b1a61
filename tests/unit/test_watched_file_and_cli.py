from __future__ import annotations

import os
from pathlib import Path

import pytest

from openfaas_iam.cli.main import main
from openfaas_iam.service.config_source import file_config_source
from openfaas_iam.stores.watched_file import Unavailable

ROOT = Path(__file__).resolve().parents[2]
GOOD = (ROOT / "examples" / "iam.yaml").read_text()


def test_reload_on_change_and_keep_last_good(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "iam.yaml"
    source = file_config_source(str(path), check_interval=0)
    with pytest.raises(Unavailable, match="no IAM configuration"):
        source.get()
    path.write_text(GOOD)
    first = source.get()
    assert len(first.roles) == 6
    path.write_text(GOOD.replace("name: release-bot", "name: release-bot-2"))
    os.utime(path, ns=(1, 1))
    assert source.get().roles[-1].name == "release-bot-2"
    path.write_text(GOOD + "\n---\nkind: Nope\n")
    kept = source.get()
    assert kept.roles[-1].name == "release-bot-2", "an invalid file keeps the last good config"
    assert "keeping the last good IAM configuration" in caplog.text
    assert "document 18: Nope: apiVersion: expected 'iam.openfaas.com/v1', got None" in (source.last_error or "")


def test_lint_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(ROOT / "examples" / "iam.yaml")]) == 0
    assert "ok: 3 issuer(s), 8 policy(ies), 6 role(s)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("Function:Logs", "Function:Log"))
    assert main(["lint", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: document 4: Policy/team-a-ro: spec.statement[1].action[1]: unknown action 'Function:Log'" in err
    # A Role naming an invalid Policy says so, rather than that the Policy does not exist.
    assert f"{bad}: document 12: Role/operators: spec.policy[2]: Policy 'fn-ro' is invalid (see its own errors)" in err
    assert "5 problem(s) found" in err
