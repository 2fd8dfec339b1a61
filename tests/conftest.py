"""Fixtures that start and stop real services: Redis, the local gateway, the test IdP."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


class RedisServer:
    """A throwaway redis-server of our own, for tests that stop it on purpose."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _redis_ping(self.url):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The machine's Redis when it answers (database 15, flushed), else one we start."""
    shared = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    if _redis_ping(shared):
        import redis

        redis.Redis.from_url(shared).flushdb()
        yield shared
        redis.Redis.from_url(shared).flushdb()
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def throwaway_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


def start_gateway(
    tmp: Path,
    *,
    iam_config: Path,
    port: int | None = None,
    env: dict[str, str] | None = None,
    function_env: dict[str, str] | None = None,
    stack: Path = ROOT / "stack.yml",
    echo: bool = True,
    signin_port: int | None = None,
    authz_port: int | None = None,
    replicas: int | None = 1,
):
    """The bundle behind a started LocalGateway, its state and build contexts under tmp (stop() it).

    One replica of each function unless `replicas` says otherwise (None: each one's
    `com.openfaas.scale.min`, as `make run`), so tests about one process see one process.
    """
    from localgw.main import LocalGateway

    gw = LocalGateway(
        stack,
        port=port or free_port(),
        iam_config=iam_config,
        state_dir=tmp / "state",
        build_dir=tmp / "build",
        env=env or {},
        function_env=function_env,
        cron=False,
        template_root=ROOT / "template",
        echo=echo,
        signin_port=signin_port,
        authz_port=authz_port,
        replicas=replicas,
    )
    gw.start()
    return gw


@pytest.fixture
def local_gateway(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Start a LocalGateway over any stack file; every one started is stopped at the end."""
    from localgw.main import LocalGateway

    started: list[LocalGateway] = []

    def start(
        stack: Path = ROOT / "stack.yml",
        iam_config: Path = ROOT / "examples" / "iam.yaml",
        env: dict[str, str] | None = None,
        function_env: dict[str, str] | None = None,
        cron: bool = False,
        state_dir: Path | None = None,
        replicas: int | None = 1,
    ) -> LocalGateway:
        port = free_port()
        gw = LocalGateway(
            stack,
            port=port,
            iam_config=iam_config,
            state_dir=state_dir or tmp_path / f"state-{len(started)}",
            build_dir=tmp_path / f"build-{len(started)}",
            env={**(env or {})},
            function_env=function_env,
            cron=cron,
            template_root=ROOT / "template",
            replicas=replicas,
        )
        gw.start()
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def idp() -> Iterator[object]:
    """The real OpenID Provider on a free port, stopped at the end."""
    from idp_server import OidcProvider

    provider = OidcProvider(free_port()).start()
    try:
        yield provider
    finally:
        provider.stop()


def make_project(tmp: Path, extra_functions: str = "", extra_secrets: dict[str, list[str]] | None = None) -> Path:
    """A copy of the bundle's project in tmp with more functions (and secrets) in its stack.yml."""
    for folder in ("functions", "openfaas_iam"):
        shutil.copytree(ROOT / folder, tmp / folder, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    for name in ("echo", "ticker", "hostile"):
        shutil.copytree(ROOT / "tests" / "fixtures" / name, tmp / "fixtures" / name, dirs_exist_ok=True)
    text = (ROOT / "stack.yml").read_text()
    for fn, secrets in (extra_secrets or {}).items():
        marker = f"    handler: ./functions/{fn}\n"
        head, _, tail = text.partition(marker)
        # stack.yml's secrets are flow lists (`secrets: [\n      a, b ...`) so environment switches can extend them
        opening = "    secrets: [\n      "
        assert opening in tail, f"stack.yml: {fn}: no flow-style secrets list to extend"
        tail = tail.replace(opening, opening + "".join(f"{s}, " for s in secrets), 1)
        text = head + marker + tail
    (tmp / "stack.yml").write_text(text + extra_functions)
    return tmp / "stack.yml"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `last` (the log scan) run after everything else, whatever their file."""
    last = [i for i in items if i.get_closest_marker("last")]
    items[:] = [i for i in items if not i.get_closest_marker("last")] + last
