"""The verified-token cache of OwnTokenVerifier (issue 16): bounded, O(1) insert and eviction."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from openfaas_iam.errors import TokenError
from openfaas_iam.oidc.verify import OwnTokenVerifier


class CountingDict(OrderedDict):
    """Counts walks over the cache: an O(1) cache never walks it to insert or evict."""

    walks = 0

    def __iter__(self):
        CountingDict.walks += 1
        return super().__iter__()

    def items(self):
        CountingDict.walks += 1
        return super().items()

    def values(self):
        CountingDict.walks += 1
        return super().values()


def verifier(max_entries: int, max_bytes: int = 32 * 1024 * 1024) -> tuple[OwnTokenVerifier, list[str]]:
    key = object()
    v = OwnTokenVerifier("https://iam", lambda: {"k": key}, max_entries=max_entries, max_bytes=max_bytes)
    verified: list[str] = []

    def fake_verify(token: str, now: float | None) -> tuple[dict[str, Any], str, Any]:
        verified.append(token)
        return {"sub": token, "exp": 2_000_000_000.0}, "k", key

    v._verify = fake_verify  # type: ignore[method-assign]
    return v, verified


def test_a_full_cache_drops_the_oldest_and_keeps_the_rest() -> None:
    v, verified = verifier(3)
    for t in ("t1", "t2", "t3", "t4"):
        v.verify(t, now=1_000.0)
    assert len(v._cache) == 3
    for t in ("t2", "t3", "t4"):
        v.verify(t, now=1_000.0)
    assert verified == ["t1", "t2", "t3", "t4"], "t2..t4 answered from the cache"
    v.verify("t1", now=1_000.0)
    assert verified[-1] == "t1", "t1 was evicted: verified again"
    assert len(v._cache) == 3


def test_insert_and_eviction_never_walk_the_cache() -> None:
    v, _ = verifier(100)
    v._cache = CountingDict()
    CountingDict.walks = 0
    for i in range(1_000):
        v.verify(f"t{i}", now=1_000.0)
    assert len(v._cache) == 100
    assert CountingDict.walks == 0


def test_large_tokens_are_bounded_by_bytes_not_only_by_count() -> None:
    """Thousands of 20 KB tokens (an API token copies the IdP token's claims) must not fill memory."""
    per_entry = OwnTokenVerifier.entry_bytes("x" * 20_000)
    v, verified = verifier(10_000, max_bytes=50 * per_entry)
    tokens = [f"{i:05d}" + "x" * 19_995 for i in range(500)]
    for t in tokens:
        v.verify(t, now=1_000.0)
    assert len(v._cache) == 50 and v.cached_bytes == 50 * per_entry <= v.max_bytes
    v.verify(tokens[-1], now=1_000.0)
    assert verified.count(tokens[-1]) == 1, "the newest are kept"
    v.verify(tokens[0], now=1_000.0)
    assert verified.count(tokens[0]) == 2, "the oldest went"
    # An expired entry gives its bytes back.
    before = v.cached_bytes
    with pytest.raises(TokenError, match="expired"):
        v.verify(tokens[-1], now=2_000_000_100.0)
    assert v.cached_bytes == before - per_entry


def test_a_token_larger_than_the_whole_budget_is_verified_but_not_kept() -> None:
    v, _ = verifier(10, max_bytes=1_000)
    assert v.verify("y" * 5_000, now=1_000.0)["sub"] == "y" * 5_000
    assert not v._cache and v.cached_bytes == 0
