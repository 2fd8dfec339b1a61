"""`make bench`: the bundle's speed, side by side with its floor and its peers, in one run.

Every figure is a ratio of two things measured in this same run on this machine, with
the two sides interleaved round by round so a noisy neighbour hits both alike.
Prints a table and writes docs/performance.json and docs/performance.md.
"""

from __future__ import annotations

import argparse
import gzip
import http.server
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jwt  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402

from openfaas_iam.engine.policy import policy_index  # noqa: E402
from openfaas_iam.jose.jws import b64url_decode  # noqa: E402
from openfaas_iam.jose.keyset import initial_keyset  # noqa: E402
from openfaas_iam.jose.mint import sign  # noqa: E402
from openfaas_iam.model.loading import load_texts  # noqa: E402
from openfaas_iam.oidc.discovery import IssuerDiscovery, IssuerKeys  # noqa: E402
from openfaas_iam.oidc.jwks_cache import JwksCache  # noqa: E402
from openfaas_iam.oidc.outbound import Fetcher  # noqa: E402
from openfaas_iam.oidc.verify import OwnTokenVerifier, verify_subject_token  # noqa: E402
from openfaas_iam.settings import Settings  # noqa: E402
from openfaas_iam.stores.cache import LayeredCache  # noqa: E402

ISSUER = "http://127.0.0.1:8080/function/iam-discovery"
RESULTS: list[dict[str, Any]] = []


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def per_op(fn: Callable[[], Any], n: int) -> float:
    """Seconds per call of fn over n calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def side_by_side(ours: Callable[[], Any], floor: Callable[[], Any], n: int, rounds: int = 7) -> tuple[float, float]:
    """Median seconds per op of each, measured in alternating rounds."""
    ours(), floor()
    a, b = [], []
    for _ in range(rounds):
        a.append(per_op(ours, n))
        b.append(per_op(floor, n))
    return statistics.median(a), statistics.median(b)


def record(
    name: str,
    ours: float,
    other: float,
    *,
    goal: str,
    ok: bool,
    unit: str = "µs/op",
    note: str = "",
    ours_label: str = "ours",
    other_label: str = "floor",
    speedup: bool = False,
) -> None:
    """`ratio` is ours/baseline, or baseline/ours with speedup=True (then higher is better)."""
    ratio = (other / ours if ours else float("inf")) if speedup else (ours / other if other else float("inf"))
    RESULTS.append(
        {
            "benchmark": name,
            "ours": ours,
            "baseline": other,
            "ours_label": ours_label,
            "other_label": other_label,
            "ratio": ratio,
            "unit": unit,
            "goal": goal,
            "met": ok,
            "note": note,
        }
    )
    say(
        f"  {name}: {ours_label} {ours:.1f} vs {other_label} {other:.1f} {unit} -> {ratio:.2f}x"
        f"  goal {goal}: {'met' if ok else 'MISSED'}"
    )


# -- 1. decisions vs pycasbin ---------------------------------------------------------------------

CASBIN_MODEL = """
[request_definition]
r = sub, obj, act
[policy_definition]
p = sub, obj, act, eft
[role_definition]
g = _, _
[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
[matchers]
m = g(r.sub, p.sub) && keyMatch(r.obj, p.obj) && regexMatch(r.act, p.act)
"""

RULES = [  # (policy, effect, action regex / IAM action, resource)
    ("staging-ro", "allow", "Function:List", "staging:*"),
    ("staging-ro", "allow", "Function:Get", "staging:*"),
    ("staging-ro", "allow", "Function:Logs", "staging:*"),
    ("staging-ro", "allow", "Secret:List", "staging:*"),
    ("staging-rw", "allow", "Function:*", "staging:*"),
    ("staging-rw", "allow", "Secret:*", "staging:*"),
    ("prod-ro", "allow", "Function:List", "prod:*"),
    ("prod-ro", "allow", "Function:Get", "prod:*"),
    ("prod-ro", "allow", "Function:Logs", "prod:*"),
    ("prod-deploy", "allow", "Function:Create", "prod:*"),
    ("prod-deploy", "allow", "Function:Update", "prod:*"),
    ("prod-deploy", "allow", "Function:Scale", "prod:*"),
    ("prod-guard", "deny", "Function:Delete", "prod:*"),
    ("prod-guard", "deny", "Secret:*", "prod:*"),
    ("billing-guard", "deny", "Function:*", "prod:billing"),
    ("dev-all", "allow", "Function:*", "dev:*"),
    ("dev-all", "allow", "Secret:*", "dev:*"),
    ("dev-all", "allow", "Namespace:Get", "dev:*"),
    ("info", "allow", "System:Info", "*"),
    ("info", "allow", "Namespace:List", "*"),
    ("tools-env", "allow", "Function:Get", "tools:env"),
    ("tools-env", "allow", "Function:Invoke", "tools:env"),
    ("qa-logs", "allow", "Function:Logs", "qa:*"),
]
TOKEN_POLICIES = ["staging-rw", "prod-ro", "prod-deploy", "prod-guard", "billing-guard", "info", "tools-env"]
REQUESTS = [
    (a, r)
    for a in (
        "Function:Get",
        "Function:Delete",
        "Function:Create",
        "Secret:List",
        "System:Info",
        "Function:Invoke",
        "Function:Logs",
    )
    for r in ("staging:api", "prod:api", "prod:billing", "dev:x", "tools:env", "*")
]


def iam_documents(rules: list[tuple[str, str, str, str]]) -> str:
    policies: dict[str, list[dict[str, Any]]] = {}
    for i, (pol, eft, act, res) in enumerate(rules):
        policies.setdefault(pol, []).append({"sid": f"s{i}", "effect": eft.title(), "action": [act], "resource": [res]})
    docs = [
        {"apiVersion": "iam.openfaas.com/v1", "kind": "Policy", "metadata": {"name": p}, "spec": {"statement": st}}
        for p, st in policies.items()
    ]
    return json.dumps(docs)


def bench_casbin() -> None:
    import casbin

    say("1. decision speed vs pycasbin (cached verified token)")
    tmp = Path(tempfile.mkdtemp())
    (tmp / "model.conf").write_text(CASBIN_MODEL)
    (tmp / "policy.csv").write_text(
        "".join(
            f"p, {p}, {res.replace('*', '*') if res != '*' else '*'}, {act.replace('*', '.*')}, {eft}\n"
            for p, eft, act, res in RULES
        )
        + "".join(f"g, alice, {p}\n" for p in TOKEN_POLICIES)
    )
    enforcer = casbin.Enforcer(str(tmp / "model.conf"), str(tmp / "policy.csv"))
    config = load_texts([("bench", iam_documents(RULES))])
    index = policy_index(config)
    keyset = initial_keyset()
    now = int(time.time())
    token = sign(
        {"iss": ISSUER, "aud": ISSUER, "sub": "fed:alice", "iat": now, "exp": now + 3600, "policy": TOKEN_POLICIES},
        keyset.current,
    )
    verifier = OwnTokenVerifier(ISSUER, keyset.public_keys)
    for action, resource in REQUESTS:
        ours = index.decide(verifier.verify(token)["policy"], action, resource, verifier.verify(token)).allowed
        theirs = enforcer.enforce("alice", resource, action)
        assert ours == theirs, f"engines disagree on {action} {resource}: ours {ours}, casbin {theirs}"
    say(f"   both engines agree on all {len(REQUESTS)} requests")
    it = iter(REQUESTS * 1000000)

    def ours() -> None:
        action, resource = next(it)
        claims = verifier.verify(token)
        index.decide(claims["policy"], action, resource, claims)

    def theirs() -> None:
        action, resource = next(it)
        enforcer.enforce("alice", resource, action)

    a, b = side_by_side(ours, theirs, 2000, rounds=5)
    speedup = b / a
    record(
        "decision vs pycasbin enforce()",
        a * 1e6,
        b * 1e6,
        goal=">= 20x faster",
        ok=speedup >= 20,
        other_label="pycasbin",
        note=f"ratio = how many times faster; {len(RULES)} rules, RBAC + keyMatch + deny-override",
        speedup=True,
    )


# -- 2. scaling with the number of policies ------------------------------------------------------


def bench_scaling() -> None:
    say("2. decision cost as policies grow (10 -> 10,000 policies and roles)")
    keyset = initial_keyset()
    now = int(time.time())
    costs: dict[int, float] = {}
    for n in (10, 100, 1000, 10000):
        docs = []
        for i in range(n):
            docs.append(
                {
                    "apiVersion": "iam.openfaas.com/v1",
                    "kind": "Policy",
                    "metadata": {"name": f"p{i}"},
                    "spec": {
                        "statement": [
                            {"sid": "rw", "effect": "Allow", "action": ["Function:*"], "resource": [f"team-{i}:*"]},
                            {
                                "sid": "guard",
                                "effect": "Deny",
                                "action": ["Function:Delete"],
                                "resource": [f"team-{i}:prod-*"],
                            },
                        ]
                    },
                }
            )
            docs.append(
                {
                    "apiVersion": "iam.openfaas.com/v1",
                    "kind": "Role",
                    "metadata": {"name": f"r{i}"},
                    "spec": {"policy": [f"p{i}"], "principal": {"jwt:sub": [f"user-{i}"]}},
                }
            )
        config = load_texts([("scale", json.dumps(docs))])
        index = policy_index(config)
        token = sign(
            {"iss": ISSUER, "aud": ISSUER, "sub": "fed:user-5", "iat": now, "exp": now + 3600, "policy": ["p5"]},
            keyset.current,
        )
        verifier = OwnTokenVerifier(ISSUER, keyset.public_keys)

        def decide(verifier: OwnTokenVerifier = verifier, token: str = token, index: Any = index) -> None:
            claims = verifier.verify(token)
            index.decide(claims["policy"], "Function:Update", "team-5:api", claims)

        costs[n] = statistics.median(per_op(decide, 5000) for _ in range(5))
        say(f"   {n:>6} policies: {costs[n] * 1e6:.2f} µs/decision")
    ratio = costs[10000] / costs[10]
    record(
        "decision at 10,000 vs 10 policies",
        costs[10000] * 1e6,
        costs[10] * 1e6,
        goal="<= 2x",
        ok=ratio <= 2,
        ours_label="10,000",
        other_label="10",
        note=", ".join(f"{n}: {c * 1e6:.2f}" for n, c in costs.items()),
    )


# -- 3. token verification vs the raw crypto floor ----------------------------------------------


def bench_verification() -> None:
    say("3. token verification vs a bare cryptography verify of the same bytes")
    keyset = initial_keyset()
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": ISSUER,
        "sub": "fed:alice",
        "iat": now,
        "exp": now + 3600,
        "policy": ["a", "b"],
        "groups": ["dev"],
        "email": "a@example.com",
    }
    token = sign(claims, keyset.current)
    verifier = OwnTokenVerifier(ISSUER, keyset.public_keys)
    h, p, s = token.split(".")
    msg, raw = f"{h}.{p}".encode(), b64url_decode(s)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    pub = keyset.current.private_key.public_key()
    ecdsa = ec.ECDSA(hashes.SHA256())
    a, b = side_by_side(lambda: verifier.verify_uncached(token), lambda: pub.verify(der, msg, ecdsa), 2000)
    record("OpenFaaS token verify (cache miss), ES256", a * 1e6, b * 1e6, goal="<= 1.2x", ok=a / b <= 1.2)
    pyjwt = statistics.median(
        per_op(lambda: jwt.decode(token, pub, algorithms=["ES256"], audience=ISSUER, issuer=ISSUER), 2000)
        for _ in range(3)
    )
    hit = statistics.median(per_op(lambda: verifier.verify(token), 20000) for _ in range(3))
    say(f"   for reference: PyJWT decode {pyjwt * 1e6:.1f} µs, our cache hit {hit * 1e6:.2f} µs")
    RESULTS.append(
        {
            "benchmark": "OpenFaaS token verify, cache hit",
            "ours": hit * 1e6,
            "unit": "µs/op",
            "note": f"PyJWT decode of the same token: {pyjwt * 1e6:.1f} µs",
        }
    )

    # RS256 subject tokens through the full subject verification (issuer, kid, claims).
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    iss = "https://idp.example.com"
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update(kid="k1", alg="RS256", use="sig")
    config = load_texts(
        [
            (
                "b",
                json.dumps(
                    {
                        "apiVersion": "iam.openfaas.com/v1",
                        "kind": "JwtIssuer",
                        "metadata": {"name": "idp"},
                        "spec": {"iss": iss, "aud": ["openfaas"]},
                    }
                ),
            )
        ]
    )
    jwks = JwksCache(IssuerDiscovery(Fetcher()), LayeredCache(None))
    jwks._entries[iss] = IssuerKeys.build(iss, [jwk], time.time(), time.time() + 3600)
    subject = jwt.encode(
        {"iss": iss, "aud": "openfaas", "sub": "alice", "iat": now, "exp": now + 3600, "groups": ["dev"]},
        rsa_key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    h, p, s = subject.split(".")
    msg, sig = f"{h}.{p}".encode(), b64url_decode(s)
    rpub = rsa_key.public_key()
    pkcs1, sha = padding.PKCS1v15(), hashes.SHA256()
    a, b = side_by_side(
        lambda: verify_subject_token(subject, config, jwks, 60), lambda: rpub.verify(sig, msg, pkcs1, sha), 3000
    )
    # Where the time over the floor goes, measured part by part (the note on a miss).
    from openfaas_iam.jose.jws import verify_signature
    from openfaas_iam.oidc.verify import check_times, parse_token

    parsed = parse_token(subject)
    issuer = config.issuers[0]
    parts = {
        "parse (split, strict base64url, JSON)": lambda: parse_token(subject),
        "key look-up in the JWKS cache": lambda: jwks.key(issuer, "k1"),
        "signature decode + dispatch": lambda: verify_signature("RS256", rpub, msg, s),
        "claim checks": lambda: check_times(parsed.payload, time.time(), 60),
    }
    costs = {k: statistics.median(per_op(f, 5000) for _ in range(3)) * 1e6 for k, f in parts.items()}
    costs["signature decode + dispatch"] -= b * 1e6
    breakdown = "; ".join(f"{k} {v:.1f} µs" for k, v in costs.items())
    record(
        "subject token verify, RS256",
        a * 1e6,
        b * 1e6,
        goal="<= 1.2x",
        ok=a / b <= 1.2,
        note=f"Measured over the floor: {breakdown}.",
    )


# -- 4. the exchange in-process, and 5./6. over HTTP ---------------------------------------------


class IdpStandIn:
    """Discovery + JWKS for an RS256 issuer, so the exchange's caches can be warmed."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid="k1", alg="RS256", use="sig")
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                doc = (
                    {"issuer": outer.iss, "jwks_uri": outer.iss + "/jwks"}
                    if "well-known" in self.path
                    else {"keys": [jwk]}
                )
                body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "max-age=3600")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.iss = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, sub: str = "alice") -> str:
        now = int(time.time())
        return jwt.encode(
            {"iss": self.iss, "aud": "openfaas", "sub": sub, "iat": now, "exp": now + 3600, "groups": ["dev"]},
            self.key,
            algorithm="RS256",
            headers={"kid": "k1"},
        )


