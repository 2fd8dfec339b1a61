"""Redis as operators run it: a password from a secret, TLS with a CA, Sentinel, Cluster refused.

Each test starts its own redis-server (password, TLS, cluster mode or a Sentinel) and
checks that a misconfiguration is loud: /healthz says degraded with what to fix, the
metric shows it, and the log says it once, not on every retry.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import free_port
from tls_certs import make_ca_and_server_cert

from openfaas_iam.observability.metrics import Metrics
from openfaas_iam.service.runtime import Runtime
from openfaas_iam.settings import Settings
from openfaas_iam.stores.cache import RedisCache, RedisOptions

PASSWORD = "op-chosen-password"


class Server:
    """One redis-server process we started (stopped by its own pid)."""

    def __init__(self, args: list[str], check: dict) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(**check, socket_timeout=0.5).ping():
                    break
            except redis.RedisError:
                pass
            if self.proc.poll() is not None:
                pytest.skip(f"redis-server does not support: {' '.join(args[:6])}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


BASE = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


@pytest.fixture
def protected() -> Iterator[int]:
    port = free_port()
    server = Server(["--port", str(port), "--requirepass", PASSWORD, *BASE], {"port": port, "password": PASSWORD})
    yield port
    server.stop()


def test_password_from_the_mounted_secret(protected: int, tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD + "\n")
    cache = RedisCache(RedisOptions(f"redis://127.0.0.1:{protected}/0", password_file=str(secret)))
    cache.set("k", b"v", 10)
    assert cache.get("k") == b"v" and cache.problem is None
    secret.write_text("rotated-password")  # read on each new connection: a rotated password is picked up
    redis.Redis(port=protected, password=PASSWORD).config_set("requirepass", "rotated-password")
    cache.client.connection_pool.disconnect()
    assert cache.get("k") == b"v"


def test_a_wrong_password_is_loud_once(protected: int, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text("wrong")
    states: list[str | None] = []
    cache = RedisCache(
        RedisOptions(f"redis://127.0.0.1:{protected}/0", password_file=str(secret)),
        retry_after=0,
        on_state=states.append,
    )
    with caplog.at_level(logging.WARNING, logger="openfaas_iam.cache"):
        for _ in range(20):
            assert cache.get("k") is None
    assert cache.problem and "redis-password secret" in cache.problem
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, "said once, not on every retry"
    assert PASSWORD not in caplog.text and "wrong" not in caplog.text, "no secret in the log"
    secret.write_text(PASSWORD)  # fixed: it recovers by itself and says so
    assert cache.get("k") is None and cache.problem is None and states[-1] is None


def test_healthz_and_metric_say_degraded_with_the_reason(protected: int, tmp_path: Path) -> None:
    (tmp_path / "iam-public-keys").write_text('{"generation": 0, "keys": []}')
    settings = Settings(redis_url=f"redis://127.0.0.1:{protected}/0", secret_mount_path=str(tmp_path))
    rt = Runtime.build(settings)  # no redis-password mounted
    health = rt.health()
    assert health["status"] == "degraded" and health["redis"]["state"] == "failing"
    assert "refused the credentials" in health["redis"]["reason"]
    assert "openfaas_iam_redis_up 0" in rt.metrics.render()
    (tmp_path / "redis-password").write_text(PASSWORD)
    ok = Runtime.build(settings)
    assert ok.health()["status"] == "ok" and ok.health()["redis"] == {"state": "ok"}
    assert "openfaas_iam_redis_up 1" in ok.metrics.render()


def test_unreachable_redis_is_degraded_not_down(tmp_path: Path) -> None:
    rt = Runtime.build(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", secret_mount_path=str(tmp_path)))
    health = rt.health()
    assert health["status"] == "degraded" and "unreachable" in health["redis"]["reason"]
    assert Runtime.build(Settings(secret_mount_path=str(tmp_path))).health()["redis"] == {"state": "not configured"}


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    (tmp_path / "tls").mkdir()
    ca, cert, key = make_ca_and_server_cert(tmp_path / "tls")
    port = free_port()
    args = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    args += ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", *BASE]
    check = {"host": "127.0.0.1", "port": port, "ssl": True, "ssl_ca_certs": str(ca)}
    server = Server(args, check)
    yield port, ca
    server.stop()


def test_tls_with_the_ca_from_a_secret(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    without = RedisCache(RedisOptions(f"rediss://127.0.0.1:{port}/0"))
    without.probe()
    assert without.problem and "mount the CA" in without.problem and "redis-ca" in without.problem
    with_ca = RedisCache(RedisOptions(f"rediss://127.0.0.1:{port}/0", ca_file=str(ca)))
    with_ca.probe()
    assert with_ca.problem is None
    with_ca.set("k", b"v", 5)
    assert with_ca.get("k") == b"v"


def test_redis_cluster_is_refused_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    args = ["--port", str(port), "--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf")]
    server = Server([*args, *BASE], {"port": port})
    try:
        with caplog.at_level(logging.ERROR, logger="openfaas_iam.cache"):
            rt = Runtime.build(Settings(redis_url=f"redis://127.0.0.1:{port}/0", secret_mount_path=str(tmp_path)))
        health = rt.health()
        assert health["status"] == "degraded" and health["redis"]["state"] == "refused"
        assert "Redis Cluster, which is not supported" in health["redis"]["reason"]
        assert "Redis Cluster" in caplog.text
        assert rt.cache.shared is not None and not rt.cache.shared.available
        rt.cache.set("k", b"v", 5)  # the in-process cache answers
        assert rt.cache.get("k") == b"v"
        assert redis.Redis(port=port).dbsize() == 0, "nothing was written to the cluster"
    finally:
        server.stop()


def test_sentinel(protected: int, tmp_path: Path) -> None:
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\n"
        f"sentinel monitor mymaster 127.0.0.1 {protected} 1\n"
        f"sentinel auth-pass mymaster {PASSWORD}\n"
    )
    binary = shutil.which("redis-server")
    assert binary is not None
    proc = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis(port=sentinel_port, socket_timeout=0.5).ping():
                    break
            except redis.RedisError:
                pass
            if proc.poll() is not None:
                pytest.skip("redis-server cannot run as a Sentinel here")
            assert time.monotonic() < deadline, "the Sentinel did not start"
            time.sleep(0.05)
        secret = tmp_path / "redis-password"
        secret.write_text(PASSWORD)
        url = f"redis+sentinel://127.0.0.1:{sentinel_port}/mymaster/0"
        cache = RedisCache(RedisOptions(url, password_file=str(secret), timeout=1.0))
        cache.probe()
        assert cache.problem is None
        cache.set("through-sentinel", b"v", 10)
        assert redis.Redis(port=protected, password=PASSWORD).get("openfaas-iam:through-sentinel") == b"v"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_metric_is_a_gauge() -> None:
    m = Metrics()
    m.set("openfaas_iam_redis_up", 0)
    assert "# TYPE openfaas_iam_redis_up gauge" in m.render()
