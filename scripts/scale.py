"""`make scale`: replicas under fixed-rate load while every key rotates and Redis restarts.

Several iam-token and iam-authz replicas (default 3 + 3; one of the others) run behind `make
run`'s local gateway with a Redis of our own and the real test OpenID Provider. An open-loop
load (a fixed schedule, so a stall shows as latency or failures rather than a lower rate)
mixes token exchanges at iam-token with decisions and whoami at iam-authz, while:

- the bundle's own signing keys rotate (forced through iam-rotate with the admin password,
  with the mount allowance and JWKS max-age small, as tests/e2e/test_rotation_live.py does);
- the IdP's key rotates the way an IdP operator does it: stage (published, not signing), the
  cron prefetch (iam-discovery POST /, as cron-connector calls it), activate (signing), retire;
- Redis is stopped and started again once.

It prints progress and a summary (requests, failures by endpoint/phase/error, p50/p99 per
endpoint, IdP JWKS fetches per phase) and exits 1 when any request failed. Only loopback;
bounded in time; everything it started is stopped by its pid. `--calibrate` instead measures
the cost of each request kind (CPU per request in the function processes, Redis commands per
request), the figures docs/scaling.md builds its capacity model from.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import jwt  # noqa: E402
import redis  # noqa: E402
import requests  # noqa: E402
from idp_server import OidcProvider, private_jwk  # noqa: E402

from localgw.main import LocalGateway, free_port  # noqa: E402

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
NAMESPACE = "openfaas-fn"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"


def log(message: str) -> None:
    """Progress goes to stderr, so the summary on stdout stays clean to paste."""
    print(message, file=sys.stderr, flush=True)


class RedisServer:
    """A redis-server of our own on a free port: ours to stop and start again mid-run."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        # No persistence: a restart loses every entry, the harshest case for the bundle.
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C reaches us, and we stop it ourselves
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def commands(self) -> int:
        """Commands Redis has processed since it started (the INFO call itself included)."""
        return int(self.client().info("stats")["total_commands_processed"])


