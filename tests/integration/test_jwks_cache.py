"""Issuer discovery and the shared JWKS cache against the real OpenID Provider and real Redis."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from pathlib import Path

import pytest
from idp_server import OidcProvider, private_jwk

from openfaas_iam.errors import DiscoveryError, IssuerUnavailable, KeyUnavailable, TokenError
from openfaas_iam.model.loading import load_texts
from openfaas_iam.model.objects import JwtIssuer
from openfaas_iam.oidc.cache_auth import EntrySealer
from openfaas_iam.oidc.discovery import IssuerDiscovery
from openfaas_iam.oidc.jwks_cache import CachePolicy, JwksCache
from openfaas_iam.oidc.outbound import Fetcher
from openfaas_iam.oidc.verify import verify_subject_token
from openfaas_iam.stores.cache import LayeredCache, RedisCache

AUD = "https://gateway.test"
CACHE_KEY = b"test-cache-key-shared-by-the-bundle"


def config_for(iss: str, **extra: str):
    spec = {"iss": iss, "aud": [AUD], **extra}
    return load_texts(
        [
            (
                "t",
                json.dumps(
                    {
                        "apiVersion": "iam.openfaas.com/v1",
                        "kind": "JwtIssuer",
                        "metadata": {"name": "idp"},
                        "spec": spec,
                    }
                ),
            )
        ]
    )


def make_cache(
    redis_url: str | None, *, policy: CachePolicy | None = None, fetcher: Fetcher | None = None, clock=time.time
) -> JwksCache:
    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    shared = RedisCache(redis_url, prefix) if redis_url else None
    return JwksCache(
        IssuerDiscovery(fetcher or Fetcher(timeout=2)),
        LayeredCache(shared),
        policy=policy or CachePolicy(),
        clock=clock,
        sealer=EntrySealer(lambda: CACHE_KEY),
    )


def test_verify_after_discovery(idp: OidcProvider, redis_url: str) -> None:
    config = config_for(idp.issuer)
    jwks = make_cache(redis_url)
    token = idp.mint({"sub": "alice", "groups": ["dev"]})
    verified = verify_subject_token(token, config, jwks, leeway=5)
    assert verified.claims["sub"] == "alice" and verified.issuer.name == "idp"
    assert idp.stats()["jwks"] == 1
    verify_subject_token(token, config, jwks, leeway=5)
    assert idp.stats()["jwks"] == 1, "the second verification is served from the cache"


def test_idp_rotation_is_followed_within_one_request(idp: OidcProvider, redis_url: str) -> None:
    config = config_for(idp.issuer)
    jwks = make_cache(redis_url, policy=CachePolicy(refetch_interval=0.5))
    old_token = idp.mint({"sub": "alice"})
    verify_subject_token(old_token, config, jwks, leeway=5)
    new_key = private_jwk("RS256")
    idp.set_keys([*idp.keys, new_key])  # stage
    idp.set_keys([new_key, *idp.keys[:-1]])  # activate: the provider signs with the first key
    time.sleep(0.6)
    new_token = idp.mint({"sub": "bob"})
    assert (
        json.loads(__import__("base64").urlsafe_b64decode(new_token.split(".")[0] + "==")).get("kid") == new_key["kid"]
    )
    assert verify_subject_token(new_token, config, jwks, leeway=5).claims["sub"] == "bob"
    assert verify_subject_token(old_token, config, jwks, leeway=5), "the old key is still published"
    idp.set_keys([new_key])  # retire the old keys
    time.sleep(0.6)
    for kid in [k["kid"] for k in idp.keys]:
        assert kid == new_key["kid"]
    jwks.refresh(config.issuers[0])
    with pytest.raises(TokenError, match="is not in the JWKS") as refused:
        verify_subject_token(old_token, config, jwks, leeway=5)
    assert not isinstance(refused.value, IssuerUnavailable), "a retired key is the token's fault: no retry helps"


def test_stale_keys_serve_while_idp_is_down_then_fail_clearly(idp: OidcProvider, redis_url: str) -> None:
    now = [time.time()]
    config = config_for(idp.issuer)
    jwks = make_cache(
        redis_url, policy=CachePolicy(min_ttl=1, max_ttl=10, default_ttl=10, max_stale=100), clock=lambda: now[0]
    )
    token = idp.mint({"sub": "alice"}, ttl=3600)
    verify_subject_token(token, config, jwks, leeway=5)
    idp.stop()
    now[0] += 50  # past fresh, within max staleness
    verify_subject_token(token, config, jwks, leeway=3600)
    assert jwks.status(config.issuers)[0]["state"] == "stale"
    now[0] += 100  # past max staleness
    with pytest.raises(
        IssuerUnavailable, match=r"older than the maximum staleness \(100s\) and cannot be refreshed: cannot reach"
    ):
        verify_subject_token(token, config, jwks, leeway=3600)
    assert jwks.status(config.issuers)[0]["state"] == "failing"
    # An unknown kid while the IdP is down: its refetch fails, which is the IdP's fault too (503, retry).
    now[0] -= 100
    with pytest.raises(IssuerUnavailable, match="is unknown and the refetch failed"):
        jwks.key(config.issuers[0], "kid-published-while-the-idp-was-down")


def test_redis_stopped_mid_test_fails_no_request(idp: OidcProvider, throwaway_redis) -> None:
    config = config_for(idp.issuer)
    token = idp.mint({"sub": "alice"})
    jwks = make_cache(throwaway_redis.url)
    verify_subject_token(token, config, jwks, leeway=5)
    throwaway_redis.stop()
    other = make_cache(throwaway_redis.url)  # a fresh replica: nothing in memory, Redis gone
    for _ in range(20):
        verify_subject_token(token, config, jwks, leeway=5)
        verify_subject_token(token, config, other, leeway=5)
    throwaway_redis.start()
    verify_subject_token(token, config, make_cache(throwaway_redis.url), leeway=5)


def test_random_kid_flood_costs_a_handful_of_fetches(idp: OidcProvider, redis_url: str) -> None:
    issuer = config_for(idp.issuer).issuers[0]
    replicas = [make_cache(redis_url) for _ in range(2)]
    # Replicas of one deployment share a prefix; emulate that.
    shared = replicas[0].cache
    replicas[1].cache = shared
    replicas[0].key(issuer, idp.keys[0]["kid"])
    before = idp.stats()["jwks"]
    errors = 0

    def flood(cache: JwksCache) -> None:
        nonlocal errors
        for _ in range(250):
            try:
                cache.key(issuer, uuid.uuid4().hex)
            except KeyUnavailable:
                errors += 1

    threads = [threading.Thread(target=flood, args=(replicas[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == 1000
    assert idp.stats()["jwks"] - before <= 3


def test_replicas_share_keys_through_redis(idp: OidcProvider, redis_url: str) -> None:
    issuer = config_for(idp.issuer).issuers[0]
    a = make_cache(redis_url)
    b = make_cache(redis_url)
    b.cache = a.cache
    a.key(issuer, idp.keys[0]["kid"])
    fetched = idp.stats()["jwks"]
    b.key(issuer, idp.keys[1]["kid"])
    assert idp.stats()["jwks"] == fetched
    assert b.metrics.value("openfaas_iam_jwks_shared_reads_total") == 1


class Hostile(http.server.BaseHTTPRequestHandler):
    """A misbehaving IdP: what it serves is chosen per path."""

    port = 0

    def do_GET(self) -> None:
        base = f"http://127.0.0.1:{self.port}"
        name = self.path.split("/")[1]
        routes = {
            "mismatch": {"issuer": "https://other.example.com", "jwks_uri": f"{base}/mismatch/jwks"},
            "nojwks": {"issuer": f"{base}/nojwks"},
            "big": {"issuer": f"{base}/big", "jwks_uri": f"{base}/big/jwks"},
            "notjson": {"issuer": f"{base}/notjson", "jwks_uri": f"{base}/notjson/jwks"},
            "badkeys": {"issuer": f"{base}/badkeys", "jwks_uri": f"{base}/badkeys/jwks"},
            "redirect": {"issuer": f"{base}/redirect", "jwks_uri": f"{base}/redirect/jwks"},
            "badport": {"issuer": f"{base}/badport", "jwks_uri": "http://127.0.0.1:99999/jwks"},
            "badhost": {"issuer": f"{base}/badhost", "jwks_uri": "http://[::1/jwks"},
            "badredirect": {"issuer": f"{base}/badredirect", "jwks_uri": f"{base}/badredirect/jwks"},
        }
        if self.path.endswith("/.well-known/openid-configuration"):
            body = json.dumps(routes[name]).encode()
        elif name == "big":
            body = json.dumps({"keys": [{"kty": "RSA", "n": "A" * 1024 * 1024, "e": "AQAB"}]}).encode()
        elif name == "notjson":
            body = b"<html>not json</html>"
        elif name == "redirect":
            self.send_response(302)
            self.send_header("Location", "https://evil.example.com/jwks")
            self.end_headers()
            return
        elif name == "badredirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:notaport/jwks")
            self.end_headers()
            return
        elif name == "badkeys":
            good = {k: v for k, v in private_jwk("ES256").items() if k != "d"}
            body = json.dumps(
                {
                    "keys": [
                        "junk",
                        {"kty": "oct", "k": "c2VjcmV0"},
                        {"kty": "RSA", "n": "!!", "e": "AQAB"},
                        {"kty": "EC", "crv": "P-256"},
                        good,
                    ]
                }
            ).encode()
        else:
            body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hostile():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    Hostile.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{Hostile.port}"
    server.shutdown()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "mismatch",
            "names issuer 'https://other.example.com', not 'http://127.0.0.1:{port}/mismatch' (RFC 8414 §3.3)",
        ),
        ("nojwks", "has no jwks_uri"),
        ("big", "is larger than the limit of 65536 bytes"),
        ("notjson", "did not return JSON"),
        ("redirect", "redirects to another origin (https://evil.example.com/jwks); refused"),
        # urlsplit().port raises ValueError on these: it escaped as a 500 from the token endpoint and /refresh.
        ("badport", "http://127.0.0.1:99999/jwks is not a valid URL"),
        ("badredirect", "http://127.0.0.1:notaport/jwks is not a valid URL"),
        ("badhost", "http://[::1/jwks is not a valid URL"),
    ],
)
def test_hostile_metadata_is_refused_with_a_reason(hostile: str, name: str, reason: str) -> None:
    issuer = JwtIssuer("h", "openfaas", f"{hostile}/{name}", (AUD,))
    with pytest.raises(DiscoveryError) as err:
        IssuerDiscovery(Fetcher(timeout=2, max_bytes=65536)).fetch(issuer)
    assert reason.format(port=hostile.rsplit(":", 1)[1]) in str(err.value)


def test_malformed_keys_are_skipped_and_the_rest_kept(hostile: str) -> None:
    issuer = JwtIssuer("h", "openfaas", f"{hostile}/badkeys", (AUD,))
    cache = JwksCache(IssuerDiscovery(Fetcher(timeout=2)), LayeredCache(None))
    entry = cache.refresh(issuer)
    assert len(entry.kids) == 1 and entry.skipped == 4


def test_plain_http_is_refused_off_loopback() -> None:
    issuer = JwtIssuer("h", "openfaas", "http://idp.example.com", (AUD,))
    with pytest.raises(DiscoveryError, match="https is required"):
        IssuerDiscovery(Fetcher()).fetch(issuer)


def test_discovery_over_tls_needs_the_ca_bundle(tmp_path: Path) -> None:
    from conftest import free_port
    from tls_certs import make_ca_and_server_cert

    ca, cert, key = make_ca_and_server_cert(tmp_path)
    provider = OidcProvider(free_port(), tls={"cert": str(cert), "key": str(key), "ca": str(ca)}).start()
    try:
        issuer = config_for(provider.issuer).issuers[0]
        with pytest.raises(DiscoveryError, match="TLS verification failed"):
            IssuerDiscovery(Fetcher(timeout=3)).fetch(issuer)
        found = IssuerDiscovery(Fetcher(timeout=3, ca_bundle=str(ca))).fetch(issuer)
        assert {k["kid"] for k in found.jwks} == {k["kid"] for k in provider.keys}
    finally:
        provider.stop()


def test_a_rotated_ca_bundle_is_trusted_without_a_restart(tmp_path: Path) -> None:
    """The mounted ca-bundle changes (a new CA for the IdP): the same Fetcher trusts the new one."""
    from conftest import free_port
    from tls_certs import make_ca_and_server_cert

    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old_ca, _, _ = make_ca_and_server_cert(tmp_path / "old")
    new_ca, cert, key = make_ca_and_server_cert(tmp_path / "new")
    mounted = tmp_path / "ca.crt"
    mounted.write_bytes(old_ca.read_bytes())
    provider = OidcProvider(free_port(), tls={"cert": str(cert), "key": str(key), "ca": str(new_ca)}).start()
    try:
        issuer = config_for(provider.issuer).issuers[0]
        fetcher = Fetcher(timeout=3, ca_bundle=str(mounted))
        with pytest.raises(DiscoveryError, match="TLS verification failed"):
            IssuerDiscovery(fetcher).fetch(issuer)
        mounted.write_bytes(new_ca.read_bytes() + b"\n")  # the kubelet swaps the file in
        assert IssuerDiscovery(fetcher).fetch(issuer).jwks
    finally:
        provider.stop()


def test_iss_internal_is_used_for_fetching(idp: OidcProvider) -> None:
    # The token says 127.0.0.1; fetching goes through "localhost", the in-cluster-style address.
    issuer = JwtIssuer("k8s", "openfaas", idp.issuer, (AUD,), iss_internal=idp.issuer.replace("127.0.0.1", "localhost"))
    found = IssuerDiscovery(Fetcher(timeout=3)).fetch(issuer)
    assert found.jwks_uri.startswith("http://localhost:")


def test_kubernetes_api_gets_the_pods_own_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            doc = {"issuer": "https://kubernetes.default.svc.cluster.local", "jwks_uri": f"{base}/openid/v1/jwks"}
            body = json.dumps(doc if "well-known" in self.path else {"keys": []}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "token").write_text("pod-token-1\n")
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        discovery = IssuerDiscovery(Fetcher(timeout=2), service_account_dir=str(tmp_path))
        issuer = JwtIssuer(
            "kubernetes",
            "openfaas",
            "https://kubernetes.default.svc.cluster.local",
            (AUD,),
            iss_internal=f"http://127.0.0.1:{server.server_address[1]}",
        )
        discovery.fetch(issuer)
        (tmp_path / "token").write_text("pod-token-2\n")  # the kubelet rotated it
        discovery.fetch(issuer)
        assert seen == ["Bearer pod-token-1", "Bearer pod-token-1", "Bearer pod-token-2", "Bearer pod-token-2"]
    finally:
        server.shutdown()


def test_prefetch_is_throttled_per_issuer(idp: OidcProvider, redis_url: str) -> None:
    """POST /refresh is reachable by anyone: it must not be a way to hammer an IdP."""
    issuer = config_for(idp.issuer).issuers[0]
    cache = make_cache(redis_url, policy=CachePolicy(refetch_interval=30))
    before = idp.stats()["jwks"]
    for _ in range(20):
        cache.prefetch(issuer)
    assert idp.stats()["jwks"] - before == 1


# -- issue 16: key discovery that never fails a good token ------------------------------------


def shared_replicas(redis_url: str, n: int, **kw) -> list[JwksCache]:
    """N replicas of one deployment: one Redis prefix, each with its own memory."""
    replicas = [make_cache(redis_url, **kw) for _ in range(n)]
    for r in replicas[1:]:
        r.cache = replicas[0].cache
    return replicas


def slow_fetches(replicas: list[JwksCache], delay: float) -> list[str]:
    """Make every replica's IdP fetch take `delay` (a fetch in flight long enough to be met); count them."""
    fetched: list[str] = []
    for r in replicas:
        real = r.discovery.fetch

        def fetch(issuer, real=real):
            fetched.append(issuer.iss)
            time.sleep(delay)
            return real(issuer)

        r.discovery.fetch = fetch  # type: ignore[method-assign]
    return fetched