def base_documents(idp: IdpStandIn) -> list[dict[str, Any]]:
    """The bench's IAM objects: the stand-in IdP, the RULES policies and a Role for group dev."""
    return [
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "JwtIssuer",
            "metadata": {"name": "idp"},
            "spec": {"iss": idp.iss, "aud": ["openfaas"]},
        },
        *json.loads(iam_documents(RULES)),
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "Role",
            "metadata": {"name": "devs"},
            "spec": {"policy": TOKEN_POLICIES, "condition": {"ForAnyValue:StringEqual": {"jwt:groups": ["dev"]}}},
        },
    ]


def large_documents(base: list[dict[str, Any]], issuers: int, policies: int, roles: int) -> list[dict[str, Any]]:
    """`base` plus unrelated issuers, Policies and Roles, as a large organisation writes them: half
    the Roles name users (`principal: jwt:sub`), half name an IdP and a group pattern (conditions)."""
    docs = list(base)
    v1 = "iam.openfaas.com/v1"
    for i in range(issuers):
        iss = f"https://idp-{i}.example.com"
        docs.append(
            {
                "apiVersion": v1,
                "kind": "JwtIssuer",
                "metadata": {"name": f"idp-{i}"},
                "spec": {"iss": iss, "aud": ["openfaas"]},
            }
        )
    for i in range(policies):
        statements = [
            {"sid": "rw", "effect": "Allow", "action": ["Function:*"], "resource": [f"team-{i}:*"]},
            {"sid": "guard", "effect": "Deny", "action": ["Function:Delete"], "resource": [f"team-{i}:prod-*"]},
        ]
        docs.append(
            {"apiVersion": v1, "kind": "Policy", "metadata": {"name": f"team-{i}"}, "spec": {"statement": statements}}
        )
    for i in range(roles):
        spec: dict[str, Any] = {"policy": [f"team-{i % max(policies, 1)}"] if policies else TOKEN_POLICIES[:1]}
        if i % 2:
            iss = f"https://idp-{i % max(issuers, 1)}.example.com"
            spec["condition"] = {
                "StringEquals": {"jwt:iss": [iss]},
                "ForAnyValue:StringLike": {"jwt:groups": [f"team-{i}-*"]},
            }
        else:
            spec["principal"] = {"jwt:sub": [f"user-{i}"]}
        docs.append({"apiVersion": v1, "kind": "Role", "metadata": {"name": f"role-{i}"}, "spec": spec})
    return docs


