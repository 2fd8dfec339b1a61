"""`openfaas-iam`: one command line for linting, simulating, keys and sign-in."""

from __future__ import annotations

import argparse
import sys

from openfaas_iam.cli import auth, diff, keys, lint, policy_test, simulate, who_can


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openfaas-iam",
        description="Identity and Access Management for OpenFaaS Community Edition.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    lint.register(sub)
    keys.register(sub)
    simulate.register(sub)
    who_can.register(sub)
    diff.register(sub)
    policy_test.register(sub)
    auth.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
