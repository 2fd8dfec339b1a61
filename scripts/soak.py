"""`make soak`: a fixed-rate mixed load on loopback for a set time; errors, latency and memory.

The load is open-loop: requests are started on a fixed schedule whatever the previous ones
are doing, so a slowdown shows up as latency instead of hiding as a lower rate. The mix is
token exchanges, decisions and proxied API calls. Everything goes to 127.0.0.1 and stops by
itself. Writes its figures into docs/reliability.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import requests  # noqa: E402
from bundle_harness import EXCHANGE, ID_TOKEN, start_bundle  # noqa: E402
from reliability_report import update_section  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="soak", description="Fixed-rate mixed load on the bundle, on loopback.")
    parser.add_argument("--seconds", type=float, default=120, help="duration (default 120)")
    parser.add_argument("--rate", type=float, default=60, help="requests per second, all kinds together (default 60)")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    print("starting the bundle (IdP, local gateway, gateway stand-in)...", file=sys.stderr, flush=True)
    bundle = start_bundle(tmp)
    base = bundle.base
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return local.s

    api_headers = {"Authorization": f"Bearer {bundle.tokens['api']}"}
    form = {"grant_type": EXCHANGE, "subject_token": bundle.tokens["idp"], "subject_token_type": ID_TOKEN}

    def do_exchange() -> int:
        return session().post(f"{base}/function/iam-token/oauth/token", data=form, timeout=10).status_code

    def do_authorize() -> int:
        body = [{"action": "Function:Get", "resource": "dev:fn"}, {"action": "Function:Delete", "resource": "prod:fn"}]
        return (
            session()
            .post(f"{base}/function/iam-authz/authorize", json=body, headers=api_headers, timeout=10)
            .status_code
        )

    def do_proxy() -> int:
        url = f"{base}/function/iam-authz/system/functions"
        return session().get(url, params={"namespace": "dev"}, headers=api_headers, timeout=10).status_code

    mix = [("exchange", do_exchange)] * 2 + [("authorize", do_authorize)] * 2 + [("proxy", do_proxy)]
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    lock = threading.Lock()

    def run(kind: str, fn) -> None:
        start = time.perf_counter()
        try:
            status = fn()
        except requests.RequestException:
            status = -1
        elapsed = (time.perf_counter() - start) * 1000
        with lock:
            latencies[kind].append(elapsed)
            if status != 200:
                errors[kind] += 1

    pids = {p.fn.name: p.proc.pid for p in bundle.gw.processes if p.proc}
    for _ in range(50):  # warm-up before the memory baseline
        for _, fn in mix:
            fn()
    rss_start = {name: rss_mib(pid) for name, pid in pids.items()}
    interval = 1.0 / args.rate
    total = int(args.seconds * args.rate)
    print(f"soaking: {args.rate:g} req/s for {args.seconds:g} s ({total} requests)", file=sys.stderr, flush=True)
    start = time.monotonic()
    late = 0
    with ThreadPoolExecutor(max_workers=64) as pool:
        for i in range(total):
            due = start + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.05:
                late += 1
            kind, fn = mix[i % len(mix)]
            pool.submit(run, kind, fn)
            if i and i % int(args.rate * 30) == 0:
                print(
                    f"  {time.monotonic() - start:5.0f} s: {i} sent, errors {sum(errors.values())}",
                    file=sys.stderr,
                    flush=True,
                )
    elapsed = time.monotonic() - start
    rss_end = {name: rss_mib(pid) for name, pid in pids.items()}
    bundle.stop()

    sent = sum(len(v) for v in latencies.values())
    rows = []
    for kind in ("exchange", "authorize", "proxy"):
        lat = latencies[kind]
        p50, p99 = statistics.median(lat), percentile(lat, 99)
        rows.append(f"| {kind} | {len(lat)} | {errors[kind]} | {p50:.1f} | {p99:.1f} | {max(lat):.1f} |")
    mem = ", ".join(
        f"{n} {rss_start[n]:.1f} -> {rss_end[n]:.1f} MiB ({(rss_end[n] / rss_start[n] - 1) * 100:+.1f}%)" for n in pids
    )
    held = late / total * 100
    failed = sum(errors.values())
    summary = f"{sent} requests at {args.rate:g}/s for {elapsed:.0f} s; errors {failed}; started late: {held:.1f}%"
    print("\n" + summary)
    print("\n".join(rows))
    print("memory: " + mem)
    update_section(
        "soak",
        f"""{summary}.

| kind | requests | errors | p50 ms | p99 ms | max ms |
|---|---|---|---|---|---|
{chr(10).join(rows)}

Resident memory of each function process, after warm-up -> at the end: {mem}.
""",
    )
    return 1 if sum(errors.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
