from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from localgw.cron import Schedule
from localgw.stack import StackError, load_stack, substitute
from openfaas_iam.durations import parse_duration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("300ms", 0.3),
        ("2h", 7200),
        ("45s", 45),
        ("1h1m1s", 3661),
        ("0", 0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "1d", "h", "1h 30m", "one hour"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("*/5 * * * *", datetime(2026, 1, 1, 10, 3, 20), datetime(2026, 1, 1, 10, 5)),
        ("0 * * * *", datetime(2026, 1, 1, 10, 0), datetime(2026, 1, 1, 11, 0)),
        ("@hourly", datetime(2026, 1, 1, 23, 59), datetime(2026, 1, 2, 0, 0)),
        ("30 2 * * 1-5", datetime(2026, 11, 28, 12, 0), datetime(2026, 11, 30, 2, 30)),  # Sat -> Mon
        ("0 0 29 2 *", datetime(2026, 1, 1), datetime(2028, 2, 29)),
        ("@every 90s", datetime(2026, 1, 1, 0, 0, 0), datetime(2026, 1, 1, 0, 1, 30)),
    ],
)
def test_cron_next(schedule: str, after: datetime, expected: datetime) -> None:
    assert Schedule.parse(schedule).next_after(after) == expected


@pytest.mark.parametrize("schedule", ["* * * *", "61 * * * *", "*/0 * * * *", "@every nope", "a b c d e"])
def test_cron_rejects(schedule: str) -> None:
    with pytest.raises(ValueError):
        Schedule.parse(schedule)


def test_substitution_like_faas_cli() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert substitute("${SET} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} ${UNSET}", env) == "x d d  d "


def test_project_stack() -> None:
    stack = load_stack(ROOT / "stack.yml", {"REDIS_URL": "redis://r:6379/0"})
    assert set(stack.functions) == {"iam-discovery", "iam-token", "iam-authz", "iam-rotate"}
    assert stack.copy == ("./openfaas_iam",)
    rotate = stack.functions["iam-rotate"]
    assert rotate.schedule == "0 * * * *" and rotate.namespace == "openfaas-fn"
    assert stack.functions["iam-token"].environment["redis_url"] == "redis://r:6379/0"
    assert stack.functions["iam-authz"].environment["public_gateway_url"] == "http://127.0.0.1:8080"
    assert "basic-auth" in stack.functions["iam-authz"].secrets
    for fn in stack.functions.values():
        Schedule.parse(fn.schedule) if fn.schedule else None


def test_stack_rejects_bad_function_name(tmp_path: Path) -> None:
    (tmp_path / "stack.yml").write_text("functions:\n  Bad_Name:\n    lang: python3-http-iam\n    handler: ./x\n")
    with pytest.raises(StackError, match="DNS label"):
        load_stack(tmp_path / "stack.yml", {})
