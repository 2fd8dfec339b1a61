"""`openfaas-iam lint FILE...`: every problem in a set of IAM documents, located."""

from __future__ import annotations

import argparse
import sys

from ..advice import advise
from ..errors import ConfigError
from ..loading import load_paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lint",
        help="check JwtIssuer, Policy and Role documents",
        description="Check iam.openfaas.com/v1 documents (YAML or JSON; files or folders). "
        "Prints every problem with its file, document, object and field, and exits 1 if there is any. "
        "Warnings (documents that load but may not do what they seem to) are printed too; they do not fail "
        "unless --strict is given.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML/JSON files or folders of them")
    p.add_argument("-q", "--quiet", action="store_true", help="print problems and warnings only, no summary")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_paths(args.files)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        if not args.quiet:
            print(f"\n{len(e.problems)} problem(s) found", file=sys.stderr)
        return 1
    warnings = advise(config)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not args.quiet:
        summary = f"{len(config.issuers)} issuer(s), {len(config.policies)} policy(ies), {len(config.roles)} role(s)"
        print(f"ok: {summary}" + (f", {len(warnings)} warning(s)" if warnings else ""))
    return 1 if warnings and args.strict else 0
