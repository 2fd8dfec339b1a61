"""After the whole suite: no function ever logged a token, a private key or a client secret."""

from __future__ import annotations

import re

import pytest

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")
KNOWN_SECRETS = ["openfaas-secret", "ci-machine-secret", "mint-secret", "webhook-s3cret", "gh-request-token", "s3cret"]
PRIVATE = ["PRIVATE KEY", "private_key_pem", '"d":"', '"d": "']


@pytest.mark.last
def test_no_secret_in_any_function_log(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.getbasetemp()
    logs = [p for p in root.rglob("logs/*.log") if p.is_file()]
    secrets = set(KNOWN_SECRETS)
    for password in root.rglob("secrets/basic-auth/basic-auth-password"):
        secrets.add(password.read_text().strip())
    lines = 0
    problems: list[str] = []
    for log in logs:
        for n, line in enumerate(log.read_text(errors="replace").splitlines(), start=1):
            lines += 1
            where = f"{log.relative_to(root)}:{n}"
            if JWT.search(line):
                problems.append(f"{where}: a JWT")
            for marker in PRIVATE:
                if marker in line:
                    problems.append(f"{where}: private key material ({marker})")
            for secret in secrets:
                if secret and secret in line:
                    problems.append(f"{where}: a secret value")
    if not logs:
        pytest.skip("no function logs were written (run with the end-to-end tests)")
    assert lines > 100, f"only {lines} log lines were scanned"
    assert problems == [], "\n".join(problems[:20])
