"""A changed IAM configuration is parsed in a child process and handed back whole (config_process.py).

Each test runs a real child (a fresh interpreter): a stub that parsed in-process would pass none
of the checks on process ids, deadlines and exits below.
"""

from __future__ import annotations

import os
import pickle
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from openfaas_iam.engine.policy import policy_index
from openfaas_iam.engine.roles import role_matcher
from openfaas_iam.errors import ConfigError
from openfaas_iam.model.loading import load_paths
from openfaas_iam.service import config_process
from openfaas_iam.service.config_process import ChildProcessLoader, LoadFailed, dumps
from openfaas_iam.service.config_source import file_config_source, prepared

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "examples" / "iam.yaml").read_text()
ROLE = """
---
apiVersion: iam.openfaas.com/v1
kind: Role
metadata: {name: %s}
spec:
  policy: [team-a-ro]
  principal: {"jwt:sub": ["%s"]}
"""
BAD = """
apiVersion: iam.openfaas.com/v1
kind: Role
metadata: {name: broken}
spec: {policy: [team-a-ro], tokenExipry: 1h}
"""


def write(path: Path, text: str, n: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(n * 10**9, n * 10**9))


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not reaped, counts as left behind too)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "X"


def reload(source: object, path: Path, text: str, n: int) -> None:
    write(path, text, n)
    source.get()  # type: ignore[attr-defined]  # the first request after the change starts the load
    source.wait(60)  # type: ignore[attr-defined]


def test_the_prepared_configuration_pickles_with_its_indexes_and_decides_the_same() -> None:
    config = prepared(load_paths([ROOT / "examples" / "iam.yaml"]))
    import io

    buf = io.BytesIO()
    dumps(config, buf)
    copy = pickle.loads(buf.getvalue())
    assert "roles" in copy._derived and "policies" in copy._derived, "the indexes travel with it"
    claims = {"sub": "alice", "iss": "https://x", "groups": ["dev"], "email": "ada@example.com"}
    assert role_matcher(copy).policies(claims) == role_matcher(config).policies(claims)
    for policies in (["team-a-ro"], [p.name for p in config.policies]):
        for action, resource in (("Function:Get", "staging:fn"), ("Function:Delete", "prod:api"), ("Secret:List", "*")):
            a = policy_index(copy).decide(policies, action, resource, claims)
            b = policy_index(config).decide(policies, action, resource, claims)
            assert a == b


def test_a_changed_file_is_loaded_in_a_child_and_swapped_in(tmp_path: Path) -> None:
    path = tmp_path / "iam.yaml"
    write(path, EXAMPLE, 1)
    source = file_config_source(str(path), check_interval=0, background=True, child_process=True)
    try:
        first = source.get()  # in-process: nothing to serve yet
        assert source.loader is not None and source.generation == 1
        seen: list[int] = []
        write(path, EXAMPLE + ROLE % ("carol", "carol"), 2)
        assert source.get() is first  # answered from the one in force while the child works
        for _ in range(200):
            seen += source.loader.running()
            if seen:
                break
            time.sleep(0.01)
        assert seen and seen[0] != os.getpid(), "parsed in another process"
        source.wait(60)
        config = source.get()
        assert source.generation == 2 and source.last_error is None
        assert "carol" in {r.name for r in config.roles}
        assert role_matcher(config).policies({"sub": "carol"}) == ["team-a-ro"]
        assert source.loader.last_timings["unpickle"] < source.loader.last_timings["child"]
        assert not alive(seen[0]), "the child exited and was reaped"
    finally:
        source.close()


def test_a_bad_file_keeps_the_last_good_and_reports_the_located_error(tmp_path: Path) -> None:
    path = tmp_path / "iam.yaml"
    write(path, EXAMPLE, 1)
    source = file_config_source(str(path), check_interval=0, background=True, child_process=True)
    try:
        good = source.get()
        reload(source, path, BAD, 2)
        assert source.get() is good and source.generation == 1
        with pytest.raises(ConfigError) as in_process:
            load_paths([path])
        assert source.last_error == str(in_process.value), "the same located message as an in-process load"
        assert "document 1: Role/broken: spec.tokenExipry" in source.last_error
        reload(source, path, EXAMPLE + ROLE % ("dave", "dave"), 3)
        assert source.generation == 2 and source.last_error is None
    finally:
        source.close()


def hanging_child(tmp_path: Path, body: str) -> str:
    """A stand-in interpreter whose loader does `body` instead of loading (the real boot otherwise)."""
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\nexec {config_process.sys.executable} -I -c 'import os, sys, time; {body}' \"$@\"\n")
    script.chmod(0o755)
    return str(script)