def prepare_function(tmp: Path, name: str, idp: IdpStandIn) -> tuple[Path, dict[str, str]]:
    """A function's build context and environment, as the local gateway would make them."""
    from localgw.build_context import assemble
    from localgw.stack import load_stack

    stack = load_stack(ROOT / "stack.yml", {"PUBLIC_GATEWAY_URL": "http://127.0.0.1:8080"})
    ctx = assemble(stack, stack.functions[name], tmp / "build")
    secrets = tmp / "secrets"
    secrets.mkdir(exist_ok=True)
    if not (secrets / "iam-signing-keys").exists():
        (secrets / "iam-signing-keys").write_text(initial_keyset().to_json())
        (secrets / "iam-config").write_text(json.dumps(base_documents(idp)))
        (secrets / "basic-auth-user").write_text("admin")
        (secrets / "basic-auth-password").write_text("pw")
    env = {
        **stack.functions[name].environment,
        "secret_mount_path": str(secrets),
        "redis_url": "",
        "PATH": os.environ["PATH"],
        **({"config_reload": os.environ["config_reload"]} if "config_reload" in os.environ else {}),
    }
    return ctx, env


def bench_exchange_in_process(tmp: Path, idp: IdpStandIn) -> None:
    say("4. the exchange in-process (WSGI, warm caches) vs its floor")
    ctx, env = prepare_function(tmp, "iam-token", idp)
    saved_env = dict(os.environ)
    os.environ.update(env)
    sys.path.insert(0, str(ctx))
    try:
        import importlib

        index = importlib.import_module("index")
        client = index.create_app().test_client()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    subject = idp.token()
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": subject,
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
    }
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the audit line's write stays in the measurement
    real_stdout = sys.stdout
    sys.stdout = devnull
    try:
        r = client.post("/oauth/token", data=form)
        assert r.status_code == 200, r.get_data(as_text=True)
        from flask import Flask

        floor_app = Flask("floor")

        @floor_app.post("/")
        def hello() -> dict[str, int]:
            return {"ok": 1}

        floor_client = floor_app.test_client()
        h, p, s = subject.split(".")
        msg, sig = f"{h}.{p}".encode(), b64url_decode(s)
        pub = idp.key.public_key()
        ec_key = ec.generate_private_key(ec.SECP256R1())
        pkcs1, sha, ecdsa = padding.PKCS1v15(), hashes.SHA256(), ec.ECDSA(hashes.SHA256())

        def floor() -> None:
            pub.verify(sig, msg, pkcs1, sha)
            ec_key.sign(msg, ecdsa)
            floor_client.post("/", data=form)

        a, b = side_by_side(lambda: client.post("/oauth/token", data=form), floor, 300, rounds=5)
    finally:
        sys.stdout = real_stdout
        devnull.close()
    record(
        "exchange in-process vs floor",
        a * 1e6,
        b * 1e6,
        goal="<= 1.3x",
        ok=a / b <= 1.3,
        note="floor = RS256 verify + ES256 sign + a minimal Flask request",
    )