def documents(iss: str) -> list[dict[str, Any]]:
    """One issuer, one Policy, one Role: the per-request path, not configuration size, is measured here."""

    def obj(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "iam.openfaas.com/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}

    return [
        obj("JwtIssuer", "idp", {"iss": iss, "aud": ["https://gateway.test"], "tokenExpiry": "10m"}),
        obj(
            "Policy",
            "dev-rw",
            {
                "statement": [
                    {"sid": "rw", "effect": "Allow", "action": ["Function:*"], "resource": ["dev:*"]},
                    {"sid": "no-prod", "effect": "Deny", "action": ["*"], "resource": ["prod:*"]},
                ]
            },
        ),
        obj("Role", "loader", {"policy": ["dev-rw"], "principal": {"jwt:sub": ["loader"]}}),
    ]


@dataclass
class Stack:
    """Everything one run started, each stopped by its own handle (pid), never by name."""

    idp: OidcProvider
    redis: RedisServer
    gw: LocalGateway
    admin: tuple[str, str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.gw.port}"


@contextmanager
def running(tmp: Path, token_replicas: int, authz_replicas: int) -> Iterator[Stack]:
    """Redis, the IdP and the bundle behind the local gateway; all of it stopped on the way out."""
    started: list[Callable[[], None]] = []
    try:
        server = RedisServer()
        server.start()
        started.append(server.stop)
        idp = OidcProvider(free_port(), keys=[private_jwk("RS256", "idp-key-1"), private_jwk("ES256")])
        idp.start()
        started.append(idp.stop)
        (tmp / "iam.json").write_text(json.dumps(documents(idp.issuer)))
        gw = LocalGateway(
            ROOT / "stack.yml",
            port=free_port(),
            iam_config=tmp / "iam.json",
            state_dir=tmp / "state",
            build_dir=tmp / "build",
            env={"REDIS_URL": server.url, "LOCAL_SECRET_SYNC_DELAY": "0.3"},
            function_env={
                "leeway_seconds": "1",
                # Own keys rotate within seconds: the late mount (0.3 s) + the functions' once-a-second
                # stat of their mounts, and clients may not cache the JWKS (as test_rotation_live).
                "mount_sync_allowance": "1.5",
                "own_jwks_max_age": "0",
                "redis_prefix": f"scale-{uuid.uuid4().hex[:6]}:",
            },
            cron=False,  # the run plays cron-connector itself, at the moments that matter
            template_root=ROOT / "template",
            echo=False,
            replicas=1,
        )
        gw.start()
        started.append(gw.stop)
        for name, count in (("iam-token", token_replicas), ("iam-authz", authz_replicas)):
            if count != 1:
                gw.scale(NAMESPACE, name, count)
        user, password = gw.secrets.admin() or ("", "")
        yield Stack(idp, server, gw, (user, password))
    finally:
        for stop in reversed(started):
            stop()


# -- the load ---------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Failure:
    at: float
    endpoint: str
    phase: str
    status: int
    error: str
    detail: str


@dataclass
class Tally:
    """What the load saw, shared by the worker threads under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: list[Failure] = field(default_factory=list)
    per_phase: Counter[str] = field(default_factory=Counter)
    idp_kids: Counter[str] = field(default_factory=Counter)


class Load:
    """The request kinds, the tokens they carry, and the running tally."""

    def __init__(self, stack: Stack, started: float) -> None:
        self.stack = stack
        self.started = started
        self.tally = Tally()
        self.phase = "steady"
        self.local = threading.local()
        self.subject = stack.idp.mint({"sub": "loader"}, ttl=600)
        # iam-authz is asked with the latest token iam-token issued, so tokens signed by each new
        # bundle key reach every iam-authz replica while keys rotate.
        self.access = self.exchange_token()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "s"):
            self.local.s = requests.Session()
        return self.local.s

    def exchange_token(self) -> str:
        data = {"grant_type": EXCHANGE, "subject_token": self.subject, "subject_token_type": ID_TOKEN}
        r = requests.post(f"{self.stack.base}/function/iam-token/oauth/token", data=data, timeout=10)
        r.raise_for_status()
        return str(r.json()["access_token"])

    def mint(self) -> None:
        """A fresh subject token, as every CI job brings one: signed by the IdP's current key."""
        self.subject = self.stack.idp.mint({"sub": "loader"}, ttl=600)

    def exchange(self) -> requests.Response:
        subject = self.subject
        data = {"grant_type": EXCHANGE, "subject_token": subject, "subject_token_type": ID_TOKEN}
        r = self.session().post(f"{self.stack.base}/function/iam-token/oauth/token", data=data, timeout=15)
        if r.status_code == 200:
            self.access = r.json()["access_token"]
            with self.tally.lock:
                self.tally.idp_kids[jwt.get_unverified_header(subject).get("kid", "?")] += 1
        return r

    def authorize(self) -> requests.Response:
        body = [{"action": "Function:Get", "resource": "dev:fn"}, {"action": "Function:Delete", "resource": "prod:fn"}]
        headers = {"Authorization": f"Bearer {self.access}"}
        r = self.session().post(
            f"{self.stack.base}/function/iam-authz/authorize", json=body, headers=headers, timeout=15
        )
        if r.status_code == 200 and [d.get("allowed") for d in r.json()] != [True, False]:
            r.status_code = 599  # a wrong decision is a failure too
        return r

    def whoami(self) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.access}"}
        return self.session().get(f"{self.stack.base}/function/iam-authz/whoami", headers=headers, timeout=15)

    def run(self, endpoint: str, call: Callable[[], requests.Response]) -> None:
        phase = self.phase
        start = time.perf_counter()
        try:
            r = call()
            status, error, detail = r.status_code, "", ""
            if status != 200:
                try:
                    body = r.json()
                    error, detail = (
                        str(body.get("error", "")),
                        str(body.get("error_description", body.get("message", ""))),
                    )
                except ValueError:
                    error, detail = "non-json", r.text[:200]
                if status == 599:
                    error, detail = "wrong_decision", r.text[:200]
        except requests.RequestException as e:
            status, error, detail = -1, type(e).__name__, str(e)[:200]
        elapsed = (time.perf_counter() - start) * 1000
        with self.tally.lock:
            self.tally.latencies[endpoint].append(elapsed)
            self.tally.per_phase[phase] += 1
            if status != 200:
                at = time.monotonic() - self.started
                self.tally.failures.append(Failure(at, endpoint, phase, status, error, detail))


