"""A changed IAM configuration parsed in a child process, handed back whole.

Why: a background thread parsing 10,000 Roles shares the GIL with the requests served
meanwhile, and their p99 rose from 0.24 ms to 42 ms for the seconds a reload takes
(docs/performance.md). In a child process the GIL-holding work (gunzip, JSON/YAML parse,
validation, the Role and Policy indexes) runs on another core; the serving process only
waits on a pipe (GIL released) and then unpickles the prepared configuration in one
short, mostly C-level step (its compiled forms are plain-data classes for this, see
model/conditions.py).

Why a fresh interpreter started with `subprocess` rather than `multiprocessing`: never
fork (the serving process has threads and locks), and multiprocessing's "spawn" and
"forkserver" both re-run the parent's `__main__` in the child: the template's index.py,
which imports Flask and the handler and builds the function's runtime, reading every
mounted secret. Here the child runs `python -I` with an empty environment, no inherited
file descriptor but a pipe in and a pipe out, and imports only the loader.

The child never outlives its purpose: it is killed at a deadline (a failed load), killed
when the source is closed, and exits by itself when the parent dies (its stdin, which the
parent never writes, reads end-of-file), so a SIGTERM'd function (os._exit after the drain)
leaves no child behind. The parent always waits for it, so there is no zombie.
"""

from __future__ import annotations

import copyreg
import dataclasses
import gc
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from types import MappingProxyType
from typing import IO, Any

import openfaas_iam
from openfaas_iam.errors import ConfigError
from openfaas_iam.model.objects import IamConfig
from openfaas_iam.stores.watched_file import TransientLoadError

log = logging.getLogger("openfaas_iam.config")
DEFAULT_DEADLINE = 120.0  # the large configuration (10,000 Roles) takes 2-5 s on 2 shared cores


class LoadFailed(TransientLoadError):
    """The child could not produce a configuration (crashed, killed at the deadline, or an
    unexpected error); the message says which. A ConfigError comes back as itself."""


def _mapping_proxy(mapping: dict[str, Any]) -> MappingProxyType[str, Any]:
    """Rebuilds a Role's read-only `principal` mapping (mappingproxy itself does not pickle)."""
    return MappingProxyType(mapping)


def _reduce_mapping_proxy(proxy: MappingProxyType[str, Any]) -> tuple[Any, tuple[dict[str, Any]]]:
    return _mapping_proxy, (dict(proxy),)


def _init_args(cls: type) -> tuple[str, ...] | None:
    """The fields a slotted dataclass is rebuilt from by calling it, or None to pickle it as usual.

    A frozen slotted dataclass otherwise unpickles through dataclasses' `__setstate__`, which
    looks up its fields again for every object: half of the hand-over's time in the serving
    process for 10,000 Roles. Calling the class runs its generated `__init__` instead."""
    if cls in _INIT_ARGS:
        return _INIT_ARGS[cls]
    names = None
    if dataclasses.is_dataclass(cls) and "__slots__" in vars(cls) and not hasattr(cls, "__post_init__"):
        fields = dataclasses.fields(cls)
        if all(f.init for f in fields):
            names = tuple(f.name for f in fields)
    _INIT_ARGS[cls] = names
    return names


_INIT_ARGS: dict[type, tuple[str, ...] | None] = {}


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        names = _init_args(type(obj))
        if names is None:
            return NotImplemented
        return type(obj), tuple(getattr(obj, name) for name in names)


def dumps(value: object, out: IO[bytes]) -> None:
    """Pickle `value` to `out`, read-only mappings included (a private dispatch table: no global
    copyreg registration), slotted dataclasses as calls to their class."""
    pickler = _Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _reduce_mapping_proxy}
    pickler.dump(value)


def _child_load(path: str) -> IamConfig:
    """In the child: the same load and preparation as an in-process load."""
    from openfaas_iam.service.config_source import load_prepared

    return load_prepared(path)


def child_main(argv: list[str]) -> int:
    """The child's entry: `argv` is [lifeline fd, path]; writes one pickled ("ok", config) or ("error", ...) to stdout.

    stdout is the result channel only: anything else printing goes to stderr (the function's log).
    """
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    threading.Thread(target=_exit_when_orphaned, args=(int(argv[0]),), name="orphan-watch", daemon=True).start()
    logging.basicConfig(level=logging.WARNING, format="config loader: %(message)s", stream=sys.stderr)
    path = argv[1]
    result: tuple[str, Any]
    try:
        result = ("ok", _child_load(path))
    except ConfigError as e:
        result = ("config-error", e.problems)
    except Exception as e:  # reported to the parent, which keeps the last good configuration
        result = ("error", f"{type(e).__name__}: {e}")
    dumps(result, out)  # streamed: no second copy of the pickle in the child
    out.close()
    return 0