# -- 7. large configurations (issue 16) ------------------------------------------------------------

LARGE = {"issuers": 1000, "policies": 10_000, "roles": 10_000}
MEMORY_LIMIT_MIB = 256  # stack.yml: limits.memory of every function (raised from 128 by this row's figures)


def exchanger(config: Callable[[], Any], jwks: JwksCache, keyset: Any, audit_stream: Any) -> Any:
    from openfaas_iam.observability.audit import AuditLog
    from openfaas_iam.service.exchange import TokenExchange

    return TokenExchange(
        issuer_url=ISSUER,
        config=config,
        keyset=lambda: keyset,
        jwks=jwks,
        audit=AuditLog(audit_stream, background=True),
    )


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def bench_large(tmp: Path, idp: IdpStandIn) -> float:
    """Exchange cost at 10,000 Roles vs 10; p99 while a 10,000-Role configuration reloads. Returns the reload time."""
    from openfaas_iam.service.config_source import file_config_source, prepared
    from openfaas_iam.service.exchange import ExchangeRequest

    say("7. large configurations: 1,000 issuers, 10,000 Policies, 10,000 Roles")
    base = base_documents(idp)
    small_docs = large_documents(base, 10, 10, 10)
    large_docs = large_documents(base, **LARGE)
    started = time.perf_counter()
    small = prepared(load_texts([("small", json.dumps(small_docs))]))
    large = prepared(load_texts([("large", json.dumps(large_docs))]))
    say(f"   loaded and indexed in {time.perf_counter() - started:.1f}s")
    keyset = initial_keyset()
    jwks = JwksCache(IssuerDiscovery(Fetcher()), LayeredCache(None))
    devnull = open(os.devnull, "w")  # noqa: SIM115
    req = ExchangeRequest(idp.token(), "urn:ietf:params:oauth:token-type:id_token", None, (), None)
    ex_small = exchanger(lambda: small, jwks, keyset, devnull)
    ex_large = exchanger(lambda: large, jwks, keyset, devnull)
    assert ex_small.exchange(req)["access_token"] and ex_large.exchange(req)["access_token"]
    a, b = side_by_side(lambda: ex_large.exchange(req), lambda: ex_small.exchange(req), 300, rounds=5)
    record(
        "exchange at 10,000 Roles vs 10",
        a * 1e6,
        b * 1e6,
        goal="<= 1.5x",
        ok=a / b <= 1.5,
        ours_label="10,000",
        other_label="10",
        note="1,000 issuers, 10,000 Policies; Roles half by jwt:sub, half by jwt:iss + group pattern",
    )

    # p99 of exchanges and decisions while the same configuration reloads, from the file source the
    # functions use (parse in a background thread, swapped whole), vs the same loop in steady state.
    path = tmp / "large-iam-config.json.gz"  # 5 MiB of JSON: gzipped, as a Secret must carry it (<= 1 MiB)
    text = json.dumps(large_docs)
    path.write_bytes(gzip.compress(text.encode()))
    sizes = f"{len(text) / 2**20:.1f} MiB JSON, {len(gzip.compress(text.encode())) / 2**20:.2f} MiB gzipped"
    say(f"   the configuration: {sizes}")
    # As the functions do: `config_reload` (Settings) chooses a child process (the default) or a thread.
    child = Settings.from_env(os.environ).config_reload == "process"
    how = "parse in a child process" if child else "parse in a background thread"
    source = file_config_source(str(path), check_interval=0, background=True, child_process=child)
    source.get()
    ex = exchanger(source.get, jwks, keyset, devnull)
    now = int(time.time())
    api = sign(
        {"iss": ISSUER, "aud": ISSUER, "sub": "fed:alice", "iat": now, "exp": now + 3600, "policy": TOKEN_POLICIES},
        keyset.current,
    )
    verifier = OwnTokenVerifier(ISSUER, keyset.public_keys)

    def decide() -> None:
        claims = verifier.verify(api)
        policy_index(source.get()).decide(claims["policy"], "Function:Update", "staging:api", claims)

    def sample(until: Callable[[], bool]) -> tuple[list[float], list[float]]:
        xs, ds = [], []
        while not until():
            t0 = time.perf_counter()
            ex.exchange(req)
            t1 = time.perf_counter()
            for _ in range(5):
                decide()
            t2 = time.perf_counter()
            xs.append(t1 - t0)
            ds.append((t2 - t1) / 5)
        return xs, ds

    reloads, steady_x, steady_d, during_x, during_d = [], [], [], [], []
    for round_ in range(3):
        count = [0]

        def enough(count: list[int] = count) -> bool:
            count[0] += 1
            return count[0] > 1500

        xs, ds = sample(enough)
        steady_x += xs
        steady_d += ds
        generation = source.generation
        path.write_bytes(gzip.compress(text.replace('"role-0"', f'"role-0-{round_}"').encode()))
        started = time.perf_counter()
        source.get()  # the first request after the change starts the background parse
        xs, ds = sample(lambda g=generation: source.generation > g)
        reloads.append(time.perf_counter() - started)
        during_x += xs
        during_d += ds
    devnull.close()
    reload_s = statistics.median(reloads)
    for what, steady, during in (("exchange", steady_x, during_x), ("decision", steady_d, during_d)):
        a, b = p99(during) * 1e6, p99(steady) * 1e6
        record(
            f"{what} p99 during a 10,000-Role reload vs steady",
            a,
            b,
            goal="<= 2x",
            ok=a / b <= 2,
            ours_label="reloading",
            other_label="steady",
            note=f"{len(during)} {what}s during 3 reloads of {reload_s:.1f}s each ({how}); the configuration: {sizes}",
        )
    return reload_s


