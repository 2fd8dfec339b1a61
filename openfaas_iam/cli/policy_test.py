"""`openfaas-iam test`: policy tests as data, next to the IAM YAML, run in CI like any test suite."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import yaml

from openfaas_iam.engine.policy_tools import CaseResult, TestFileError, run_tests
from openfaas_iam.errors import ConfigError
from openfaas_iam.model.loading import load_paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "test",
        help="run policy tests (identities by claims, expected Roles and decisions)",
        description="Run policy tests written as data. A test file is YAML: `tests:` a list of cases, each with "
        "`name`, `claims` (the IdP token's claims: iss, sub, groups, ...), optional `roles` (exactly the Roles "
        "that must match) and `expect`: a list of {action, resource, allowed: true|false, by: policy/sid}. "
        "Prints pass/fail per case and a summary; a failing case is explained like `simulate`. "
        "Exit 0 when every case passes, 1 when one fails, 2 on bad input.",
    )
    p.add_argument("tests", nargs="+", metavar="TESTFILE", help="test files (YAML)")
    p.add_argument("--config", required=True, nargs="+", metavar="FILE", help="IAM documents (files or folders)")
    p.add_argument("--format", choices=["text", "junit"], default="text", help="text, or JUnit XML for CI systems")
    p.set_defaults(run=run)


def junit(results: list[tuple[str, CaseResult]], seconds: float) -> str:
    failures = sum(1 for _, r in results if not r.passed)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuite name="openfaas-iam policy tests" tests="{len(results)}" failures="{failures}" '
        f'time="{seconds:.3f}">',
    ]
    for file, r in results:
        out.append(f"  <testcase classname={quoteattr(file)} name={quoteattr(r.name)}>")
        if not r.passed:
            text = "\n".join(r.failures + r.explanation)
            out.append(f"    <failure message={quoteattr(r.failures[0])}>{escape(text)}</failure>")
        out.append("  </testcase>")
    out.append("</testsuite>")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        config = load_paths(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    results: list[tuple[str, CaseResult]] = []
    for file in args.tests:
        try:
            doc = yaml.safe_load(Path(file).read_text())
            cases = doc.get("tests") if isinstance(doc, dict) else None
            if not isinstance(cases, list):
                raise TestFileError("expected a mapping with `tests:`, a list of cases")
            results += [(file, r) for r in run_tests(config, cases)]
        except (OSError, yaml.YAMLError, TestFileError) as e:
            print(f"openfaas-iam test: {file}: {e}", file=sys.stderr)
            return 2
    failed = [r for _, r in results if not r.passed]
    if args.format == "junit":
        print(junit(results, time.perf_counter() - started))
        return 1 if failed else 0
    for file, r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name}  ({file})")
        for f in r.failures:
            print(f"      {f}")
        for line in r.explanation:
            print(f"        {line}")
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
