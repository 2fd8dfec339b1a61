"""Random HTTP requests for the bundle's endpoints, driven by a `random.Random`.

Shared by the bounded fuzz test (hypothesis supplies the Random) and `make fuzz`
(a seeded Random, 100,000+ requests). Requests mix valid tokens and bodies with
hostile ones so they reach deep into each handler.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

FUNCTIONS = ["iam-discovery", "iam-token", "iam-authz", "iam-rotate"]
PATHS = {
    "iam-discovery": [
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
        "/issuers",
        "/refresh",
        "/",
        "/metrics",
        "/healthz",
        "/x",
    ],
    "iam-token": [
        "/oauth/token",
        "/oauth/token/",
        "/oauth",
        "/",
        "/healthz",
        "/login",
        "/callback",
        "/logout",
        "/metrics",
    ],
    "iam-authz": [
        "/authorize",
        "/whoami",
        "/system/functions",
        "/system/function/fn",
        "/system/secrets",
        "/system/namespaces",
        "/system/namespace/dev",
        "/system/logs",
        "/system/scale-function/fn",
        "/system/info",
        "/system/../function/x",
        "/system//functions",
        "/system/function/a%2Fb",
        "/system/alerts",
        "/",
        "/status",
        "/metrics",
        "/.well-known/openfaas-iam",
    ],
    "iam-rotate": ["/", "/status", "/healthz", "/?force=false", "/metrics"],
}
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
# The methods each path really serves: most requests use them, to reach past routing.
PREFERRED = {
    "/oauth/token": ["POST"],
    "/authorize": ["POST"],
    "/refresh": ["POST"],
    "/": ["POST", "GET"],
    "/system/functions": ["GET", "POST", "PUT", "DELETE"],
    "/system/secrets": ["GET", "POST", "PUT", "DELETE"],
    "/system/namespace/dev": ["GET", "POST", "PUT", "DELETE"],
    "/system/scale-function/fn": ["POST"],
}
ACTIONS = [
    "Function:Get",
    "Function:List",
    "Function:Delete",
    "Secret:List",
    "System:Info",
    "Namespace:Get",
    "Function:Fly",
    "",
    "*",
]
RESOURCES = ["dev:fn", "staging:*", "*", "prod:a", "dev", "a:b:c", "", "dev-alice:x", "x" * 300]
NASTY = [
    "",
    "\x00",
    "\ud800" * 0,
    "é",
    "' OR 1=1",
    "../../etc/passwd",
    "%00",
    "\r\nX-Injected: 1",
    "{" * 50,
    "A" * 5000,
]


@dataclass
class Case:
    method: str
    function: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    query: dict[str, str] = field(default_factory=dict)
    check: dict[str, str] | None = None  # an /authorize check made with a valid token


def _json_body(rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return json.dumps({"action": rng.choice(ACTIONS), "resource": rng.choice(RESOURCES)}).encode()
    if choice == 1:
        return json.dumps(
            [{"action": rng.choice(ACTIONS), "resource": rng.choice(RESOURCES)} for _ in range(rng.randrange(0, 5))]
        ).encode()
    if choice == 2:
        depth = rng.randrange(1, 3000)
        return ("[" * depth + "]" * depth).encode()
    if choice == 3:
        return json.dumps(
            {
                "service": rng.choice(["fn", "Bad", ""]),
                "namespace": rng.choice(["dev", "prod", "", "../x"]),
                "name": rng.choice(NASTY),
            }
        ).encode()
    if choice == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    return rng.choice([b"", b"null", b"{}", b"[]", b"\xff\xfe", b'{"action":1}'])


def _form_body(rng: random.Random, tokens: dict[str, str]) -> bytes:
    from urllib.parse import urlencode

    fields = {
        "grant_type": rng.choice(
            ["urn:ietf:params:oauth:grant-type:token-exchange", "password", "", "client_credentials"]
        ),
        "subject_token": rng.choice(
            [tokens.get("idp", ""), tokens.get("api", ""), "x.y.z", "", rng.choice(NASTY), tokens.get("function", "")]
        ),
        "subject_token_type": rng.choice(
            ["urn:ietf:params:oauth:token-type:id_token", "urn:ietf:params:oauth:token-type:jwt", "saml", ""]
        ),
    }
    if rng.random() < 0.3:
        fields["scope"] = rng.choice(["function", "admin", "openid function", ""])
    if rng.random() < 0.3:
        fields["audience"] = rng.choice(["dev:fn", "staging:x", "*", "nope", ""])
    pairs = list(fields.items())
    if rng.random() < 0.1:
        pairs.append(("subject_token", "dup"))
    body = urlencode(pairs).encode()
    if rng.random() < 0.05:
        body += b"&%ZZ=1"
    return body


def random_case(rng: random.Random, tokens: dict[str, str]) -> Case:
    function = rng.choice(FUNCTIONS)
    path = rng.choice(PATHS[function])
    method = rng.choice(PREFERRED.get(path, ["GET"])) if rng.random() < 0.75 else rng.choice(METHODS)
    headers: dict[str, str] = {}
    auth = rng.randrange(6)
    if auth == 1 and tokens.get("api"):
        headers["Authorization"] = f"Bearer {tokens['api']}"
    elif auth == 2:
        headers["Authorization"] = "Bearer " + rng.choice(
            ["x", "a.b.c", tokens.get("idp", "y"), tokens.get("function", "z"), "\u00e9"]
        )
    elif auth == 3:
        headers["Authorization"] = rng.choice(["Basic !!!", "Basic YWRtaW46eA==", "Digest x", "Bearer"])
    if function == "iam-token" and rng.random() < 0.7:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = _form_body(rng, tokens)
    else:
        headers["Content-Type"] = rng.choice(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
        )
        body = _json_body(rng)
    query: dict[str, str] = {}
    if rng.random() < 0.4:
        query = {rng.choice(["namespace", "name", "force", "x"]): rng.choice(["dev", "prod", "true", "", "a/b", "é"])}
    if rng.random() < 0.05:
        headers["X-Forwarded-For"] = rng.choice(["1.2.3.4", "evil, 5.6.7.8", "x" * 300])
    case = Case(method, function, path, headers, body, query)
    if function == "iam-authz" and path == "/authorize" and method == "POST" and auth == 1 and tokens.get("api"):
        check = {"action": rng.choice(ACTIONS), "resource": rng.choice(RESOURCES)}
        case.body = json.dumps(check).encode()
        case.headers["Content-Type"] = "application/json"
        case.check = check
    return case


def send(session: Any, base: str, case: Case, timeout: float = 10.0) -> Any:
    return session.request(
        case.method,
        f"{base}/function/{case.function}{case.path}",
        params=case.query or None,
        data=case.body,
        headers=case.headers,
        timeout=timeout,
        allow_redirects=False,
    )