def rotate(idp: OidcProvider) -> dict[str, str]:
    new_key = private_jwk("RS256")
    idp.set_keys([new_key, *idp.keys])  # the provider signs with the first key
    return new_key


def test_new_kid_after_a_prefetch_succeeds_on_every_replica(idp: OidcProvider, redis_url: str) -> None:
    """The outage measured in issue 16: a prefetch, then the IdP's new key, failed everywhere for ~5 s."""
    issuer = config_for(idp.issuer).issuers[0]
    replicas = shared_replicas(redis_url, 3, policy=CachePolicy(refetch_interval=30))
    discovery = make_cache(redis_url, policy=CachePolicy(refetch_interval=0))  # iam-discovery, same Redis
    discovery.cache = replicas[0].cache
    for r in replicas:
        r.key(issuer, idp.keys[0]["kid"])
    time.sleep(0.01)
    before = idp.stats()["jwks"]
    discovery.prefetch(issuer)  # iam-discovery's cron: a newer shared entry, without the coming key
    assert idp.stats()["jwks"] - before == 1
    new_key = rotate(idp)
    before = idp.stats()["jwks"]
    for r in replicas:
        assert r.key(issuer, new_key["kid"]).kid == new_key["kid"]
    assert idp.stats()["jwks"] - before == 1, "one fetch for the whole cluster"


