"""who-can, diff, policy tests as data, and report-only: reviewing a change before it ships."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openfaas_iam.cli.main import main
from openfaas_iam.engine.policy import policy_index
from openfaas_iam.engine.policy_tools import diff_configs, run_tests, who_can
from openfaas_iam.model.actions import ACTIONS
from openfaas_iam.model.loading import load_mapping_documents, load_paths
from openfaas_iam.proxy.authz import Authorizer, Principal
from openfaas_iam.proxy.rest_api import map_call
from openfaas_iam.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "iam.yaml"


def obj(kind: str, name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "iam.openfaas.com/v1", "kind": kind, "metadata": meta, "spec": spec}


def statement(sid: str, actions: list[str], resources: list[str], effect: str = "Allow", **extra: Any) -> dict:
    return {"sid": sid, "effect": effect, "action": actions, "resource": resources, **extra}


# -- who-can -----------------------------------------------------------------------------------


def test_who_can_on_the_examples_names_roles_statements_and_denies() -> None:
    access = {a.role: a for a in who_can(load_paths([EXAMPLES]), "Function:Logs", "openfaas-fn:api")}
    assert access["admin-alex"].verdict == "yes"
    ops = access["operators"]
    assert ops.verdict == "depends", "a Deny on contractors cuts it back for some tokens"
    assert [(g.policy, g.sid) for g in ops.allows] == [("fn-ro", "read-only")]
    assert [(g.policy, g.sid) for g in ops.denies] == [("fn-ro", "no-logs-for-contractors")]
    assert "developers" not in access
    assert "jwt:groups" in ops.matches


def test_who_can_respects_the_bundles_own_objects_and_patterns() -> None:
    cfg = load_mapping_documents(
        [
            obj("Policy", "all", {"statement": [statement("all", ["Function:*"], ["openfaas-fn:*"])]}),
            obj("Policy", "exact", {"statement": [statement("x", ["Function:Update"], ["openfaas-fn:iam-authz"])]}),
            obj("Role", "wild", {"policy": ["all"], "principal": {"jwt:sub": ["w"]}}),
            obj("Role", "named", {"policy": ["exact"], "principal": {"jwt:sub": ["n"]}}),
        ],
        "t",
    )
    on_bundle = {a.role: a.verdict for a in who_can(cfg, "Function:Update", "openfaas-fn:iam-authz")}
    assert on_bundle == {"named": "yes"}
    wildcard = {a.role for a in who_can(cfg, "Function:*", "openfaas-fn:team-a-*")}
    assert wildcard == {"wild"}
    with pytest.raises(ValueError, match="unknown action"):
        who_can(cfg, "Function:Frobnicate", "*")


NAMES = ["api", "db", "team-a-x", "iam-token"]
NAMESPACES = ["openfaas-fn", "dev"]
PATTERNS = ["*", "openfaas-fn:*", "dev:*", "openfaas-fn:api", "dev:db", "*:api", "openfaas-fn:team-a-*", "dev:d?"]


@st.composite
def configs(draw: Any) -> tuple[Any, int]:
    n_pol = draw(st.integers(1, 5))
    docs = []
    for i in range(n_pol):
        stmts = [
            statement(
                f"s{j}",
                draw(st.lists(st.sampled_from([*ACTIONS, "Function:*", "*"]), min_size=1, max_size=3)),
                draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2)),
                effect=draw(st.sampled_from(["Allow", "Allow", "Deny"])),
            )
            for j in range(draw(st.integers(1, 3)))
        ]
        docs.append(obj("Policy", f"p{i}", {"statement": stmts}))
    n_roles = draw(st.integers(1, 4))
    for r in range(n_roles):
        chosen = draw(st.lists(st.integers(0, n_pol - 1), min_size=1, max_size=3, unique=True))
        docs.append(obj("Role", f"r{r}", {"policy": [f"p{i}" for i in chosen], "principal": {"jwt:sub": [f"u{r}"]}}))
    return load_mapping_documents(docs, "random"), n_roles


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), st.sampled_from(ACTIONS), st.sampled_from(NAMESPACES), st.sampled_from(NAMES))
def test_who_can_agrees_with_the_engine(cfg_roles: tuple[Any, int], action: str, ns: str, fn: str) -> None:
    """Every 'yes' is allowed by the engine for that Role's token, and every 'no' is denied."""
    cfg, n_roles = cfg_roles
    resource = f"{ns}:{fn}"
    verdicts = {a.role: a.verdict for a in who_can(cfg, action, resource)}
    az = Authorizer(config=lambda: cfg, verifier=None, admin_credentials=lambda: None)  # type: ignore[arg-type]
    for r in range(n_roles):
        role = cfg.roles[r]
        decision = az.decide(Principal({"sub": f"u{r}", "policy": list(role.policies)}), action, resource)
        verdict = verdicts.get(role.name, "no")
        if verdict == "yes":
            assert decision.allowed, (role.name, action, resource, decision.reason)
        elif verdict == "no":
            assert not decision.allowed, (role.name, action, resource, decision.reason)