def started_children(source: Any) -> list[int]:
    """The loader's child pids once one has started (up to 2 s), else []."""
    for _ in range(200):
        if pids := source.loader.running():
            return list(pids)
        time.sleep(0.01)
    return []


def test_a_hanging_child_is_killed_at_the_deadline_and_the_last_good_stays(tmp_path: Path) -> None:
    path = tmp_path / "iam.yaml"
    write(path, EXAMPLE, 1)
    source = file_config_source(str(path), check_interval=0, background=True, child_process=True)
    assert source.loader is not None
    source.loader.deadline = 1.0
    source.loader.python = hanging_child(tmp_path, "time.sleep(600)")
    try:
        good = source.get()
        write(path, EXAMPLE + ROLE % ("erin", "erin"), 2)
        source.get()
        pids = started_children(source)
        started = time.monotonic()
        source.wait(30)
        assert time.monotonic() - started < 10
        assert source.get() is good and source.generation == 1
        assert source.last_error is not None and "did not finish within 1s and was killed" in source.last_error
        assert pids and not alive(pids[0])
    finally:
        source.close()


def test_a_child_that_dies_is_a_failed_load_retried_later(tmp_path: Path) -> None:
    path = tmp_path / "iam.yaml"
    write(path, EXAMPLE, 1)
    source = file_config_source(str(path), check_interval=0, background=True, child_process=True)
    assert source.loader is not None
    real = source.loader.python
    source.loader.python = hanging_child(tmp_path, "os._exit(7)")
    try:
        good = source.get()
        reload(source, path, EXAMPLE + ROLE % ("frank", "frank"), 2)
        assert source.get() is good and source.generation == 1
        assert source.last_error is not None and "exited 7 without a result" in source.last_error
        # Not the file's fault: the same file is tried again after retry_delay (30 s), not at once.
        source.loader.python = real
        source.get()
        source.wait(60)
        assert source.generation == 1
        source._next_check = 0.0  # the retry delay has passed
        source.get()
        source.wait(60)
        assert source.generation == 2 and "frank" in {r.name for r in source.get().roles}
    finally:
        source.close()


def test_no_child_is_left_running_after_the_source_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "iam.yaml"
    write(path, EXAMPLE, 1)
    source = file_config_source(str(path), check_interval=0, background=True, child_process=True)
    assert source.loader is not None
    source.loader.python = hanging_child(tmp_path, "time.sleep(600)")
    good = source.get()
    write(path, EXAMPLE + ROLE % ("gina", "gina"), 2)
    source.get()
    pids = started_children(source)
    assert pids
    source.close()
    source.wait(10)
    assert not alive(pids[0]), "killed and reaped"
    assert source.get() is good and source.loader.running() == []
    with pytest.raises(LoadFailed):
        source.loader.load(str(path))


# In a stand-in's body, the real boot's arguments: sys.argv[4] is the library's root, then [lifeline, path],
# then the parent's import path.
REAL_CHILD_SLEEPING = (
    "sys.path.insert(0, sys.argv[4]); import openfaas_iam.service.config_process as m;"
    " m._child_load = lambda path: time.sleep(600); sys.exit(m.child_main(sys.argv[5:7]))"
)


def test_the_child_exits_by_itself_when_its_parent_dies(tmp_path: Path) -> None:
    """A SIGTERM'd function ends with os._exit (no atexit hooks): the child must notice on its own."""
    import subprocess
    import sys

    code = (
        "import os, sys, threading, time; sys.path.insert(0, sys.argv[1])\n"
        "from openfaas_iam.service.config_process import ChildProcessLoader\n"
        "loader = ChildProcessLoader(600, python=sys.argv[2])\n"
        "threading.Thread(target=loader.load, args=(sys.argv[3],), daemon=True).start()\n"
        "while not loader.running(): time.sleep(0.01)\n"
        "time.sleep(0.5)\n"
        "print(loader.running()[0], flush=True)\n"
        "os._exit(0)\n"
    )
    path = tmp_path / "iam.yaml"
    write(path, EXAMPLE, 1)
    python = hanging_child(tmp_path, REAL_CHILD_SLEEPING)
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), python, str(path)], capture_output=True, text=True, timeout=60
    )
    pid = int(out.stdout.strip())
    for _ in range(500):
        if not alive(pid):
            break
        time.sleep(0.02)
    assert not alive(pid), "the orphaned child is still running"