def _exit_when_orphaned(lifeline: int) -> None:
    """The parent holds the lifeline's other end open and never writes: end-of-file means it has gone
    (a SIGTERM'd function ends with os._exit, a SIGKILL'd one with nothing at all)."""
    try:
        os.read(lifeline, 1)
    finally:
        os._exit(3)


# The child ends with os._exit once its result is written: tearing down 500,000 objects would
# keep its memory in use (counted with the function's against the container's limit) for nothing.
# `-I` leaves out the user site-packages, where the function's image installs its requirements
# (`pip install --user`): the child imports from the parent's own search path instead (argv[4]).
_BOOT = (
    "import os, sys; sys.path.insert(0, sys.argv[1]); "
    "sys.path += [p for p in sys.argv[4].split(os.pathsep) if p and p not in sys.path]; "
    "from openfaas_iam.service.config_process import child_main; "
    "code = child_main(sys.argv[2:4]); sys.stderr.flush(); os._exit(code)"
)


def _search_path() -> str:
    """The serving process's import path (absolute folders only: never its working directory)."""
    return os.pathsep.join(p for p in sys.path if p and os.path.isabs(p))


class ChildProcessLoader:
    """Parses a configuration file in a child process; `load(path)` blocks (GIL released) until
    the prepared configuration is back, then unpickles it with the cyclic collector paused and
    freezes it (`gc.freeze`, as `prepared` does in-process)."""

    def __init__(self, deadline: float = DEFAULT_DEADLINE, *, python: str = sys.executable) -> None:
        self.deadline = deadline
        self.python = python
        self._lock = threading.Lock()
        self._children: set[subprocess.Popen[bytes]] = set()
        self._closed = False
        self.last_timings: dict[str, float] = {}

    def load(self, path: str) -> IamConfig:
        started = time.perf_counter()
        data = self._run_child(path)
        received = time.perf_counter()
        was = gc.isenabled()
        gc.disable()
        try:
            status, payload = pickle.loads(data)
            del data
        finally:
            if was:
                gc.enable()
        unpickled = time.perf_counter()
        self.last_timings = {"child": received - started, "unpickle": unpickled - received}
        if status == "config-error":
            raise ConfigError(payload)
        if status != "ok":
            raise LoadFailed(f"the configuration loader process failed: {payload}")
        config: IamConfig = payload
        gc.freeze()
        return config

    def _run_child(self, path: str) -> bytes:
        root = os.path.dirname(os.path.dirname(os.path.abspath(openfaas_iam.__file__)))
        with self._lock:
            if self._closed:
                raise LoadFailed("the configuration source is closed")
            lifeline, keep = os.pipe()
            try:
                # -I: no environment variables, no user site, no script directory on sys.path.
                child = subprocess.Popen(
                    [self.python, "-I", "-c", _BOOT, root, str(lifeline), os.path.abspath(path), _search_path()],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=None,  # the child's own errors and tracebacks go to the function's log
                    env={},
                    cwd="/",
                    close_fds=True,
                    pass_fds=(lifeline,),
                )
            except BaseException:
                os.close(keep)
                raise
            finally:
                os.close(lifeline)
            self._children.add(child)
        try:
            try:
                data, _ = child.communicate(timeout=self.deadline)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
                raise LoadFailed(
                    f"the configuration loader process did not finish within {self.deadline:g}s and was killed"
                ) from None
        finally:
            os.close(keep)
            with self._lock:
                self._children.discard(child)
            if child.returncode is None:  # interrupted: never leave it running or unreaped
                child.kill()
                child.wait()
        if child.returncode != 0:
            how = f"was killed by signal {-child.returncode}" if child.returncode < 0 else f"exited {child.returncode}"
            raise LoadFailed(f"the configuration loader process {how} without a result")
        if not data:
            raise LoadFailed("the configuration loader process exited without a result")
        return data

    def running(self) -> list[int]:
        """Process ids of children at work (tests)."""
        with self._lock:
            return [c.pid for c in self._children]

    def close(self) -> None:
        """Kill any child at work and refuse new loads; the load in progress fails (last good kept)."""
        with self._lock:
            self._closed = True
            children = list(self._children)
        for child in children:
            if child.poll() is None:
                child.kill()
            try:
                child.wait(5)  # reaped here or by the loading thread, whichever is first
            except subprocess.TimeoutExpired:
                log.error("the configuration loader process %d did not exit after SIGKILL", child.pid)