# -- diff --------------------------------------------------------------------------------------


def test_diff_reports_grants_denies_issuers_and_roles() -> None:
    old = load_paths([EXAMPLES])
    text = EXAMPLES.read_text().replace(
        'resource: ["openfaas-fn:team-a-*"]', 'resource: ["openfaas-fn:team-a-*", "openfaas-fn:team-b-*"]'
    )
    text = text.replace("name: admin-alex", "name: admin-alexandra")
    new = load_mapping_documents([d for d in __import__("yaml").safe_load_all(text) if d], "new")
    d = diff_configs(old, new)
    assert d.roles_added == ["admin-alexandra"] and d.roles_removed == ["admin-alex"]
    ci = next(r for r in d.roles if r.role == "ci-team-a")
    assert any(
        line.startswith("Function:List, Function:Get") and line.endswith("on openfaas-fn:team-b-*")
        for line in ci.now_allowed
    )
    assert diff_configs(old, old).empty()
    ops = next(r for r in d.roles if r.role == "operators")
    assert any("fn-ro/no-logs-for-contractors" in a for a in ops.approximate)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), configs(), st.sampled_from(ACTIONS), st.sampled_from(NAMESPACES), st.sampled_from(NAMES))
def test_diff_agrees_with_the_engine(
    old_roles: tuple[Any, int], new_roles: tuple[Any, int], action: str, ns: str, fn: str
) -> None:
    """When the engine's answer for a Role changes, diff reports a change for that Role."""
    (old, _), (new, _) = old_roles, new_roles
    d = diff_configs(old, new)
    changed = {r.role for r in d.roles} | set(d.roles_added) | set(d.roles_removed)
    resource = f"{ns}:{fn}"
    for name in {r.name for r in old.roles} & {r.name for r in new.roles}:
        before = next(r for r in old.roles if r.name == name)
        after = next(r for r in new.roles if r.name == name)
        a = policy_index(old).decide(list(before.policies), action, resource, {}).allowed
        b = policy_index(new).decide(list(after.policies), action, resource, {}).allowed
        if a != b:
            assert name in changed, (name, action, resource)


# -- policy tests as data --------------------------------------------------------------------


def test_the_examples_ship_with_passing_tests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(ROOT / "examples" / "iam.test.yaml"), "--config", str(EXAMPLES)]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("passed, 0 failed") and "PASS" in out


