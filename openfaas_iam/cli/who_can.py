"""`openfaas-iam who-can ACTION RESOURCE`: which Roles can, through which statement, and what cuts it back."""

from __future__ import annotations

import argparse
import json
import sys

from openfaas_iam.engine.policy_tools import who_can
from openfaas_iam.errors import ConfigError
from openfaas_iam.model.loading import load_paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "who-can",
        help="which Roles can perform an action on a resource, and through which statement",
        description="Answer from the configuration alone: every Role whose Policies allow ACTION (a name or a "
        "pattern such as Function:*) on RESOURCE (openfaas-fn:api, openfaas-fn:*, *), the statements that "
        "allow it, the Deny statements that cut it back, and the claims a token needs to earn each Role. "
        "Verdict: yes (any token of the Role), depends (on the token's claims), no. Exit 0 when some Role "
        "can, 1 when none can, 2 on bad input.",
    )
    p.add_argument("action", help="e.g. Function:Delete, Secret:Mount, Function:*")
    p.add_argument("resource", help="e.g. openfaas-fn:api, openfaas-fn:team-a-*, *")
    p.add_argument("--config", required=True, nargs="+", metavar="FILE", help="IAM documents (files or folders)")
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format (default: text)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_paths(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    try:
        access = who_can(config, args.action, args.resource)
    except ValueError as e:
        print(f"openfaas-iam who-can: {e}", file=sys.stderr)
        return 2
    can = [a for a in access if a.verdict != "no"]
    if args.format == "json":
        print(json.dumps({"action": args.action, "resource": args.resource, "roles": [a.to_json() for a in access]}))
        return 0 if can else 1
    print(f"who can {args.action} on {args.resource}")
    if not access:
        print("  no Role: no statement of any Role's Policies allows it")
    for a in access:
        print(f"\n  {a.verdict.upper():<8} Role {a.role}  (tokens with {a.matches})")
        for g in a.allows:
            when = f" when {g.condition}" if g.condition else ""
            print(f"    allow  {g.policy}/{g.sid} on {', '.join(g.resources)}{when}")
        for g in a.denies:
            when = f" when {g.condition}" if g.condition else ""
            print(f"    deny   {g.policy}/{g.sid} on {', '.join(g.resources)}{when}")
    return 0 if can else 1
