"""The layers of docs/architecture.md are enforced: a new upward import fails the build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    if not LINT.exists():
        pytest.skip("import-linter is not installed (make test installs it)")
    shutil.copytree(ROOT / "openfaas_iam", tmp_path / "openfaas_iam", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_its_contracts(copy: Path) -> None:
    result = lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("model/objects.py", "from openfaas_iam.cli import main as _upward", "Layers"),
        ("engine/policy.py", "from openfaas_iam.proxy import authz as _upward", "Layers"),
        ("service/exchange.py", "from openfaas_iam.proxy import rest_api as _sideways", "Layers"),
        ("oidc/outbound.py", "import flask as _framework", "serves no HTTP"),
        ("engine/roles.py", "import requests as _io", "pure"),
    ],
)
def test_a_wrong_import_fails_with_a_clear_message(copy: Path, module: str, line: str, contract: str) -> None:
    path = copy / "openfaas_iam" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = lint(copy)
    assert result.returncode != 0
    broken = result.stdout[result.stdout.index("Broken contracts") :]
    assert contract in broken and module.split("/")[0] in broken, result.stdout
