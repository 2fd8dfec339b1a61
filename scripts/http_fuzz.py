"""`make fuzz`: at least 100,000 generated requests against every function behind the local gateway.

Invariants: never a 5xx, never a hang (a request over the time limit counts as one), never an
allow that the policy does not grant (checked for every /authorize made with a valid token).
Traffic goes to 127.0.0.1 only; the run is bounded in count. Writes its figures into
docs/reliability.md.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import requests  # noqa: E402
from bundle_harness import start_bundle  # noqa: E402
from fuzz.http_cases import random_case, send  # noqa: E402
from reliability_report import update_section  # noqa: E402

from openfaas_iam.model.actions import ACTIONS  # noqa: E402

TIMEOUT = 10.0


def allowed_by_policy(check: dict[str, str]) -> bool:
    """What tests/bundle_harness.py's policy grants, read plainly."""
    action, resource = check["action"].lower(), check["resource"]
    parts = resource.split(":")
    well_formed = resource == "*" or (len(parts) == 2 and all(parts))
    if action == "system:info":  # granted on "*", which covers every resource
        return well_formed
    return well_formed and parts[0] == "dev" and action in KNOWN


# Every concrete Function and Secret action: what Function:* and Secret:* grant.
KNOWN = {a.lower() for a in ACTIONS if a.startswith(("Function:", "Secret:"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fuzz", description="Fuzz every function of the bundle over HTTP on loopback."
    )
    parser.add_argument("--requests", type=int, default=100_000, help="how many requests (default 100,000)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="fuzz-"))
    print("starting the bundle (IdP, local gateway, gateway stand-in)...", file=sys.stderr, flush=True)
    bundle = start_bundle(tmp)
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    lock = threading.Lock()
    next_index = iter(range(args.requests))
    done = [0]
    start = time.monotonic()

    def worker(n: int) -> None:
        rng = random.Random(args.seed * 1000 + n)
        session = requests.Session()
        for _ in next_index:
            case = random_case(rng, bundle.tokens)
            try:
                resp = send(session, bundle.base, case, timeout=TIMEOUT)
                status = resp.status_code
                wrong = (
                    case.check is not None
                    and status == 200
                    and resp.json().get("allowed")
                    and not allowed_by_policy(case.check)
                )
            except requests.exceptions.Timeout:
                status, wrong = -1, False
            except requests.exceptions.RequestException as e:
                status, wrong = -2, False
                with lock:
                    problems.append(f"{case.method} {case.function}{case.path}: connection error {type(e).__name__}")
            with lock:
                statuses[status] += 1
                done[0] += 1
                if status >= 500 or status == -1:
                    detail = "timeout" if status == -1 else f"{status} {resp.text[:200]}"
                    problems.append(f"{case.method} {case.function}{case.path} {case.headers} -> {detail}")
                if wrong:
                    problems.append(f"wrong allow: {case.check}")
                if done[0] % 10_000 == 0:
                    rate = done[0] / (time.monotonic() - start)
                    print(
                        f"  {done[0]:>7} requests, {rate:.0f}/s, problems so far: {len(problems)}",
                        file=sys.stderr,
                        flush=True,
                    )

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.workers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        bundle.stop()
    elapsed = time.monotonic() - start
    server_errors = sum(c for s, c in statuses.items() if s >= 500)
    hangs = statuses.get(-1, 0)
    wrong_allows = sum(1 for p in problems if p.startswith("wrong allow"))
    summary = (
        f"{done[0]} requests in {elapsed:.0f} s ({done[0] / elapsed:.0f}/s, {args.workers} clients, seed {args.seed}): "
        f"5xx {server_errors}, hangs {hangs}, wrong allows {wrong_allows}"
    )
    print("\n" + summary)
    print("statuses: " + ", ".join(f"{s}: {c}" for s, c in sorted(statuses.items())))
    for p in problems[:20]:
        print("  problem:", p)
    update_section(
        "fuzz",
        f"""{summary}.

Status codes seen: {", ".join(f"`{s}` {c}" for s, c in sorted(statuses.items()))}.
Every function gets random methods, paths (including `..`, encoded slashes, unknown API
paths), headers (valid, foreign and malformed credentials) and bodies (forms with
duplicate and hostile fields, JSON up to thousands of levels deep, random bytes).
""",
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
