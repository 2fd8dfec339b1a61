"""`openfaas-iam-gateway`: run the bundle locally behind a gateway on 127.0.0.1.

Each function runs from its assembled build context as its own process; Ctrl-C
stops every child. Environment: PORT (8080), IAM_CONFIG (examples/iam.yaml),
REDIS_URL (absent: each function uses an in-process cache).
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from .build_context import assemble
from .cron import Schedule
from .gateway import Backend, GatewayApp
from .host_guard import HostGuard, host_port
from .local_secrets import SecretMounts, ensure_defaults
from .provider import Provider, rfc3339
from .stack import Function, Stack, StackError, load_stack

# What a pod would have: nothing of the developer's shell except what Python needs.
_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "VIRTUAL_ENV", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the local gateway dies, however it dies (even SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the signal handlers in main() still stop every child


def free_port(taken: set[int] | None = None) -> int:
    """A port nobody listens on now, and none of `taken` (ports handed out but not yet bound)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not taken or port not in taken:
            return port


class FunctionProcess:
    """One function: its build context, its port, its child process and its log."""

    def __init__(
        self,
        fn: Function,
        context: Path,
        mount: Path,
        log_dir: Path,
        env: Mapping[str, str],
        echo: bool = True,
        *,
        replica: int = 0,
        on_line: Any = None,
    ) -> None:
        self.fn = fn
        self.echo = echo
        self.context = context
        self.port = 0  # chosen in start(), once the gateway's own port is bound
        self.log_path = log_dir / f"{fn.name}.log"
        # Like a pod's name: what `faas-cli logs` shows as the instance.
        self.instance = f"{fn.name}-local-{replica}"
        self.on_line = on_line
        child_env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
        child_env.update(fn.environment)
        child_env.update(
            {
                "secret_mount_path": str(mount),
                "HOSTNAME": f"{fn.name}-local-{replica}",
                # What a provider tells a function about itself (iam_auth checks permissions with it).
                "function_name": fn.name,
                "function_namespace": fn.namespace,
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        child_env.update(env)
        # The local gateway stops routing to a function before it signals it, so the window in
        # which of-watchdog keeps sending requests after SIGTERM is empty here: drain and go.
        child_env["healthcheck_interval"] = "0s"
        self.env = child_env
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = threading.Event()

    def start(self, port: int) -> None:
        self.port = port
        self.env["upstream_url"] = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "index.py"],
            cwd=self.context,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        with open(self.log_path, "ab") as log:
            for line in stream:
                if not self.ready.is_set() and f"Serving on http://127.0.0.1:{self.port}".encode() in line:
                    self.ready.set()  # waitress says so itself: the port is the child's, not a stranger's
                log.write(line)
                log.flush()
                if self.on_line is not None:
                    self.on_line(self, line.decode("utf-8", "replace").rstrip("\n"))
                if self.echo:
                    sys.stdout.write(f"[{self.fn.name}] {line.decode('utf-8', 'replace')}")
                    sys.stdout.flush()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.fn.name} exited with code {self.proc.returncode}; see {self.log_path}")
            if self.ready.wait(0.05):
                return
        raise RuntimeError(f"{self.fn.name} did not start listening on port {self.port} within {timeout:.0f}s")

    def signal_stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class CronConnector:
    """Invoke cron-annotated functions through the gateway, as cron-connector does."""

    def __init__(self, functions: list[Function], gateway_port: int) -> None:
        self.port = gateway_port
        self.jobs = [(fn, Schedule.parse(fn.schedule)) for fn in functions if fn.schedule]
        self._stop = threading.Event()

    def run(self) -> None:
        due = {fn.name: sched.next_after(datetime.now()) for fn, sched in self.jobs}
        while not self._stop.wait(0.2):
            now = datetime.now()
            for fn, sched in self.jobs:
                if now >= due[fn.name]:
                    due[fn.name] = sched.next_after(now)
                    threading.Thread(target=self.invoke, args=(fn,), daemon=True).start()

    def invoke(self, fn: Function) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            conn.request(
                "POST",
                f"/function/{fn.name}.{fn.namespace}",
                body=b"",
                headers={"X-Topic": "cron-function", "X-Connector": "cron-connector", "Content-Length": "0"},
            )
            status = conn.getresponse().status
        except OSError as e:
            print(f"[cron-connector] {fn.name}: invocation failed: {e}", flush=True)
            return 0
        finally:
            conn.close()
        print(f"[cron-connector] {fn.name}: invoked ({fn.schedule}) -> {status}", flush=True)
        return status

    def stop(self) -> None:
        self._stop.set()


def _min_replicas(fn: Function) -> int:
    value = fn.labels.get("com.openfaas.scale.min", "1")
    return max(1, int(value)) if str(value).isdigit() else 1