def test_the_child_inherits_no_environment_and_no_descriptors(tmp_path: Path) -> None:
    import json

    report = tmp_path / "report"
    path = tmp_path / "iam.yaml"
    write(path, EXAMPLE, 1)
    python = hanging_child(
        tmp_path,
        'import json; fds = {fd: os.path.realpath("/proc/self/fd/" + fd) for fd in os.listdir("/proc/self/fd")};'
        f' open({json.dumps(str(report))}, "w").write(json.dumps([dict(os.environ), fds])); os._exit(1)',
    )
    os.environ["IAM_TEST_SECRET"] = "s3cret"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        loader = ChildProcessLoader(30, python=python)
        with pytest.raises(LoadFailed, match="exited 1"):
            loader.load(str(path))
    finally:
        del os.environ["IAM_TEST_SECRET"]
        listener.close()
    env, fds = json.loads(report.read_text())
    assert "IAM_TEST_SECRET" not in env
    # stdin (/dev/null), stdout (the result pipe), stderr, the lifeline (a pipe), and listdir's own
    # descriptor: no socket, no other file of the parent's
    assert not [t for t in fds.values() if "socket:" in t], fds
    assert len([t for t in fds.values() if "pipe:" in t]) == 2, fds
    assert fds["0"] == "/dev/null" and len(fds) <= 5, fds


def test_concurrent_gets_start_one_child(tmp_path: Path) -> None:
    path = tmp_path / "iam.yaml"
    write(path, EXAMPLE, 1)
    source = file_config_source(str(path), check_interval=0, background=True, child_process=True)
    try:
        source.get()
        write(path, EXAMPLE + ROLE % ("hal", "hal"), 2)
        seen: set[int] = set()
        stop = threading.Event()

        def watch() -> None:
            assert source.loader is not None
            while not stop.is_set():
                seen.update(source.loader.running())
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        threads = [threading.Thread(target=lambda: [source.get() for _ in range(50)]) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        source.wait(60)
        stop.set()
        watcher.join()
        assert len(seen) == 1 and source.generation == 2
    finally:
        source.close()


def test_config_reload_chooses_the_functions_loader_a_child_process_by_default(tmp_path: Path) -> None:
    from openfaas_iam.service.runtime import config_source
    from openfaas_iam.settings import Settings

    assert Settings.from_env({}).config_reload == "process"
    assert Settings.from_env({"config_reload": " Thread"}).config_reload == "thread"
    with pytest.raises(ValueError, match="config_reload must be 'thread' or 'process'"):
        Settings.from_env({"config_reload": "fork"})
    path = tmp_path / "iam.yaml"
    path.write_text(EXAMPLE)
    source = config_source(Settings(iam_config=str(path)))
    assert getattr(source, "loader", None) is not None
    source.close()  # type: ignore[attr-defined]
    assert getattr(config_source(Settings(iam_config=str(path), config_reload="thread")), "loader", "x") is None


def test_slotted_values_travel_as_calls_to_their_class_and_compare_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hand-over rebuilds slotted dataclasses by calling them (not dataclasses' per-object
    __setstate__, which looked up the fields again for each of 120,000 objects)."""
    import io

    config = prepared(load_paths([ROOT / "examples" / "iam.yaml"]))
    buf = io.BytesIO()
    dumps(config, buf)
    from openfaas_iam.model.objects import JwtIssuer, Policy, Role, Statement

    def not_used(self: object, state: object) -> None:
        raise AssertionError(f"{type(self).__name__} was rebuilt through __setstate__")

    for cls in (JwtIssuer, Policy, Role, Statement):
        monkeypatch.setattr(cls, "__setstate__", not_used)
    copy = pickle.loads(buf.getvalue())
    assert copy.roles == config.roles and copy.policies == config.policies and copy.issuers == config.issuers
    assert any(r.principal for r in copy.roles) and all(
        type(r.principal).__name__ == "mappingproxy" for r in copy.roles
    )


def test_the_child_imports_from_the_parents_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the function's image the requirements are in the user site-packages, which `-I` leaves out:
    the real boot puts the parent's import folders on the child's path (never a relative one)."""
    import json

    deps = tmp_path / "user-site"
    deps.mkdir()
    monkeypatch.syspath_prepend(str(deps))
    monkeypatch.setattr(config_process.sys, "path", [*config_process.sys.path, "", "relative/dir"])
    report = tmp_path / "report"
    path = tmp_path / "iam.yaml"
    write(path, EXAMPLE, 1)
    # The stand-in runs the real boot (its argv[3]) up to the import of the loader, then reports sys.path.
    body = (
        'boot = sys.argv[3].split("from openfaas_iam")[0]; sys.argv = ["-c", *sys.argv[4:]]; exec(boot);'
        f' import json; open({json.dumps(str(report))}, "w").write(json.dumps(sys.path)); os._exit(1)'
    )
    loader = ChildProcessLoader(30, python=hanging_child(tmp_path, body.replace("'", "")))
    with pytest.raises(LoadFailed, match="exited 1"):
        loader.load(str(path))
    seen = json.loads(report.read_text())
    assert seen[0] == str(ROOT) and str(deps) in seen
    assert "" not in seen[1:] and "relative/dir" not in seen
