"""Build contexts as `faas-cli build --shrinkwrap` lays them out; each function starts from its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localgw.build_context import assemble
from localgw.stack import load_stack

ROOT = Path(__file__).resolve().parents[2]
STACK = load_stack(ROOT / "stack.yml", {})


@pytest.mark.parametrize("name", sorted(STACK.functions))
def test_context_layout_and_imports_from_itself(name: str, tmp_path: Path) -> None:
    ctx = assemble(STACK, STACK.functions[name], tmp_path)
    assert ctx == tmp_path / name
    for rel in (
        "index.py",
        "template.yml",
        "Dockerfile",
        "requirements.txt",
        "function/handler.py",
        "function/requirements.txt",
    ):
        assert (ctx / rel).is_file(), rel
    # The handler replaced the template's sample; the shared library is inside function/.
    assert (ctx / "function" / "handler.py").read_text() == (ROOT / "functions" / name / "handler.py").read_text()
    assert (ctx / "function" / "openfaas_iam" / "__init__.py").is_file()
    assert not list(ctx.rglob("__pycache__"))
    probe = (
        "import json, index, openfaas_iam; from function import handler; "
        "print(json.dumps([openfaas_iam.__file__, handler.__file__, callable(handler.handle)]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["secret_mount_path"] = str(tmp_path / "no-secrets")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ctx, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lib, handler, ok = json.loads(out.stdout.strip().splitlines()[-1])
    assert lib.startswith(str(ctx)), "the library must come from the build context, not the project"
    assert handler.startswith(str(ctx)) and ok


def test_copy_outside_project_is_refused(tmp_path: Path) -> None:
    from dataclasses import replace

    from localgw.stack import StackError

    bad = replace(STACK, copy=("../outside",))
    with pytest.raises(StackError, match="outside the project"):
        assemble(bad, STACK.functions["iam-token"], tmp_path)