def exchange_form(idp: IdpStandIn) -> tuple[bytes, dict[str, str]]:
    """A token-exchange request body for one of the IdP's tokens, and its headers."""
    form = urlencode(
        {
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": idp.token(),
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        }
    ).encode()
    return form, {"Content-Type": "application/x-www-form-urlencoded"}


def bench_large_processes(tmp: Path, idp: IdpStandIn, seconds: float, reload_s: float) -> None:
    """RSS of iam-token (and any child of it) holding the large configuration and through its reload."""
    import requests

    say("8. iam-token's RSS with the large configuration, and through its reload")
    big = tmp / "big"
    big.mkdir()
    ctx, env = prepare_function(big, "iam-token", idp)
    config_path = big / "secrets" / "iam-config"
    text = json.dumps(large_documents(base_documents(idp), **LARGE))
    config_path.write_bytes(gzip.compress(text.encode()))
    port = free_port()
    proc = start([sys.executable, "index.py"], ctx, {**env, "upstream_url": f"http://127.0.0.1:{port}"}, port)
    form, headers = exchange_form(idp)
    url = f"http://127.0.0.1:{port}/oauth/token"
    try:
        session = requests.Session()
        assert session.post(url, data=form, headers=headers, timeout=120).status_code == 200  # the first load
        for _ in range(200):
            session.post(url, data=form, headers=headers, timeout=10)
        time.sleep(1)
        steady = rss_kb(proc.pid) / 1024
        config_path.write_bytes(gzip.compress(text.replace('"role-0"', '"role-0-changed"').encode()))
        # The container's limit counts any child process too: sum the function and its children.
        peak = steady
        child_peak = 0.0
        end = time.monotonic() + max(8.0, 3 * reload_s)
        while time.monotonic() < end:
            session.post(url, data=form, headers=headers, timeout=10)
            children = child_pids(proc.pid)
            peak = max(peak, (rss_kb(proc.pid) + sum(rss_kb(c) for c in children)) / 1024)
            child_peak = max([child_peak, *(vm_hwm_kb(c) / 1024 for c in children)])
        hwm = vm_hwm_kb(proc.pid) / 1024
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    say(f"   its children's own peak (VmHWM): {child_peak:.1f} MiB; the function's VmHWM: {hwm:.1f} MiB")
    say(f"   config_reload: {Settings.from_env(env).config_reload} (children seen: {'yes' if child_peak else 'no'})")
    for what, mib in (
        ("with the large configuration", steady),
        ("peak through start-up and a reload", max(peak, hwm)),
    ):
        RESULTS.append(
            {
                "benchmark": f"iam-token RSS {what}",
                "ours": mib,
                "baseline": float(MEMORY_LIMIT_MIB),
                "ratio": mib / MEMORY_LIMIT_MIB,
                "unit": "MiB",
                "goal": f"<= {MEMORY_LIMIT_MIB} MiB (limit)",
                "met": mib <= MEMORY_LIMIT_MIB,
                "note": "1,000 issuers, 10,000 Policies, 10,000 Roles; the peak: the function's VmHWM or its RSS "
                "plus its children's, sampled through the reload, whichever is higher",
            }
        )
        say(f"   RSS {what}: {mib:.1f} MiB (limit {MEMORY_LIMIT_MIB} MiB)")


