"""A function under the local gateway reloads a changed iam-config with the loader `config_reload`
chooses (a child process by default, service/config_process.py) and keeps serving meanwhile."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from conftest import ROOT

EXTRA_ROLE = """
---
apiVersion: iam.openfaas.com/v1
kind: Role
metadata: {name: added-by-the-reload}
spec:
  policy: [team-a-ro]
  principal: {"jwt:sub": ["someone-new"]}
"""


def _generation(base: str) -> int:
    r = requests.get(f"{base}/function/iam-token/healthz", timeout=10)
    assert r.status_code == 200, r.text
    config = r.json()["config"]
    assert config["loaded"] and config["valid"], config
    return int(config["generation"])


@pytest.mark.parametrize(
    ("setting", "said"),
    [(None, "(child process "), ("thread", "(in-process)")],
    ids=["default-process", "thread"],
)
def test_a_changed_iam_config_is_reloaded_by_the_chosen_loader(
    local_gateway, tmp_path: Path, setting: str | None, said: str
) -> None:
    config = tmp_path / "iam.yaml"
    example = (ROOT / "examples" / "iam.yaml").read_text()
    config.write_text(example)
    gw = local_gateway(iam_config=config, function_env={"config_reload": setting} if setting else None)
    base = f"http://127.0.0.1:{gw.port}"
    first = _generation(base)
    roles = example.count("kind: Role\n")
    config.write_text(example + EXTRA_ROLE)
    deadline = time.monotonic() + 60
    while _generation(base) == first:  # each request serves from the configuration in force meanwhile
        assert time.monotonic() < deadline, "the changed iam-config was never swapped in"
        time.sleep(0.2)
    log = (gw.log_dir / "iam-token.log").read_text(errors="replace")
    reloads = [line for line in log.splitlines() if line.startswith("loaded IAM configuration") and said in line]
    assert reloads, f"no reload by the {setting or 'default'} loader in the function's log:\n{log[-3000:]}"
    assert reloads[-1].endswith(f"{roles + 1} roles"), reloads[-1]
    assert _generation(base) == first + 1