def test_a_failing_case_is_explained_and_reported_as_junit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = {
        "tests": [
            {
                "name": "operators may delete in production (wrong on purpose)",
                "claims": {
                    "iss": "https://keycloak.example.com/realms/openfaas",
                    "sub": "x",
                    "groups": ["openfaas-ops", "contractors"],
                },
                "roles": ["operators", "developers"],
                "expect": [{"action": "Function:Logs", "resource": "openfaas-fn:api", "allowed": True}],
            }
        ]
    }
    f = tmp_path / "bad.test.yaml"
    f.write_text(json.dumps(cases))
    assert main(["test", str(f), "--config", str(EXAMPLES)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  operators may delete" in out and "roles: expected ['developers', 'operators']" in out
    assert "DENY (explicitly denied by policy fn-ro, statement no-logs-for-contractors)" in out
    assert "APPLIES fn-ro/no-logs-for-contractors (Deny)" in out
    assert "0 passed, 1 failed" in out
    assert main(["test", str(f), "--config", str(EXAMPLES), "--format", "junit"]) == 1
    xml = capsys.readouterr().out
    assert '<testsuite name="openfaas-iam policy tests" tests="1" failures="1"' in xml and "<failure" in xml
    f.write_text(
        "tests: [{name: x, claims: {sub: a}, expect: [{action: Function:Nope, resource: '*', allowed: true}]}]"
    )
    assert main(["test", str(f), "--config", str(EXAMPLES)]) == 2
    assert "tests[0].expect[0].action: unknown action 'Function:Nope'" in capsys.readouterr().err
    # Bad `roles` or `by` entries are mistakes in the test file (exit 2, located), not a traceback
    # (a mixed list made sorted() raise TypeError) and not a failed case.
    for bad, where in (
        ("roles: [1, developers]", "tests[0].roles: expected a list of Role names"),
        ("roles: [{a: 1}]", "tests[0].roles: expected a list of Role names"),
        (
            "expect: [{action: Function:Get, resource: '*', allowed: false, by: [1]}]",
            "tests[0].expect[0].by: expected policy/sid",
        ),
    ):
        f.write_text(f"tests: [{{name: x, claims: {{sub: a}}, {bad}}}]")
        assert main(["test", str(f), "--config", str(EXAMPLES)]) == 2, bad
        assert where in capsys.readouterr().err


def test_run_tests_checks_the_deciding_statement() -> None:
    cfg = load_paths([EXAMPLES])
    claims = {"iss": "https://keycloak.example.com/realms/openfaas", "sub": "s", "groups": ["openfaas-ops"]}
    (r,) = run_tests(
        cfg,
        [
            {
                "claims": claims,
                "expect": [
                    {
                        "action": "Function:Get",
                        "resource": "openfaas-fn:a",
                        "allowed": True,
                        "by": "team-a-rw/read-write",
                    }
                ],
            }
        ],
    )
    assert not r.passed and "decided by fn-ro/read-only, expected team-a-rw/read-write" in r.failures[0]


# -- report-only ----------------------------------------------------------------------------------


def report_only_config() -> Any:
    return load_mapping_documents(
        [
            obj(
                "Policy",
                "dev",
                {"statement": [statement("dev", ["Function:*", "Secret:*"], ["dev:*", "openfaas-fn:*"])]},
            ),
            obj(
                "Policy",
                "trial",
                {"statement": [statement("no-deletes", ["Function:Delete"], ["dev:*"], effect="Deny")]},
                annotations={"iam.openfaas.com/report-only": "true"},
            ),
            obj("Role", "r", {"policy": ["dev", "trial"], "principal": {"jwt:sub": ["u"]}}),
        ],
        "t",
    )


def test_a_report_only_policy_is_decided_in_the_shadow_never_enforced() -> None:
    cfg = report_only_config()
    assert cfg.policy("trial").report_only
    az = Authorizer(config=lambda: cfg, verifier=None, admin_credentials=lambda: None)  # type: ignore[arg-type]
    who = Principal({"sub": "u", "policy": ["dev", "trial"]})
    call = map_call("DELETE", "/system/functions", {}, b'{"functionName":"api","namespace":"dev"}')
    d = az.decide_call(who, call)
    assert d.allowed and d.would_deny and "no-deletes" in d.would_deny
    assert az.decide_with_shadow(who, "Function:Delete", "dev:api").to_json()["would_deny"]
    assert az.decide_call(who, map_call("GET", "/system/functions", {"namespace": "dev"}, b"")).would_deny is None


def test_a_report_only_policy_neither_grants_nor_narrows_for_real_anywhere() -> None:
    """Not in a minted function token (every verifier enforces it at once), the namespaces shown, or whoami."""
    cfg = load_mapping_documents(
        [
            obj("Policy", "base", {"statement": [statement("inv", ["Function:Invoke"], ["dev:*"])]}),
            obj(
                "Policy",
                "trial",
                {"statement": [statement("prod", ["Function:Invoke", "Namespace:List"], ["prod:*"])]},
                annotations={"iam.openfaas.com/report-only": "true"},
            ),
        ],
        "t",
    )
    index = policy_index(cfg)
    assert index.enforced(["base", "trial"]) == ["base"]
    az = Authorizer(config=lambda: cfg, verifier=None, admin_credentials=lambda: None)  # type: ignore[arg-type]
    who = Principal({"sub": "u", "policy": ["base", "trial"], "exp": 2e9})
    assert "prod" not in az.visible_namespaces(who, ["dev", "prod"])
    assert "prod:*" not in json.dumps(az.whoami(who)["permissions"])
    assert not az.decide(who, "Function:Invoke", "prod:x").allowed


def test_proxy_wide_report_only_forwards_what_it_would_deny_but_never_for_the_bundle() -> None:
    cfg = report_only_config()
    az = Authorizer(config=lambda: cfg, verifier=None, admin_credentials=lambda: None)  # type: ignore[arg-type]
    who = Principal({"sub": "u", "policy": ["dev"]})
    other = map_call("DELETE", "/system/functions", {"namespace": "prod"}, b'{"functionName":"api"}')
    assert not az.decide_call(who, other).allowed
    d = az.decide_call(who, other, report_only=True)
    assert d.allowed and d.would_deny and d.reason.startswith("report-only:")
    bundle = map_call("DELETE", "/system/functions", {}, b'{"functionName":"iam-authz"}')
    assert not az.decide_call(who, bundle, report_only=True).allowed, "the bundle is always enforced"


def test_report_only_has_an_end_and_a_bad_annotation_is_an_error() -> None:
    assert Settings(report_only=True).report_only_now(0.0)
    assert Settings(report_only=True, report_only_until="2026-01-01T00:00:00Z").report_only_now(1.0e9)
    assert not Settings(report_only=True, report_only_until="2026-01-01T00:00:00Z").report_only_now(2.0e9)
    assert not Settings(report_only=False).report_only_now(0.0)
    with pytest.raises(Exception, match="report-only"):
        load_mapping_documents(
            [
                obj(
                    "Policy",
                    "p",
                    {"statement": [statement("s", ["*"], ["*"])]},
                    {"iam.openfaas.com/report-only": "yes"},
                )
            ],
            "t",
        )


def test_cli_who_can_and_diff_help_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("who-can", "diff", "test"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
    capsys.readouterr()
    assert main(["who-can", "Function:Delete", "openfaas-fn:api", "--config", str(EXAMPLES)]) == 0
    assert "YES      Role admin-alex" in capsys.readouterr().out
    assert main(["who-can", "Function:Delete", "nowhere:api", "--config", str(EXAMPLES), "--format", "json"]) == 0
    assert main(["diff", str(EXAMPLES), str(EXAMPLES)]) == 0
    assert "no change in access" in capsys.readouterr().out
