"""`openfaas-iam lint FILE...`: every problem in a set of IAM documents, located, in document order."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from openfaas_iam.errors import ConfigError, Problem
from openfaas_iam.model.advice import advise
from openfaas_iam.model.loading import load_paths

OK, PROBLEMS, USAGE = 0, 1, 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lint",
        help="check JwtIssuer, Policy and Role documents",
        description="Check iam.openfaas.com/v1 documents (YAML or JSON; files or folders). "
        "Prints every problem (every bad entry of every list, not only the first) with its file, document, "
        "object and field, in document order, with a did-you-mean for misspelt fields, actions and condition "
        "operators. Warnings (documents that load but may not do what they seem to) are printed too; they do "
        "not fail unless --strict is given.",
        epilog="exit codes:\n"
        "  0  no problems (warnings allowed unless --strict)\n"
        "  1  problems found (or warnings with --strict)\n"
        "  2  usage error, or a FILE that does not exist\n"
        "\n"
        "--format json prints one object for CI:\n"
        '  {"ok": false, "problems": [{"file", "document", "object", "field", "message"}],\n'
        '   "warnings": ["..."], "summary": {"issuers", "policies", "roles"} or null}',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML/JSON files or folders of them")
    p.add_argument("-q", "--quiet", action="store_true", help="print problems and warnings only, no summary")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text (default; problems on standard error) or json (one object on standard output, for CI)",
    )
    p.set_defaults(run=run)


def problem_json(p: Problem) -> dict[str, Any]:
    return {"file": p.source, "document": p.document, "object": p.object, "field": p.field, "message": p.message}


def run(args: argparse.Namespace) -> int:
    missing = [f for f in args.files if not Path(f).exists()]
    if missing:
        for f in missing:
            print(f"openfaas-iam lint: no such file or folder: {f}", file=sys.stderr)
        return USAGE
    problems: list[Problem] = []
    warnings: list[str] = []
    summary: dict[str, int] | None = None
    try:
        config = load_paths(args.files)
    except ConfigError as e:
        problems = list(e.problems)
    else:
        warnings = advise(config)
        summary = {"issuers": len(config.issuers), "policies": len(config.policies), "roles": len(config.roles)}
    failed = bool(problems) or (bool(warnings) and args.strict)
    if args.format == "json":
        out = {
            "ok": not failed,
            "problems": [problem_json(p) for p in problems],
            "warnings": warnings,
            "summary": summary,
        }
        print(json.dumps(out, indent=2))
        return PROBLEMS if failed else OK
    for problem in problems:
        print(problem, file=sys.stderr)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not args.quiet:
        if problems:
            print(f"\n{len(problems)} problem(s) found", file=sys.stderr)
        else:
            assert summary is not None
            text = f"{summary['issuers']} issuer(s), {summary['policies']} policy(ies), {summary['roles']} role(s)"
            print(f"ok: {text}" + (f", {len(warnings)} warning(s)" if warnings else ""))
    return PROBLEMS if failed else OK