MIX: list[str] = ["exchange", "exchange", "authorize", "authorize", "whoami"]


@dataclass
class Event:
    """A scheduled disturbance: at a fraction of the run, do something and name the phase after it."""

    at: float
    phase: str
    action: Callable[[], str]
    done: bool = False


def prefetch(stack: Stack) -> str:
    """What cron-connector does (every 5 minutes in stack.yml): iam-discovery prefetches every issuer."""
    r = requests.post(f"{stack.base}/function/iam-discovery/", timeout=30)
    try:
        kids = ",".join(r.json()["issuers"]["idp"].get("kids", []))
    except (ValueError, KeyError, AttributeError):
        kids = r.text[:120]
    return f"cron prefetch -> {r.status_code} [{kids}]"


def scenario(stack: Stack, load: Load) -> list[Event]:
    """Two IdP key rotations and a Redis restart.

    The first rotation is the careful one (stage, the cron prefetch, activate, retire); the
    second activates a key no replica has seen (an IdP that rotates at once, or a prefetch that
    came before the stage), so every replica meets an unknown kid under load together.
    """
    idp = stack.idp
    key2, key3 = private_jwk("RS256", "idp-key-2"), private_jwk("RS256", "idp-key-3")

    def stage() -> str:
        idp.stage(key2)
        return f"IdP key idp-key-2 staged; {prefetch(stack)}"

    def activate() -> str:
        idp.activate("idp-key-2")
        load.mint()
        return "IdP key idp-key-2 activated (subject tokens signed with it from now on)"

    def retire() -> str:
        idp.retire("idp-key-1")
        return "IdP key idp-key-1 retired (no longer published)"

    def restart_redis() -> str:
        stack.redis.stop()
        time.sleep(1.0)
        stack.redis.start()
        return f"Redis stopped and started again (1 s down, every entry lost) on port {stack.redis.port}"

    def rotate_at_once() -> str:
        idp.stage(key3)
        idp.activate("idp-key-3")
        load.mint()
        return "IdP key idp-key-3 published and activated at once (no prefetch between)"

    def retire2() -> str:
        idp.retire("idp-key-2")
        return "IdP key idp-key-2 retired"

    return [
        Event(0.15, "idp-2-staged", stage),
        Event(0.30, "idp-2-activated", activate),
        Event(0.45, "idp-1-retired", retire),
        Event(0.55, "redis-restarted", restart_redis),
        Event(0.70, "idp-3-activated-at-once", rotate_at_once),
        Event(0.85, "idp-2-retired", retire2),
    ]


def cron(stack: Stack, stop: threading.Event, every: float, seen: list[str], started: float) -> None:
    """cron-connector's schedule for iam-discovery, compressed from 5 minutes to `every` seconds."""
    while not stop.wait(every):
        try:
            seen.append(f"{time.monotonic() - started:5.1f} s  {prefetch(stack)}")
        except requests.RequestException as e:
            seen.append(f"{time.monotonic() - started:5.1f} s  cron prefetch failed: {e}")
        log("  " + seen[-1])  # when the shared entry was last refreshed explains an unknown-kid failure