def test_losers_of_the_unknown_kid_race_wait_for_the_winner(idp: OidcProvider, redis_url: str) -> None:
    issuer = config_for(idp.issuer).issuers[0]
    replicas = shared_replicas(redis_url, 3, policy=CachePolicy(refetch_interval=30))
    for r in replicas:
        r.key(issuer, idp.keys[0]["kid"])
    new_key = rotate(idp)
    fetched = slow_fetches(replicas, 0.3)
    start = threading.Barrier(len(replicas))
    results: list[object] = []

    def ask(r: JwksCache) -> None:
        start.wait()
        try:
            results.append(r.key(issuer, new_key["kid"]).kid)
        except KeyUnavailable as e:
            results.append(e)

    threads = [threading.Thread(target=ask, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [new_key["kid"]] * 3
    assert len(fetched) == 1


def test_concurrent_cold_requests_in_a_replica_share_one_fetch(idp: OidcProvider, redis_url: str) -> None:
    issuer = config_for(idp.issuer).issuers[0]
    (replica,) = shared_replicas(redis_url, 1)
    fetched = slow_fetches([replica], 0.2)
    start = threading.Barrier(8)
    kids: list[str] = []

    def ask() -> None:
        start.wait()
        kids.append(replica.key(issuer, idp.keys[0]["kid"]).kid)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kids) == 8
    assert len(fetched) == 1


def test_concurrent_new_kid_requests_in_a_replica_share_one_fetch(idp: OidcProvider, redis_url: str) -> None:
    issuer = config_for(idp.issuer).issuers[0]
    (replica,) = shared_replicas(redis_url, 1, policy=CachePolicy(refetch_interval=30))
    replica.key(issuer, idp.keys[0]["kid"])
    new_key = rotate(idp)
    fetched = slow_fetches([replica], 0.2)
    start = threading.Barrier(6)
    kids: list[object] = []

    def ask() -> None:
        start.wait()
        try:
            kids.append(replica.key(issuer, new_key["kid"]).kid)
        except KeyUnavailable as e:
            kids.append(e)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kids == [new_key["kid"]] * 6
    assert len(fetched) == 1


def test_random_kids_while_waiting_still_cost_one_fetch_per_interval(idp: OidcProvider, redis_url: str) -> None:
    """Waiting for a peer must not open the IdP to a flood: random kids from 3 replicas at once."""
    issuer = config_for(idp.issuer).issuers[0]
    replicas = shared_replicas(redis_url, 3, policy=CachePolicy(refetch_interval=30))
    replicas[0].key(issuer, idp.keys[0]["kid"])
    fetched = slow_fetches(replicas, 0.1)
    failed = 0

    def flood(r: JwksCache) -> None:
        nonlocal failed
        for _ in range(60):
            try:
                r.key(issuer, uuid.uuid4().hex)
            except KeyUnavailable:
                failed += 1

    threads = [threading.Thread(target=flood, args=(replicas[i % 3],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == 360
    assert len(fetched) == 1, "one unknown-kid refetch per interval for the whole cluster"


def test_an_entry_already_decided_on_is_not_opened_again(idp: OidcProvider, redis_url: str) -> None:
    """Stale serves, unknown kids and peer waits read the shared entry on every request: the one this
    replica wrote (or already refused) must not be verified and parsed again each time."""
    config = config_for(idp.issuer)
    issuer = config.issuers[0]
    opened: list[str] = []

    class CountingSealer(EntrySealer):
        def open(self, kind: str, name: str, raw: bytes) -> bytes:
            opened.append(name)
            return super().open(kind, name, raw)

    prefix = f"t-{uuid.uuid4().hex[:8]}:"
    replicas = [
        JwksCache(
            IssuerDiscovery(Fetcher(timeout=2)),
            LayeredCache(RedisCache(redis_url, prefix)),
            policy=CachePolicy(refetch_interval=60),
            sealer=CountingSealer(lambda: CACHE_KEY),
        )
        for _ in range(2)
    ]
    a, b = replicas
    a.refresh(issuer)
    for _ in range(20):
        with pytest.raises(KeyUnavailable):
            a.key(issuer, "no-such-kid")
    assert opened == [], "its own entry is never opened"
    b.key(issuer, idp.keys[0]["kid"])  # adopts a's entry: opened once
    for _ in range(20):
        with pytest.raises(KeyUnavailable):
            b.key(issuer, "no-such-kid")
    assert len(opened) == 1, opened
