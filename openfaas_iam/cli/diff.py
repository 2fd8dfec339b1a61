"""`openfaas-iam diff OLD NEW`: what access changes between two configurations, Role by Role."""

from __future__ import annotations

import argparse
import json
import sys

from openfaas_iam.engine.policy_tools import ConfigDiff, diff_configs
from openfaas_iam.errors import ConfigError
from openfaas_iam.model.loading import load_paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diff",
        help="what access changes between two IAM configurations (for a pull request)",
        description="Compare two configurations (files or folders): issuers and Roles added, removed or "
        "changed, and per Role the grants and denials that appear or go. Exact for statements without "
        "conditions or variables; where a free-form claim decides, the change is listed and marked "
        "approximate. --format markdown suits a pull-request comment. Exit 0 when nothing changes, 1 when "
        "access changes, 2 on bad input.",
    )
    p.add_argument("old", metavar="OLD", help="the current configuration (a file or a folder)")
    p.add_argument("new", metavar="NEW", help="the proposed configuration (a file or a folder)")
    p.add_argument("--format", choices=["text", "json", "markdown"], default="text", help="output format")
    p.set_defaults(run=run)


def render(d: ConfigDiff, markdown: bool = False) -> str:
    bullet = "- " if markdown else "  "
    lines: list[str] = []
    title = "### " if markdown else ""
    for label, items in (
        ("issuers added", d.issuers_added),
        ("issuers removed", d.issuers_removed),
        ("issuers changed", d.issuers_changed),
        ("Roles added", d.roles_added),
        ("Roles removed", d.roles_removed),
    ):
        if items:
            lines.append(f"{label}: {', '.join(items)}")
    for r in d.roles:
        lines.append(f"\n{title}Role {r.role}")
        if r.matches_changed:
            lines.append(f"{bullet}matches other tokens: {r.matches_changed}")
        for label, items in (
            ("+ allowed", r.now_allowed),
            ("- no longer allowed", r.no_longer_allowed),
            ("+ denied", r.now_denied),
            ("- no longer denied", r.no_longer_denied),
        ):
            for item in items:
                lines.append(f"{bullet}{label}: {item}")
        for note in r.approximate:
            lines.append(f"{bullet}approximate: {note}")
    return "\n".join(lines).strip() or "no change in access"


def run(args: argparse.Namespace) -> int:
    try:
        old = load_paths([args.old])
        new = load_paths([args.new])
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    d = diff_configs(old, new)
    if args.format == "json":
        print(json.dumps(d.to_json()))
    else:
        print(render(d, markdown=args.format == "markdown"))
    return 1 if not d.empty() else 0