class RedisCommands:
    """Commands Redis processed in each phase; a restart resets its counter, so a drop starts afresh."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.last = server.commands()
        self.phases: dict[str, int] = {}

    def mark(self, phase: str) -> None:
        try:
            now = self.server.commands()
        except redis.RedisError:
            return  # down right now: counted at the next mark
        self.phases[phase] = self.phases.get(phase, 0) + (now - self.last if now >= self.last else now) - 1
        self.last = now


@dataclass
class Rotations:
    """Forced rotations of the bundle's own keys, at a steady pace through the whole run."""

    outcomes: Counter[str] = field(default_factory=Counter)
    generations: list[int] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def rotate_own_keys(stack: Stack, stop: threading.Event, every: float, result: Rotations) -> None:
    """Force a rotation every `every` seconds; 409 (not safe yet) is the rotator doing its job.

    While Redis is down iam-rotate answers 503 lease_unavailable (rotation paused, by design).
    """
    url = f"{stack.base}/function/iam-rotate/?force=true"
    while not stop.wait(every):
        try:
            r = requests.post(url, auth=stack.admin, timeout=15)
        except requests.RequestException as e:
            result.unexpected.append(f"rotate: {type(e).__name__}: {e}")
            continue
        body: dict[str, Any] = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code == 200 and body.get("rotated"):
            result.outcomes["rotated"] += 1
            result.generations.append(int(body.get("generation", 0)))
        else:
            result.outcomes[f"{r.status_code} {body.get('error', 'not-rotated')}"] += 1
            if r.status_code not in (200, 409, 503):
                result.unexpected.append(f"rotate: {r.status_code} {r.text[:200]}")


def scale_run(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="scale-"))
    log(f"starting Redis, the test IdP and {args.token} iam-token + {args.authz} iam-authz replicas...")
    with running(tmp, args.token, args.authz) as stack:
        pids = {p.instance: p.proc.pid for p in stack.gw.processes if p.proc}
        log(f"  gateway http://127.0.0.1:{stack.gw.port}; Redis :{stack.redis.port}; IdP {stack.idp.issuer}")
        log("  processes: " + ", ".join(f"{k} (pid {v})" for k, v in pids.items()))
        started = time.monotonic()
        load = Load(stack, started)
        events = scenario(stack, load)
        stop = threading.Event()
        rotations = Rotations()
        rotator = threading.Thread(target=rotate_own_keys, args=(stack, stop, args.rotate_every, rotations))
        prefetches: list[str] = []
        crons = threading.Thread(target=cron, args=(stack, stop, args.cron_every, prefetches, started))
        fetches: list[tuple[str, int]] = [("start", 0)]  # the IdP counts from its own start
        commands = RedisCommands(stack.redis)
        event_log: list[str] = []
        calls: dict[str, Callable[[], requests.Response]] = {
            "exchange": load.exchange,
            "authorize": load.authorize,
            "whoami": load.whoami,
        }
        total = int(args.seconds * args.rate)
        interval = 1.0 / args.rate
        late = 0
        log(
            f"load: {args.rate:g} req/s for {args.seconds:g} s ({total} requests); "
            f"own keys forced every {args.rotate_every:g} s"
        )
        cpu_start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = load.started = time.monotonic()
        rotator.start()
        if args.cron_every > 0:
            crons.start()
        next_report = started + args.progress
        try:
            with ThreadPoolExecutor(max_workers=64) as pool:
                for i in range(total):
                    due = started + i * interval
                    now = time.monotonic()
                    if due > now:
                        time.sleep(due - now)
                    elif now - due > 0.05:
                        late += 1
                    for ev in events:
                        if not ev.done and i >= ev.at * total:
                            ev.done = True
                            fetches.append((load.phase, stack.idp.stats()["jwks"]))
                            commands.mark(load.phase)
                            load.phase = ev.phase

                            # Off the schedule's thread: a slow step must not hold the load back.
                            def act(ev: Event = ev) -> None:
                                message = f"{time.monotonic() - started:5.1f} s  {ev.action()}"
                                event_log.append(message)
                                log("  " + message)

                            pool.submit(act)
                    kind = MIX[i % len(MIX)]
                    pool.submit(load.run, kind, calls[kind])
                    if time.monotonic() >= next_report:
                        next_report += args.progress
                        with load.tally.lock:
                            failed = len(load.tally.failures)
                        log(f"  {time.monotonic() - started:5.1f} s  sent {i + 1}, failed {failed}, phase {load.phase}")
        finally:
            stop.set()
            rotator.join()
            if crons.is_alive():
                crons.join()
        elapsed = time.monotonic() - started
        fetches.append((load.phase, stack.idp.stats()["jwks"]))
        commands.mark(load.phase)
        cpu = {name: cpu_seconds(pid) - cpu_start[name] for name, pid in pids.items()}
    return report(
        args, load.tally, rotations, fetches, commands, event_log, prefetches, cpu, elapsed, late / max(total, 1)
    )


