"""`openfaas-iam lint`: every problem, in document order, did-you-mean for operators, exit codes, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openfaas_iam.cli.main import build_parser, main

BAD = """\
apiVersion: iam.openfaas.com/v1
kind: Role
metadata: {name: early-role}
spec:
  policy: [missing-policy]
  principal: {jwt:sub: [alice]}
---
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: many-bad}
spec:
  statement:
    - sid: s
      effect: Allow
      action: ["Function:Lgos", "Function:List", "Secret:Gte"]
      resource: ["openfaas-fn:*", "a:b:c", "x:y:z"]
      condition:
        StringEqualss: {jwt:sub: [alice]}
        ForAllValue:StringLike: {jwt:groups: ["dev-*"]}
"""

OK_WITH_WARNING = """\
apiVersion: iam.openfaas.com/v1
kind: Policy
metadata: {name: mounts}
spec:
  statement:
    - {sid: m, effect: Allow, action: ["Secret:Mount"], resource: ["openfaas-fn:*"]}
"""


def lint(tmp_path: Path, text: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    f = tmp_path / "iam.yaml"
    f.write_text(text)
    code = main(["lint", *args, str(f)])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_bad_entry_of_every_list_in_document_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = lint(tmp_path, BAD, capsys=capsys)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith(str(tmp_path))]
    fields = [line.split(": ")[3] for line in lines]
    # Document 1's missing policy (found last, by the cross-object check) comes first.
    assert fields == [
        "spec.policy[0]",
        "spec.statement[0].action[0]",
        "spec.statement[0].action[2]",
        "spec.statement[0].resource[1]",
        "spec.statement[0].resource[2]",
        "spec.statement[0].condition.StringEqualss",
        "spec.statement[0].condition.ForAllValue:StringLike",
    ], err
    assert "(did you mean 'Function:Logs'?)" in lines[1]
    assert "unknown condition operator 'StringEqualss' (did you mean 'StringEquals'?)" in lines[5]
    assert "(did you mean 'ForAllValues:StringLike'?)" in lines[6]
    assert err.rstrip().endswith("7 problem(s) found")


def test_json_for_ci_has_problems_warnings_and_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = lint(tmp_path, BAD, "--format", "json", capsys=capsys)
    doc = json.loads(out)
    assert code == 1 and err == "" and doc["ok"] is False and doc["summary"] is None
    assert len(doc["problems"]) == 7
    first = doc["problems"][0]
    assert first == {
        "file": str(tmp_path / "iam.yaml"),
        "document": 1,
        "object": "Role/early-role",
        "field": "spec.policy[0]",
        "message": "Policy 'missing-policy' does not exist",
    }
    code, out, _ = lint(tmp_path, OK_WITH_WARNING, "--format", "json", capsys=capsys)
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True and doc["problems"] == [] and doc["warnings"], doc
    assert doc["summary"] == {"issuers": 0, "policies": 1, "roles": 0}
    code, out, _ = lint(tmp_path, OK_WITH_WARNING, "--format", "json", "--strict", capsys=capsys)
    assert code == 1 and json.loads(out)["ok"] is False


def test_exit_codes_are_documented_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    help_text = build_parser()._subparsers._group_actions[0].choices["lint"].format_help()  # type: ignore[union-attr]
    assert "0  no problems" in help_text and "1  problems found" in help_text and "2  usage error" in help_text
    assert main(["lint", str(tmp_path / "nothing.yaml")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["lint", "--format", "xml", str(tmp_path)])
    assert usage.value.code == 2


def test_simulate_help_names_only_valid_actions() -> None:
    import re

    from openfaas_iam.model.actions import canonical_action

    sub = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("simulate", "lint", "auth", "whoami"):
        for action in re.findall(r"\b[A-Z][a-z]+:[A-Z][A-Za-z]+\b", sub[name].format_help()):
            assert canonical_action(action), (name, action)
