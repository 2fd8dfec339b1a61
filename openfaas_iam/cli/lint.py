"""`openfaas-iam lint FILE...`: every problem in a set of IAM documents, located."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from ..loading import load_paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lint",
        help="check JwtIssuer, Policy and Role documents",
        description="Check iam.openfaas.com/v1 documents (YAML or JSON; files or folders). "
        "Prints every problem with its file, document, object and field, and exits 1 if there is any.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML/JSON files or folders of them")
    p.add_argument("-q", "--quiet", action="store_true", help="print problems only, no summary")
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
    if not args.quiet:
        print(f"ok: {len(config.issuers)} issuer(s), {len(config.policies)} policy(ies), {len(config.roles)} role(s)")
    return 0
