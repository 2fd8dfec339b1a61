"""A configuration change is parsed off the request path (issue 16): requests keep the last good one."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from openfaas_iam.stores.watched_file import WatchedFile


def slow_source(path: Path, background: bool = True) -> tuple[WatchedFile[str], threading.Event, threading.Event]:
    entered, release = threading.Event(), threading.Event()

    def parse(p: str) -> str:
        text = Path(p).read_text()
        if text.startswith("slow"):
            entered.set()
            assert release.wait(10)
        if text.startswith("bad"):
            raise ValueError("bad configuration")
        return text

    return WatchedFile(str(path), parse, what="test config", check_interval=0, background=background), entered, release


def change(path: Path, text: str, n: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(n, n))


def test_requests_are_answered_from_the_old_configuration_while_a_new_one_parses(tmp_path: Path) -> None:
    path = tmp_path / "iam.yaml"
    change(path, "v1", 1)
    source, entered, release = slow_source(path)
    assert source.get() == "v1"  # the first load is waited for
    change(path, "slow v2", 2)
    assert source.get() == "v1"
    assert entered.wait(5), "the new file is being parsed"
    answered: list[str] = []
    done = threading.Event()

    def requests() -> None:
        for _ in range(100):
            answered.append(source.get())
        done.set()

    threading.Thread(target=requests, daemon=True).start()
    assert done.wait(5), "a request waited for the parse"
    assert answered == ["v1"] * 100
    release.set()
    source.wait()
    assert source.get() == "slow v2" and source.generation == 2


def test_a_bad_file_parsed_in_the_background_keeps_the_last_good(tmp_path: Path) -> None:
    path = tmp_path / "iam.yaml"
    change(path, "v1", 1)
    source, _, _ = slow_source(path)
    assert source.get() == "v1"
    change(path, "bad v2", 2)
    source.get()
    source.wait()
    assert source.get() == "v1" and source.last_error == "bad configuration"
    change(path, "v3", 3)
    source.get()
    source.wait()
    assert source.get() == "v3" and source.generation == 2


def test_a_replaced_configuration_is_freed_without_the_cyclic_collector() -> None:
    """`prepared` freezes the heap (gc.freeze): safe only while a configuration holds no reference cycles."""
    import gc
    import weakref

    from openfaas_iam.engine.policy import policy_index
    from openfaas_iam.engine.roles import role_matcher
    from openfaas_iam.model.loading import load_paths
    from openfaas_iam.service.config_source import prepared

    root = Path(__file__).resolve().parents[2]
    gc.disable()
    try:
        config = prepared(load_paths([root / "examples" / "iam.yaml"]))
        role_matcher(config).policies({"sub": "alice", "iss": "https://x", "groups": ["dev"]})
        policy_index(config).decide(["staging-rw"], "Function:Get", "staging:fn", {"sub": "fed:alice"})
        ref = weakref.ref(config)
        del config
        assert ref() is None, "a reference cycle keeps a replaced configuration alive"
    finally:
        gc.enable()
        gc.unfreeze()
