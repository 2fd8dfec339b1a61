"""The sign-in page's pure parts: suggested commands from effective permissions, the display name, log lines."""

from __future__ import annotations

import json
from typing import Any

from openfaas_iam.model.objects import JwtIssuer
from openfaas_iam.signin.flow import SignInError, SsoSettings, failure_line
from openfaas_iam.signin.pages import FunctionTokenResult, signed_in, suggested_commands

GW = "https://openfaas-api.example.com"


def perms(*statements: tuple[str, list[str], list[str]]) -> dict[str, Any]:
    return {
        "permissions": [
            {"policy": "p", "sid": f"s{i}", "effect": effect, "actions": actions, "resources": resources}
            for i, (effect, actions, resources) in enumerate(statements)
        ]
    }


def commands(whoami: dict[str, Any]) -> list[str]:
    return [s.command for s in suggested_commands(whoami, "openfaas-fn", GW)]


def test_list_only_for_the_whole_namespace() -> None:
    prefix = perms(("Allow", ["Function:List", "Function:Get"], ["openfaas-fn:team-a-*"]))
    assert commands(prefix) == [f"faas-cli describe team-a-NAME --gateway {GW}"]
    whole = perms(("Allow", ["Function:List"], ["openfaas-fn:*"]))
    assert commands(whole) == [f"faas-cli list --gateway {GW}"]
    assert commands(perms(("Allow", ["Function:List"], ["*"]))) == [f"faas-cli list --gateway {GW}"]
    # A Deny anywhere in the namespace: list would be refused or partial, so it is not offered.
    denied = perms(("Allow", ["Function:List"], ["*"]), ("Deny", ["Function:List"], ["openfaas-fn:billing"]))
    assert commands(denied) == []


def test_other_namespaces_and_denied_prefixes_are_not_offered() -> None:
    # CE serves one namespace: a grant on staging:* gives no command there.
    assert commands(perms(("Allow", ["Function:Get"], ["staging:*"]))) == []
    covered = perms(("Allow", ["Function:Get"], ["openfaas-fn:team-a-*"]), ("Deny", ["Function:Get"], ["*"]))
    assert commands(covered) == []
    deploy = perms(("Allow", ["Function:Create", "Function:Update"], ["openfaas-fn:team-a-*"]))
    assert commands(deploy) == [f"faas-cli deploy --image IMAGE --name team-a-NAME --gateway {GW}"]
    create_only = perms(("Allow", ["Function:Create"], ["openfaas-fn:team-a-*"]))
    assert commands(create_only) == [], "faas-cli deploy PUTs first: it needs Update too"


def test_the_page_escapes_and_shows_each_token_once() -> None:
    whoami = perms(("Allow", ["Function:Get", "Function:Invoke"], ["openfaas-fn:<b>x-*"]))
    html, headers = signed_in(
        base="",
        claims={"sub": "<script>", "exp": 2_000_000_000, "policy": ["p"]},
        token="aaa.bbb.ccc",
        whoami=whoami,
        whoami_error=None,
        gateway=GW,
        csrf="c",
        idp_name="Corp <SSO>",
        authority="https://idp.example.com",
        client_id="openfaas",
        function_token=FunctionTokenResult("openfaas-fn:fn", "ddd.eee.fff", 600),
    )
    assert html.count("aaa.bbb.ccc") == 1 and html.count("ddd.eee.fff") == 1
    assert "<script>" not in html.split("<script nonce=")[0] and "Corp &lt;SSO&gt;" in html
    assert "&lt;b&gt;x-NAME" in html and "'nonce-" in headers["Content-Security-Policy"]
    assert "<details" in html and "Show token" in html and "Show function token" in html


def test_display_name_defaults_to_the_issuers_host() -> None:
    from openfaas_iam.signin.flow import SignIn

    issuer = JwtIssuer("people", "openfaas", "https://keycloak.example.com/realms/openfaas", ("openfaas",))
    si = SignIn.__new__(SignIn)
    si.sso = SsoSettings("people", "openfaas", "s", "https://iam.example.com/callback")
    assert si.idp_name(issuer) == "keycloak.example.com"
    si.sso = SsoSettings("people", "openfaas", "s", "", display_name="Example SSO")
    assert si.idp_name(issuer) == "Example SSO"


def test_a_failure_line_is_one_line_with_stage_and_reason() -> None:
    e = SignInError("t", 'refused\nFAKE {"event": "x"}\r', stage="idp")
    line = failure_line(e.stage, e.message + "x" * 500, "10.0.0.1")
    assert "\n" not in line and "\r" not in line
    doc = json.loads(line)
    assert doc["event"] == "signin_failed" and doc["stage"] == "idp" and doc["client"] == "10.0.0.1"
    assert doc["reason"].startswith("refused FAKE") and len(doc["reason"]) == 300


def test_a_malformed_host_is_not_the_sign_in_origin_and_not_a_500() -> None:
    # urlsplit().port raises ValueError on a port that is not a number or out of range: every
    # sign-in route answered such a Host or X-Forwarded-Host with a 500 and a traceback in the log.
    sso = SsoSettings("idp", "client", "secret", "https://iam.example.com/callback", origin="https://iam.example.com")
    for host in ("iam.example.com:99999", "iam.example.com:abc", "iam.example.com:-1", "[::1", "[iam.example.com]:x"):
        assert sso.serves({"X-Forwarded-Host": host}) is False
        assert sso.serves({"Host": host}) is False
    assert sso.serves({"Host": "iam.example.com"}) is True
    assert sso.serves({"X-Forwarded-Host": "iam.example.com:443, evil:99999"}) is True