def report(
    args: argparse.Namespace,
    tally: Tally,
    rotations: Rotations,
    fetches: list[tuple[str, int]],
    commands: RedisCommands,
    event_log: list[str],
    prefetches: list[str],
    cpu: dict[str, float],
    elapsed: float,
    late_share: float,
) -> int:
    sent = sum(len(v) for v in tally.latencies.values())
    failed = len(tally.failures)
    rows = []
    for kind in ("exchange", "authorize", "whoami"):
        lat = tally.latencies[kind]
        errs = sum(1 for f in tally.failures if f.endpoint == kind)
        if lat:
            rows.append(
                f"| {kind} | {len(lat)} | {errs} | {statistics.median(lat):.1f} | {percentile(lat, 99):.1f} "
                f"| {max(lat):.1f} |"
            )
    kinds = Counter((f.endpoint, f.phase, f.status, f.error) for f in tally.failures)
    by_kind = [
        f"| {ep} | {phase} | {status} | {error or '-'} | {n} | {first.at:.1f}-{last.at:.1f} s | {first.detail[:120]} |"
        for (ep, phase, status, error), n in kinds.most_common()
        for first, last in [
            (
                min(
                    (
                        f
                        for f in tally.failures
                        if (f.endpoint, f.phase, f.status, f.error) == (ep, phase, status, error)
                    ),
                    key=lambda f: f.at,
                ),
                max(
                    (
                        f
                        for f in tally.failures
                        if (f.endpoint, f.phase, f.status, f.error) == (ep, phase, status, error)
                    ),
                    key=lambda f: f.at,
                ),
            )
        ]
    ]
    # Each mark is (the phase that just ended, the counter then): the gap up to a mark is that phase's.
    deltas = [f"{fetches[i + 1][0]} {fetches[i + 1][1] - fetches[i][1]}" for i in range(len(fetches) - 1)]
    jwks_total = fetches[-1][1] - fetches[0][1]
    size = f"{args.token} iam-token + {args.authz} iam-authz replicas (one iam-discovery, one iam-rotate)"
    summary = (
        f"{sent} requests at {args.rate:g}/s for {elapsed:.0f} s, {size}; failed: {failed}; "
        f"started late: {late_share * 100:.1f}%"
    )
    own = ", ".join(f"{k}: {v}" for k, v in sorted(rotations.outcomes.items())) or "none"
    gens = f" (generations {rotations.generations[0]}-{rotations.generations[-1]})" if rotations.generations else ""
    kids = ", ".join(f"{k} {v}" for k, v in sorted(tally.idp_kids.items()))
    body = f"""{summary}.

| endpoint | requests | failed | p50 ms | p99 ms | max ms |
|---|---|---|---|---|---|
{chr(10).join(rows)}

- Bundle key rotations forced every {args.rotate_every:g} s: {own}{gens}.
- IdP key rotation and Redis: {"; ".join(e.strip() for e in event_log) or "none"}.
- iam-discovery's cron prefetch every {args.cron_every:g} s: {len(prefetches)} runs, \
{sum(1 for p in prefetches if "-> 200" in p)} answered 200.
- IdP JWKS fetches: {jwks_total} in all (start-up and warm-up included); by phase: {", ".join(deltas)}.
- CPU of the function processes: {sum(cpu.values()):.1f} s in all, \
{sum(cpu.values()) / max(sent, 1) * 1000:.2f} ms per request (rotations and prefetches included); \
iam-token {sum(v for k, v in cpu.items() if k.startswith("iam-token")):.1f} s, \
iam-authz {sum(v for k, v in cpu.items() if k.startswith("iam-authz")):.1f} s.
- Redis commands: {sum(commands.phases.values())} in all ({sum(commands.phases.values()) / max(sent, 1):.3f} per \
request, background included); by phase: {", ".join(f"{k} {v}" for k, v in commands.phases.items())}.
- Successful exchanges by the IdP key that signed the subject token: {kids or "none"}.
"""
    if by_kind:
        body += f"""
Failed requests, by endpoint, phase and error:

| endpoint | phase | status | error | count | when | first detail |
|---|---|---|---|---|---|---|
{chr(10).join(by_kind)}
"""
    if rotations.unexpected:
        body += "\nUnexpected rotation answers: " + "; ".join(rotations.unexpected[:5]) + "\n"
    print("\n" + body)
    if args.write:
        write_section(body, args)
        log(f"written: {DOC.relative_to(ROOT)} (the make scale section)")
    return 1 if failed or rotations.unexpected else 0