def bench_replicas(tmp: Path, idp: IdpStandIn, seconds: float) -> None:
    """/authorize throughput of 2 replicas vs 1."""
    import requests

    form, headers = exchange_form(idp)
    say(f"9. /authorize throughput: 2 replicas vs 1 on {os.cpu_count()} cores")
    authz_ctx, authz_env = prepare_function(tmp, "iam-authz", idp)
    token_ctx, token_env = prepare_function(tmp, "iam-token", idp)
    ports = [free_port(), free_port(), free_port()]
    procs = [
        start(
            [sys.executable, "index.py"],
            token_ctx,
            {**token_env, "upstream_url": f"http://127.0.0.1:{ports[0]}"},
            ports[0],
        ),
        *(
            start([sys.executable, "index.py"], authz_ctx, {**authz_env, "upstream_url": f"http://127.0.0.1:{p}"}, p)
            for p in ports[1:]
        ),
    ]
    try:
        r = requests.post(f"http://127.0.0.1:{ports[0]}/oauth/token", data=form, headers=headers, timeout=10)
        auth = {"Content-Type": "application/json", "Authorization": f"Bearer {r.json()['access_token']}"}
        check = json.dumps({"action": "Function:Update", "resource": "staging:api"}).encode()
        urls = [f"http://127.0.0.1:{p}/authorize" for p in ports[1:]]
        one, two = [], []
        for _ in range(2):
            one.append(load(urls[0], check, auth, 8, seconds))
            rates: list[float] = []
            threads = [
                threading.Thread(target=lambda u=u, rates=rates: rates.append(load(u, check, auth, 4, seconds)))
                for u in urls
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            two.append(sum(rates))
        a, b = max(two), max(one)
        record(
            "/authorize rate, 2 replicas vs 1",
            a,
            b,
            unit="req/s",
            goal=">= 1.8x",
            ok=a / b >= 1.8,
            ours_label="2 replicas",
            other_label="1 replica",
            speedup=False,
            note=f"8 connections in all; the load generator runs on the same {os.cpu_count()} cores",
        )
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


def proc_status_kb(pid: int, field: str) -> int:
    """A /proc/<pid>/status size in KiB (VmRSS, VmHWM); 0 for a process that has just exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def vm_hwm_kb(pid: int) -> int:
    return proc_status_kb(pid, "VmHWM")


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid`, from /proc: a container's memory limit counts them too."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HELLO = """
import os
from flask import Flask
from waitress import serve
app = Flask("hello")
@app.route("/", methods=["GET", "POST"])
def hello():
    return {"hello": "world"}
serve(app, host="127.0.0.1", port=int(os.environ["PORT"]), threads=8, ident=None,
      clear_untrusted_proxy_headers=False, _quiet=True)
"""


def start(cmd: list[str], cwd: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{cmd} did not start")


def load(url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float) -> float:
    """Requests per second: wrk when installed, else a multi-process keep-alive client."""
    wrk = shutil.which("wrk")
    if wrk:
        script = Path(tempfile.mkdtemp()) / "post.lua"
        lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body.decode())}"]
        lines += [f'wrk.headers["{k}"] = {json.dumps(v)}' for k, v in headers.items()]
        script.write_text("\n".join(lines) + "\n")
        out = subprocess.run(
            [
                wrk,
                "-t",
                str(min(connections, 2)),
                "-c",
                str(connections),
                "-d",
                f"{seconds:g}s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        ).stdout
        for line in out.splitlines():
            if line.startswith("Requests/sec:"):
                return float(line.split()[1])
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    from multiprocessing import Pool

    with Pool(connections) as pool:
        counts = pool.starmap(_client, [(url, body, headers, seconds)] * connections)
    return sum(counts) / seconds


def _client(url: str, body: bytes, headers: dict[str, str], seconds: float) -> int:
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        conn.request("POST", u.path or "/", body=body, headers={**headers, "Content-Length": str(len(body))})
        conn.getresponse().read()
        n += 1
    return n


def rss_kb(pid: int) -> int:
    return proc_status_kb(pid, "VmRSS")


def bench_http(tmp: Path, idp: IdpStandIn, seconds: float) -> None:
    say(
        f"5. over HTTP through waitress on loopback "
        f"({'wrk' if shutil.which('wrk') else 'a Python keep-alive client'}), {seconds:g}s each"
    )
    authz_ctx, authz_env = prepare_function(tmp, "iam-authz", idp)
    token_ctx, token_env = prepare_function(tmp, "iam-token", idp)
    ports = {"authz": free_port(), "token": free_port(), "hello": free_port()}
    procs = [
        start(
            [sys.executable, "index.py"],
            authz_ctx,
            {**authz_env, "upstream_url": f"http://127.0.0.1:{ports['authz']}"},
            ports["authz"],
        ),
        start(
            [sys.executable, "index.py"],
            token_ctx,
            {**token_env, "upstream_url": f"http://127.0.0.1:{ports['token']}"},
            ports["token"],
        ),
        start(
            [sys.executable, "-c", HELLO],
            tmp,
            {"PATH": os.environ["PATH"], "PORT": str(ports["hello"])},
            ports["hello"],
        ),
    ]
    try:
        import requests

        form, form_headers = exchange_form(idp)
        r = requests.post(f"http://127.0.0.1:{ports['token']}/oauth/token", data=form, headers=form_headers, timeout=10)
        assert r.status_code == 200, r.text
        api_token = r.json()["access_token"]
        check = json.dumps({"action": "Function:Update", "resource": "staging:api"}).encode()
        auth_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_token}"}
        assert requests.post(
            f"http://127.0.0.1:{ports['authz']}/authorize", data=check, headers=auth_headers, timeout=10
        ).json()["allowed"]
        for c in (1, 8):
            authz, hello, token = [], [], []
            for _ in range(2):
                authz.append(load(f"http://127.0.0.1:{ports['authz']}/authorize", check, auth_headers, c, seconds))
                hello.append(
                    load(f"http://127.0.0.1:{ports['hello']}/", b"{}", {"Content-Type": "application/json"}, c, seconds)
                )
                token.append(load(f"http://127.0.0.1:{ports['token']}/oauth/token", form, form_headers, c, seconds))
            a, h, t = max(authz), max(hello), max(token)
            record(
                f"/authorize rate vs hello-world, concurrency {c}",
                a,
                h,
                unit="req/s",
                goal=">= 0.8x",
                ok=a / h >= 0.8,
                other_label="hello-world",
            )
            RESULTS.append(
                {
                    "benchmark": f"/oauth/token rate, concurrency {c}",
                    "ours": t,
                    "hello-world": h,
                    "ratio": t / h,
                    "unit": "req/s",
                    "note": "reported, no goal",
                }
            )
            say(f"   /oauth/token at concurrency {c}: {t:.0f} req/s ({t / h:.2f}x hello-world)")

        say("6. memory of one function process: right after start vs after 100,000 decisions")
        pid = procs[0].pid
        batch = json.dumps(
            [{"action": a, "resource": res} for a, res in REQUESTS[:40]] * 2
            + [{"action": "Function:Get", "resource": f"staging:fn-{i}"} for i in range(20)]
        ).encode()
        session = requests.Session()
        for _ in range(20):  # warm-up: imports, caches, allocator arenas
            session.post(f"http://127.0.0.1:{ports['authz']}/authorize", data=batch, headers=auth_headers, timeout=10)
        before = rss_kb(pid)
        decisions = 0
        while decisions < 100_000:
            resp = session.post(
                f"http://127.0.0.1:{ports['authz']}/authorize", data=batch, headers=auth_headers, timeout=10
            )
            decisions += len(resp.json())
        after = rss_kb(pid)
        growth = (after - before) / before
        RESULTS.append(
            {
                "benchmark": "RSS growth after 100,000 decisions",
                "ours": after / 1024,
                "start": before / 1024,
                "ratio": 1 + growth,
                "unit": "MiB",
                "goal": "< 10% growth",
                "met": growth < 0.10,
                "note": f"{growth * 100:.1f}% growth",
            }
        )
        say(
            f"   RSS {before / 1024:.1f} MiB after start, {after / 1024:.1f} MiB after {decisions} decisions: "
            f"{growth * 100:+.1f}%  goal < 10%: {'met' if growth < 0.10 else 'MISSED'}"
        )
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


# -- reporting -----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import cryptography

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "os": platform.platform(),
        "load_generator": "wrk" if shutil.which("wrk") else "Python keep-alive client",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


EXPLAIN = {
    "subject token verify": "A 2048-bit RS256 verify takes about 15 µs here, so 1.2x leaves 3 µs for everything "
    "else; Python's own call and object costs for splitting the token, decoding two segments and looking up the "
    "key come to about twice that, even with C-speed base64 and orjson. Our own tokens (ES256, verified on every "
    "API call that misses the cache) meet the goal; RS256 subject tokens are verified once per exchange.",
    "exchange in-process": "The exchange parses the form, verifies, matches Roles, mints and writes an audit line; "
    "what remains over the floor is mostly our template's per-request work (reading the body, the catch-all "
    "route, formatting the response) that a bare Flask view does not do.",
    "exchange p99 during": "By default (config_reload: process) the parse runs in a child process and the "
    "function only unpickles the result (about 0.5 s of Python-level work, which lets request threads in every "
    "5 ms switch interval): what is left is CPU, the child taking one of 2 shared cores. With config_reload: "
    "thread the parse shares the GIL: a request thread waits for the loader's switch interval, or for one long C "
    "call (gzip and json.loads of 5 MiB): 20-45 ms p99 (docs/scaling.md).",
    "/authorize rate, 2 replicas": "The load generator runs on the same 2 cores as the replicas: one replica "
    "already takes about one core and the clients most of the other, so a second replica has little CPU to "
    "gain; on a machine with spare cores (or with the clients elsewhere) replicas scale with cores, as each is "
    "one process with no shared lock (Redis is not on this path).",
    "iam-token RSS": "The limit in stack.yml (128Mi) is below this configuration's footprint: raise limits.memory "
    "for configurations this large (the figure above is the measured need).",
    "/authorize rate": "Close to the goal: across runs on this shared 2-core machine the ratio moves between "
    "about 0.73x and 0.83x at either concurrency. The gap is the template's per-request work (about 20 µs: body "
    "read, catch-all route, response formatting) plus the decision itself (about 6 µs), on top of waitress.",
}


def bench_policy_tools() -> None:
    """`who-can`, `diff` and `test` on 10,000 Roles and Policies: well under a second (issue 18)."""
    from openfaas_iam.engine.policy_tools import diff_configs, run_tests, who_can
    from openfaas_iam.model.loading import load_mapping_documents

    base: list[dict[str, Any]] = [
        {
            "apiVersion": "iam.openfaas.com/v1",
            "kind": "JwtIssuer",
            "metadata": {"name": "idp"},
            "spec": {"iss": "https://idp.example.com", "aud": ["openfaas"]},
        }
    ]
    old = load_mapping_documents(large_documents(base, 10, 10_000, 10_000), "old")
    changed = large_documents(base, 10, 10_000, 10_000)
    first_policy = next(i for i, d in enumerate(changed) if d["kind"] == "Policy")
    changed[first_policy]["spec"]["statement"][0]["resource"].append("prod:*")  # one Policy grants more
    new = load_mapping_documents(changed, "new")
    case = {"claims": {"iss": "https://idp.example.com", "sub": "user-42"}, "expect": []}
    case["expect"] = [{"action": "Function:Get", "resource": "team-42:api", "allowed": True}]

    def timed(fn: Callable[[], Any]) -> float:
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1000

    rows = [
        ("who-can Function:Delete team-42:api, 10,000 Roles", lambda: who_can(old, "Function:Delete", "team-42:api")),
        ("diff of two 10,000-Role configurations", lambda: diff_configs(old, new)),
        ("test: 100 cases on 10,000 Roles", lambda: run_tests(old, [case] * 100)),
    ]
    for name, fn in rows:
        ms = min(timed(fn) for _ in range(3))
        RESULTS.append({"benchmark": name, "ours": ms, "unit": "ms", "goal": "< 1000 ms", "met": ms < 1000, "note": ""})
        say(f"{name}: {ms:.0f} ms")


def merge_kept_results() -> None:
    """With --only: the rows of the last full run that this run did not measure, kept in their place."""
    path = ROOT / "docs" / "performance.json"
    if not path.exists():
        return
    fresh = {r["benchmark"]: r for r in RESULTS}
    merged = [fresh.pop(r["benchmark"], r) for r in json.loads(path.read_text())["results"]]
    RESULTS[:] = merged + list(fresh.values())


def write_reports(m: dict[str, str]) -> None:
    (ROOT / "docs" / "performance.json").write_text(json.dumps({"machine": m, "results": RESULTS}, indent=2) + "\n")
    rows = []
    for r in RESULTS:
        other = r.get("baseline", r.get("hello-world", r.get("start")))
        ratio = f"{r['ratio']:.2f}x" if "ratio" in r else ""
        met = "" if "met" not in r else ("met" if r["met"] else "**missed**")
        theirs = f"{other:.1f}" if isinstance(other, (int, float)) else ""
        rows.append(
            f"| {r['benchmark']} | {r['ours']:.1f} | {theirs} | {r['unit']} | {ratio} | {r.get('goal', '')} | {met} "
            f"| {r.get('note', '')} |"
        )
    md = f"""# Performance

Latest `make bench` results. Every ratio compares two things measured side by side in the
same run on the same machine (alternating rounds, medians), so machine noise cancels out
as far as it can; absolute numbers are for orientation only.

Machine: {m["cpu"]}, {m["cores"]} cores; Python {m["python"]}, cryptography {m["cryptography"]};
{m["os"]}; HTTP load by {m["load_generator"]}; {m["date"]}.

| benchmark | ours | baseline | unit | ratio | goal | | note |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

## How to reproduce

```bash
make bench            # a few minutes; rewrites this file and docs/performance.json
```

## Where a goal is missed, and why

{{misses}}

## What the numbers mean

- **Decisions vs pycasbin**: the same rules (RBAC, wildcard resources, deny-override) in both
  engines, which must agree on every request before anything is timed. Ours includes the
  cached token look-up.
- **Scaling**: policies are indexed by name, then by action, so a decision reads only the
  token's own policies: 10,000 unrelated policies cost nothing per decision.
- **Verification floor**: a bare `cryptography` verify of the same signature bytes. Our
  verification uses `cryptography` directly (openfaas_iam/jose/jws.py): strict base64url in C
  and one JSON parse per segment; PyJWT's pure-Python checks cost more than the RS256
  signature itself, so it is used only where speed does not matter.
- **HTTP**: `/authorize` is one function process (our template: Flask on waitress, 8
  threads) against a minimal Flask app under the same waitress settings, same client.
- **Reloads**: the p99 rows time exchanges and decisions while a 10,000-Role configuration
  reloads from the file source the functions use, with `config_reload` as in the environment
  (the functions' default, `process`: parsed in a child process and unpickled in the function).
  With `config_reload=thread` in alternate runs on this machine: exchange p99 20.6, 44.5 and
  36.6 ms during a reload (24-78x steady), vs 8.8 (before the child's exit and import trims),
  0.98 and 0.61 ms (1.1-1.7x) with the child; the RSS peak 150 MiB vs 204 MiB (function plus
  child, both counted against the container's limit). docs/scaling.md has the breakdown.
"""
    missed = [r for r in RESULTS if r.get("met") is False]
    lines = []
    for r in missed:
        why = next((v for k, v in EXPLAIN.items() if r["benchmark"].startswith(k)), "")
        lines.append(
            f"- **{r['benchmark']}** ({r['ratio']:.2f}x, goal {r['goal']}): {why} {r.get('note', '')}".rstrip()
        )
    misses = "\n".join(lines) or "None: every goal held in this run."
    # Sections other tools write (make scale) are kept as they are.
    path = ROOT / "docs" / "performance.md"
    kept = ""
    if path.exists():
        old = path.read_text()
        start, end = old.find("<!-- scale:begin -->"), old.find("<!-- scale:end -->")
        if start != -1 and end != -1:
            kept = "\n" + old[start : end + len("<!-- scale:end -->")] + "\n"
    path.write_text(md.replace("{misses}", misses) + kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench", description="Measure openfaas-iam against its floor and its peers; write docs/performance.md."
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each HTTP load run (default 4)")
    parser.add_argument("--skip-http", action="store_true", help="skip the HTTP and memory benchmarks")
    parser.add_argument(
        "--only",
        type=lambda v: {int(x) for x in v.split(",")},
        default=None,
        metavar="N[,N...]",
        help="run only these sections (1-9; 1-3 and the policy tools run together as 1, 5 and 6 as 5); "
        "their rows replace the same rows in docs/performance.md and .json, the others are kept",
    )
    args = parser.parse_args(argv)
    only: set[int] = args.only or set(range(1, 10))
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    idp = IdpStandIn()
    try:
        if only & {1, 2, 3}:
            bench_casbin()
            bench_scaling()
            bench_policy_tools()
            bench_verification()
        if 4 in only:
            bench_exchange_in_process(tmp, idp)
        reload_s = bench_large(tmp, idp) if 7 in only else 5.0
        if not args.skip_http:
            if only & {5, 6}:
                bench_http(tmp, idp, args.seconds)
            if 8 in only:
                bench_large_processes(tmp, idp, args.seconds, reload_s)
            if 9 in only:
                bench_replicas(tmp, idp, args.seconds)
    finally:
        idp.server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    m = machine()
    if args.only:
        merge_kept_results()
    write_reports(m)
    print()
    print(f"{'benchmark':<52} {'ours':>12} {'baseline':>12} {'ratio':>8}  goal")
    for r in RESULTS:
        other = r.get("baseline", r.get("hello-world", r.get("start")))
        print(
            f"{r['benchmark']:<52} {r['ours']:>12.1f} {(f'{other:.1f}' if isinstance(other, float) else ''):>12} "
            f"{(str(round(r['ratio'], 2)) + 'x') if 'ratio' in r else '':>8}  {r.get('goal', '')} "
            f"{'' if 'met' not in r else ('met' if r['met'] else 'MISSED')}"
        )
    print("\nwritten: docs/performance.md, docs/performance.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