def _status(fn: Function, replicas: int) -> dict[str, Any]:
    """What the provider reports for a stack function (faas-provider's FunctionStatus)."""
    return {
        "name": fn.name,
        "namespace": fn.namespace,
        "image": fn.image,
        "envProcess": "python index.py",
        "labels": dict(fn.labels),
        "annotations": dict(fn.annotations),
        "secrets": list(fn.secrets),
        "replicas": replicas,
        "availableReplicas": replicas,
        "createdAt": rfc3339(time.time()),
    }


class LocalGateway:
    """Everything `make run` runs, startable and stoppable from tests too.

    It is the gateway (routing `/function/...`), the provider (`localgw.provider`: the REST
    API faas-cli uses) and the runtime (each stack function as `com.openfaas.scale.min`
    processes or more, behind round-robin; scaled through the API).
    """

    def __init__(
        self,
        stack_path: Path,
        *,
        port: int,
        iam_config: Path,
        state_dir: Path,
        build_dir: Path,
        env: Mapping[str, str],
        function_env: Mapping[str, str] | None = None,
        cron: bool = True,
        template_root: Path | None = None,
        echo: bool = True,
        signin_port: int | None = None,
        authz_port: int | None = None,
        replicas: int | None = None,
    ) -> None:
        """`replicas`: run this many of every function instead of each one's `com.openfaas.scale.min`."""
        self.port = port
        self.public_url = env.get("PUBLIC_GATEWAY_URL") or f"http://127.0.0.1:{port}"
        # The sign-in page's own origin: another port, and the name `localhost` rather than
        # 127.0.0.1, because browsers share cookies across ports of one host but not across
        # hosts; so the gateway's functions can neither read nor plant its cookies.
        self.signin_port = signin_port
        self.signin_origin = env.get("SIGNIN_ORIGIN") or (f"http://localhost:{signin_port}" if signin_port else "")
        # The proxy at a host root (as an Ingress host route to iam-authz would serve it), so that
        # faas-cli's namespace commands, which drop any path in --gateway, reach it too.
        self.authz_port = authz_port
        # iam-authz's proxy and iam-rotate's secret writes go to this gateway (it is the provider
        # too), never to a cluster address that does not exist here.
        subst_env = {
            "GATEWAY_URL": self.public_url,
            **env,
            "PUBLIC_GATEWAY_URL": self.public_url,
            "SIGNIN_ORIGIN": self.signin_origin,
        }
        if authz_port and not env.get("PROXY_URL"):  # the page's suggested faas-cli --gateway
            subst_env["PROXY_URL"] = f"http://127.0.0.1:{authz_port}"
        self.stack: Stack = load_stack(stack_path, subst_env)
        state_dir = state_dir.resolve()
        self.state_dir = state_dir
        self.secret_store = state_dir / "secrets"
        self.created = ensure_defaults(self.secret_store, iam_config)
        # Mounts update late, as the kubelet's do (LOCAL_SECRET_SYNC_DELAY seconds, default 1).
        self.secrets = SecretMounts(self.secret_store, float(env.get("LOCAL_SECRET_SYNC_DELAY") or "1"))
        self.iam_config = iam_config
        self.log_dir = state_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self.function_env = dict(function_env or {})
        self.contexts: dict[str, tuple[Function, Path, Path]] = {}
        self.replicas: dict[str, list[FunctionProcess]] = {}
        for fn in self.stack.functions.values():
            context = assemble(self.stack, fn, build_dir, template_root)
            mount = state_dir / "mounts" / fn.name
            self.secrets.add(fn, mount)
            self.contexts[fn.name] = (fn, context, mount)
            count = replicas if replicas is not None else _min_replicas(fn)
            self.replicas[fn.name] = [self._process(fn, i) for i in range(count)]
        # CE has one namespace; a stack that uses more is served as faasd or Enterprise would.
        spaces = sorted({"openfaas-fn", *(fn.namespace for fn in self.stack.functions.values())})
        self.provider = Provider(
            self.secrets.admin, namespaces=spaces if len(spaces) > 1 else None, secrets=self.secrets, runtime=self
        )
        for fn in self.stack.functions.values():
            self.provider.register(_status(fn, len(self.replicas[fn.name])))
        self.app = GatewayApp({}, provider=self.provider)
        self.cron = CronConnector(list(self.stack.functions.values()), port) if cron else None
        self._servers: list[Any] = []
        self._stopping = False
        self._scale_lock = threading.Lock()
        self._taken: set[int] = {port, signin_port or port, authz_port or port}

    @property
    def processes(self) -> list[FunctionProcess]:
        return [p for group in self.replicas.values() for p in group]

    def _process(self, fn: Function, replica: int) -> FunctionProcess:
        _, context, mount = self.contexts[fn.name]
        return FunctionProcess(
            fn, context, mount, self.log_dir, self.function_env, self.echo, replica=replica, on_line=self._log_line
        )

    def _log_line(self, process: FunctionProcess, text: str) -> None:
        self.provider.logs.add(process.fn.namespace, process.fn.name, process.instance, text)

    def _backend(self, name: str) -> Backend:
        fn = self.contexts[name][0]
        return Backend(fn.name, fn.namespace, [p.port for p in self.replicas[name] if p.ready.is_set()])

    def start(self) -> None:
        from waitress.server import create_server

        # Bind first: a taken port must fail before any child is started.
        # Client X-Forwarded-* headers reach the routing like they reach the real CE gateway's
        # (which keeps a client's X-Forwarded-Host), so tests see what a function really gets.
        # Each listener answers only as its own host (421 otherwise), so a function never gets the
        # sign-in origin's `localhost` cookies (cookies are not per port). See localgw/host_guard.py.
        gateway_hosts = {f"127.0.0.1:{self.port}", host_port(self.public_url)}
        listeners: list[tuple[Any, int, int, str]] = [
            (HostGuard(self.app, gateway_hosts), self.port, 16, "openfaas-iam-gateway")
        ]
        if self.signin_port:
            listeners.append(
                (
                    HostGuard(
                        GatewayApp(self.app.backends, root_function="iam-token"), {host_port(self.signin_origin)}
                    ),
                    self.signin_port,
                    4,
                    "openfaas-iam-signin",
                )
            )
        if self.authz_port:
            listeners.append(
                (
                    HostGuard(
                        GatewayApp(self.app.backends, root_function="iam-authz"), {f"127.0.0.1:{self.authz_port}"}
                    ),
                    self.authz_port,
                    8,
                    "openfaas-iam-authz",
                )
            )
        try:
            for app, port, threads, ident in listeners:
                self._servers.append(
                    create_server(
                        app,
                        host="127.0.0.1",
                        port=port,
                        threads=threads,
                        ident=ident,
                        clear_untrusted_proxy_headers=False,
                    )
                )
        except OSError:
            for server in self._servers:
                server.close()
            raise
        try:
            for p in self.processes:
                port = free_port(self._taken)
                self._taken.add(port)
                p.start(port)
            for p in self.processes:
                p.wait_ready()
        except (RuntimeError, OSError):
            self.stop()
            raise
        self.app.backends.update({name: self._backend(name) for name in self.replicas})
        for server in self._servers:
            threading.Thread(target=self._serve, args=(server,), daemon=True).start()
        threading.Thread(target=self.secrets.run, daemon=True).start()
        if self.cron:
            threading.Thread(target=self.cron.run, daemon=True).start()

    # -- the provider's runtime: scaling and removing the stack's functions -------------------

    def scale(self, namespace: str, name: str, replicas: int) -> int:
        """Start or stop processes until `replicas` run; how many are ready."""
        if name not in self.replicas or self.contexts[name][0].namespace != namespace:
            return replicas  # deployed through the API: a record only
        with self._scale_lock:
            group = self.replicas[name]
            fn = self.contexts[name][0]
            started = []
            while len(group) < replicas:
                p = self._process(fn, len(group))
                port = free_port(self._taken)
                self._taken.add(port)
                p.start(port)
                group.append(p)
                started.append(p)
            for p in started:
                p.wait_ready()
            stopping = group[replicas:]
            del group[replicas:]
            self.app.backends[name] = self._backend(name)  # routed only to what runs, before anything stops
            for p in stopping:
                p.signal_stop()
            for p in stopping:
                p.stop()
            return len(group)

    def remove(self, namespace: str, name: str) -> None:
        if name in self.replicas and self.contexts[name][0].namespace == namespace:
            self.scale(namespace, name, 0)
            self.app.backends.pop(name, None)

    def _serve(self, server: Any) -> None:
        try:
            server.run()
        except (OSError, ValueError):
            # waitress has no stop(): closing its sockets from another thread ends the loop this way.
            if not self._stopping:
                raise

    def stop(self) -> None:
        self._stopping = True
        self.secrets.stop()
        if self.cron:
            self.cron.stop()
        for server in reversed(self._servers):
            # Let in-flight requests finish before the sockets go, so no worker writes to a closed one.
            server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
            server.close()
        processes = self.processes
        for p in processes:  # all at once, then wait for each
            p.signal_stop()
        for p in processes:
            p.stop()

    def summary(self) -> str:
        lines = [f"openfaas-iam local gateway on http://127.0.0.1:{self.port}", ""]
        lines.append(f"  {'function':<15} {'route':<48} {'process':<22} schedule")
        for p in self.processes:
            route = f"http://127.0.0.1:{self.port}/function/{p.fn.name}"
            pid = p.proc.pid if p.proc else "-"
            lines.append(f"  {p.fn.name:<15} {route:<48} {f'pid {pid} :{p.port}':<22} {p.fn.schedule or ''}")
        redis = self.processes[0].env.get("redis_url") if self.processes else ""
        lines += [
            "",
            f"  issuer      {self.processes[0].env.get('issuer_url') or self.public_url + '/function/iam-discovery'}"
            if self.processes
            else "",
            f"  IAM config  {self.iam_config}",
            f"  secrets     {self.secret_store}",
            f"  cache       {redis or 'in-process (set REDIS_URL to share one through Redis)'}",
            f"  logs        {self.state_dir / 'logs'}",
        ]
        if self.signin_origin:
            lines.append(f"  sign-in     {self.signin_origin}/  (iam-token's page, on its own origin)")
        counts = {len(group) for group in self.replicas.values()}
        if counts == {1} and any(_min_replicas(fn) > 1 for fn, _, _ in self.contexts.values()):
            lines.append("  replicas    one of each (set REDIS_URL to run stack.yml's com.openfaas.scale.min)")
        if self.authz_port:
            lines.append(
                f"  proxy       http://127.0.0.1:{self.authz_port}  (iam-authz at a host root: faas-cli --gateway)"
            )
        admin = self.secrets.admin()
        if admin:
            lines.append(f"  admin       {admin[0]} / the password in {self.secret_store / 'basic-auth'}")
        if self.created:
            lines.append(f"  created     {', '.join(self.created)}")
        lines += [
            "",
            f"Try: curl http://127.0.0.1:{self.port}/function/iam-discovery/.well-known/openid-configuration",
        ]
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="openfaas-iam-gateway",
        description="Run the openfaas-iam functions locally behind a gateway that routes "
        "/function/<name>/... like OpenFaaS.",
    )
    parser.add_argument("--stack", default="stack.yml", help="the stack file (default: stack.yml)")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", "8080")), help="gateway port (env PORT, default 8080)"
    )
    parser.add_argument(
        "--signin-port",
        type=int,
        default=int(os.environ.get("SIGNIN_PORT", "8081")),
        help="port of the sign-in page's own origin, http://localhost:<port> (env SIGNIN_PORT, default 8081; 0: none)",
    )
    parser.add_argument(
        "--authz-port",
        type=int,
        default=int(os.environ.get("AUTHZ_PORT", "8082")),
        help="port serving iam-authz at its root, for faas-cli --gateway (env AUTHZ_PORT, default 8082; 0: none)",
    )
    parser.add_argument(
        "--iam-config",
        default=os.environ.get("IAM_CONFIG", "examples/iam.yaml"),
        help="IAM objects to serve as the iam-config secret (env IAM_CONFIG, default examples/iam.yaml)",
    )
    parser.add_argument("--state-dir", default=".local", help="local secrets, mounts and logs (default: .local)")
    parser.add_argument("--build-dir", default="build", help="where build contexts are assembled (default: build)")
    parser.add_argument("--no-cron", action="store_true", help="do not play cron-connector")
    args = parser.parse_args(argv)
    # Handlers first: a stop asked for while the functions start (Ctrl-C during a slow start, or
    # a signal that lands between the first answered request and the end of start-up) stops
    # every function once start-up returns, instead of killing this process with its children
    # running. The handler only sets a flag: one that took a lock (Event.set, logging) could
    # deadlock when a second signal arrives while the first is being handled.
    stopping = [False]

    def on_signal(*_: object) -> None:
        stopping[0] = True

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, on_signal)
    try:
        gw = LocalGateway(
            Path(args.stack),
            port=args.port,
            iam_config=Path(args.iam_config),
            state_dir=Path(args.state_dir),
            build_dir=Path(args.build_dir).resolve(),
            env=os.environ,
            cron=not args.no_cron,
            signin_port=args.signin_port or None,
            authz_port=args.authz_port or None,
            # Replicas share sessions, leases and keys through Redis: without it, one of each.
            replicas=None if os.environ.get("REDIS_URL") else 1,
        )
        gw.start()
    except (StackError, RuntimeError, OSError) as e:
        print(f"openfaas-iam-gateway: {e}", file=sys.stderr)
        return 1
    if stopping[0]:
        print("\nstopped while starting; stopping every function...", flush=True)
        gw.stop()
        return 130
    print(gw.summary(), flush=True)
    while not stopping[0]:
        time.sleep(0.1)
    print("\nstopping every function...", flush=True)
    gw.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