def write_section(body: str, args: argparse.Namespace) -> None:
    """Replace only our own section of docs/performance.md (between the scale markers)."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = f"""{BEGIN}
## Replicas under rotation and a Redis restart (`make scale`, {stamp})

`make scale` (scripts/scale.py): open-loop load (exchanges 2/5, decisions 2/5, whoami 1/5)
through the local gateway, replicas sharing one Redis of the script's own, while the bundle's
keys are forced to rotate, the test IdP stages, activates and retires a key (with
iam-discovery's cron prefetch after the stage), and Redis is stopped and started once.
Reproduce: `SCALE_SECONDS={args.seconds:g} SCALE_RATE={args.rate:g} make scale`.

{body.strip()}
{END}"""
    text = DOC.read_text()
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


# -- calibration: the per-request costs docs/scaling.md is built from --------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def calibrate(args: argparse.Namespace) -> int:
    """CPU per request (all function processes) and Redis commands per request, one kind at a time."""
    tmp = Path(tempfile.mkdtemp(prefix="scale-cal-"))
    n = args.requests
    log("starting Redis, the test IdP and one replica of each function...")
    with running(tmp, 1, 1) as stack:
        load = Load(stack, time.monotonic())
        procs = {p.fn.name: p.proc.pid for p in stack.gw.processes if p.proc}
        log(f"minting {n} subject tokens and exchanging {n} access tokens (fresh tokens = cache misses)...")
        subjects = [stack.idp.mint({"sub": "loader"}, ttl=600) for _ in range(n)]
        accesses = []
        for s in subjects[: n // 2]:
            load.subject = s
            accesses.append(load.exchange_token())
        load.subject = subjects[0]
        load.access = accesses[0]
        time.sleep(1.0)

        def idle() -> tuple[float, float]:
            """Background CPU and Redis commands per second with no requests."""
            c0, r0 = sum(cpu_seconds(p) for p in procs.values()), stack.redis.commands()
            time.sleep(3.0)
            c1, r1 = sum(cpu_seconds(p) for p in procs.values()), stack.redis.commands()
            return (c1 - c0) / 3.0, (r1 - r0 - 1) / 3.0

        idle_cpu, idle_redis = idle()
        rows = []
        fresh_subjects = iter(subjects[n // 2 :])
        fresh_access = iter(accesses[1:])

        def measure(name: str, fn: str, call: Callable[[], requests.Response], count: int) -> None:
            c0, r0, t0 = sum(cpu_seconds(p) for p in procs.values()), stack.redis.commands(), time.monotonic()
            with ThreadPoolExecutor(max_workers=4) as pool:
                statuses = list(pool.map(lambda _: call().status_code, range(count)))
            wall = time.monotonic() - t0
            c1, r1 = sum(cpu_seconds(p) for p in procs.values()), stack.redis.commands()
            bad = sum(1 for s in statuses if s != 200)
            cpu_ms = (c1 - c0 - idle_cpu * wall) / count * 1000
            redis_per = (r1 - r0 - 1 - idle_redis * wall) / count
            rows.append(f"| {name} | {count} | {bad} | {cpu_ms:.2f} | {redis_per:.2f} |")
            log(f"  {name}: {cpu_ms:.2f} ms CPU, {redis_per:.2f} Redis commands per request ({bad} failed)")

        def exchange_fresh() -> requests.Response:
            load.subject = next(fresh_subjects)
            return load.exchange()

        def whoami_fresh() -> requests.Response:
            load.access = next(fresh_access)
            return load.whoami()

        measure("exchange, same subject token", "iam-token", load.exchange, n)
        measure("exchange, new subject token each", "iam-token", exchange_fresh, n - n // 2)
        load.access = accesses[0]
        measure("authorize (2 checks), cached token", "iam-authz", load.authorize, n)
        measure("whoami, cached token", "iam-authz", load.whoami, n)
        measure("whoami, new token each (ES256 verify)", "iam-authz", whoami_fresh, len(accesses) - 1)
        rss = {name: Path(f"/proc/{pid}/status").read_text() for name, pid in procs.items()}
        mem = {
            name: int(next(line for line in text.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024
            for name, text in rss.items()
        }
    print(
        f"""
Per-request cost through the local gateway, one replica of each (CPU of every function
process together, background subtracted: {idle_cpu * 1000:.1f} ms CPU/s, {idle_redis:.1f} Redis commands/s idle):

| request | count | failed | CPU ms / request | Redis commands / request |
|---|---|---|---|---|
{chr(10).join(rows)}

Resident memory after the run: {", ".join(f"{k} {v:.0f} MiB" for k, v in mem.items())}.
"""
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(
        prog="scale",
        description="Replicas of iam-token and iam-authz under fixed-rate load on loopback while the bundle's keys "
        "and the IdP's keys rotate and Redis restarts; fails on any failed request.",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("SCALE_SECONDS") or 60),
        help="duration (env SCALE_SECONDS, default 60)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=float(os.environ.get("SCALE_RATE") or 50),
        help="requests per second, all kinds together (env SCALE_RATE, default 50)",
    )
    parser.add_argument(
        "--token",
        type=int,
        default=int(os.environ.get("SCALE_TOKEN_REPLICAS") or 3),
        help="iam-token replicas (env SCALE_TOKEN_REPLICAS, default 3)",
    )
    parser.add_argument(
        "--authz",
        type=int,
        default=int(os.environ.get("SCALE_AUTHZ_REPLICAS") or 3),
        help="iam-authz replicas (env SCALE_AUTHZ_REPLICAS, default 3)",
    )
    parser.add_argument(
        "--rotate-every",
        type=float,
        default=4.0,
        help="seconds between forced rotations of the bundle's keys (default 4)",
    )
    parser.add_argument(
        "--cron-every",
        type=float,
        default=10.0,
        help="seconds between iam-discovery cron prefetches, stack.yml's 5 minutes compressed (default 10; 0: none)",
    )
    parser.add_argument("--progress", type=float, default=5.0, help="seconds between progress lines (default 5)")
    parser.add_argument(
        "--write", action="store_true", help="record the summary in docs/performance.md (its own section)"
    )
    parser.add_argument(
        "--calibrate", action="store_true", help="instead: measure CPU and Redis commands per request kind"
    )
    parser.add_argument("--requests", type=int, default=200, help="requests per kind with --calibrate (default 200)")
    args = parser.parse_args(argv)
    # SIGTERM/SIGHUP end the run like Ctrl-C does, so the finally blocks stop every process we started.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    try:
        return calibrate(args) if args.calibrate else scale_run(args)
    except KeyboardInterrupt:
        log("interrupted: everything started was stopped")
        return 130
    except (RuntimeError, OSError) as e:
        log(f"scale: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
