"""`openfaas-iam simulate`: explain a decision offline, from IAM documents and a token's claims."""

from __future__ import annotations

import argparse
import json
import sys

import jwt

from openfaas_iam.engine.simulate import simulate
from openfaas_iam.errors import ConfigError
from openfaas_iam.model.loading import load_paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="explain which role, policy and statement decide a request",
        description="Explain, offline, what openfaas-iam would decide for a token. --claims is a JSON file of the "
        "IdP token's claims (or a JWT, decoded without verification, or an OpenFaaS token, whose policy claim is "
        "used as is). Exits 0 when allowed, 1 when denied, 2 on bad input.",
    )
    p.add_argument(
        "--config", required=True, nargs="+", metavar="FILE", help="IAM documents (YAML/JSON files or folders)"
    )
    p.add_argument(
        "--claims", required=True, metavar="FILE", help="token claims as JSON, or a JWT (- for standard input)"
    )
    p.add_argument("--action", required=True, help="e.g. Function:Create, Secret:List, Secret:Mount")
    p.add_argument("--resource", required=True, help="e.g. staging:env, staging:*, *")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON")
    p.set_defaults(run=run)


def _claims(path: str) -> dict:
    if path == "-":
        text = sys.stdin.read().strip()
    else:
        with open(path) as f:
            text = f.read().strip()
    if text.count(".") == 2 and not text.startswith("{"):
        return jwt.decode(text, options={"verify_signature": False})
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("the claims must be a JSON object")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        config = load_paths(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    try:
        claims = _claims(args.claims)
    except (OSError, ValueError, jwt.PyJWTError) as e:
        print(f"openfaas-iam simulate: cannot read claims from {args.claims}: {e}", file=sys.stderr)
        return 2
    sim = simulate(config, claims, args.action, args.resource)
    if args.json:
        print(json.dumps(sim.to_json(), indent=2))
        return 0 if sim.decision.allowed else 1
    d = sim.decision
    print(f"subject   {claims.get('sub')}  (issuer {claims.get('fed:iss') or claims.get('iss')})")
    if sim.from_token:
        print("policies  from the OpenFaaS token: " + (", ".join(sim.policies) or "none"))
    else:
        print("\nroles")
        for r in sim.roles:
            mark = "match" if r.matched else "no   "
            print(f"  {mark}  {r.name:<24} -> {', '.join(r.policies)}")
            for why in r.why_not:
                print(f"           {why}")
        print(
            "\npolicies  "
            + (", ".join(sim.policies) or "none (the exchange would fail: No policies found for subject)")
        )
    print("\nstatements")
    for s in sim.statements:
        state = "APPLIES" if s.applies else "skip   "
        detail = []
        if not s.action_matches:
            detail.append(f"action {d.action} not granted")
        if not s.resource_matches:
            detail.append(f"resource {d.resource} not covered")
        if not s.condition_holds:
            detail.append("condition fails: " + "; ".join(s.failing_conditions))
        print(f"  {state} {s.policy}/{s.sid} ({s.effect})" + (f"  - {', '.join(detail)}" if detail else ""))
        for note in s.notes:
            print(f"           note: {note}")
    print(f"\ndecision  {'ALLOW' if d.allowed else 'DENY'} {d.action} on {d.resource}: {d.reason}")
    return 0 if d.allowed else 1
