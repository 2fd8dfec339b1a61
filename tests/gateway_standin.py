"""The OpenFaaS gateway the tests talk to: the local provider (`localgw.provider`), recorded.

No real gateway runs here, so the tests use the same in-memory provider `make run` serves
(one implementation, written from real-peers.md: admin basic auth, Go's reading of bodies,
faas-netes' namespaces, secrets never returned, ndjson logs with RFC 3339 timestamps), in
its several-namespaces mode (faasd, Enterprise) so policies over `staging:*` can be tried.
This module adds only what tests need around it:

- every request that reached it is recorded, with the target faas-netes and faasd would act
  on (`go_decode`), so a test can prove that nothing refused was ever forwarded and that
  what was forwarded acts on exactly the decided target;
- faults: `stop()` closes the port and cuts open connections, `restart()` brings it back;
  `log_lines`/`log_delay` make every log stream a fixed number of lines at a fixed pace;
- with a Kubernetes stand-in given, secret writes also become Secrets there (one key named
  like the secret), so a KubeletStandIn can mount them late.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from localgw.go_decode import faas_netes_target, faasd_target, secrets_mounted, unmarshal
from localgw.provider import LogLine, MemorySecrets, Provider

NAMESPACES = ["openfaas-fn", "staging", "prod", "dev-alice", "dev-bob", "dev"]
# Every field a test reads back from a recorded body, decoded the way Go does.
_FIELDS = ("service", "image", "namespace", "functionName", "serviceName", "replicas", "name", "value", "secrets")


class GatewayStandIn:
    def __init__(self, credentials: Callable[[], tuple[str, str]], kube: Any = None) -> None:
        self.kube = kube

        def mirror(namespace: str, name: str, value: bytes) -> None:
            if kube is not None:
                kube.put_secret(namespace, name, {name: base64.b64encode(value).decode()})

        self._secret_store = MemorySecrets(on_write=mirror)
        self.provider = Provider(credentials, namespaces=list(NAMESPACES), secrets=self._secret_store)
        self.provider.register({"name": "figlet", "namespace": "openfaas-fn", "image": "ghcr.io/openfaas/figlet"})
        self.provider.log_source = self._synthetic_logs
        self.requests: list[dict[str, Any]] = []
        self.log_delay = 0.05
        self.log_lines = 3
        self.connections: set[Any] = set()
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                stand_in.connections.add(self.connection)

            def finish(self) -> None:
                stand_in.connections.discard(self.connection)
                super().finish()

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                stand_in._record(self.command, self.path, raw, self.headers.get("Authorization"))
                self._wsgi(raw)

            def _wsgi(self, raw: bytes) -> None:
                url = urlsplit(self.path)
                environ = {
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": url.path,
                    "QUERY_STRING": url.query,
                    "CONTENT_LENGTH": str(len(raw)),
                    "wsgi.input": io.BytesIO(raw),
                    "HTTP_AUTHORIZATION": self.headers.get("Authorization", ""),
                }
                sent: dict[str, Any] = {}

                def start_response(status: str, headers: list[tuple[str, str]]) -> None:
                    sent["status"], sent["headers"] = status, headers

                body = stand_in.provider(environ, start_response)
                code = int(sent["status"].split(" ", 1)[0])
                headers = sent["headers"]
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                chunked = not any(k.lower() == "content-length" for k, _ in headers)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for chunk in body:
                        if chunked:
                            if chunk:
                                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                                self.wfile.flush()
                        else:
                            self.wfile.write(chunk)
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass
                finally:
                    close = getattr(body, "close", None)
                    if close is not None:
                        close()

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.handler_class = Handler
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    # -- what tests read and set -------------------------------------------------------------

    @property
    def functions(self) -> dict[tuple[str, str], dict[str, Any]]:
        return self.provider.functions

    @property
    def secrets(self) -> dict[tuple[str, str], Any]:
        return self._secret_store.values

    @property
    def namespaces(self) -> list[str]:
        return self.provider.namespaces

    def _synthetic_logs(self, namespace: str, name: str, since: Any, tail: int, follow: bool, stop: Any):
        """Fault injection: `log_lines` lines, `log_delay` apart, whatever the function wrote."""
        del since, tail, follow
        lines: Iterator[LogLine] = iter(())
        for i in range(self.log_lines):
            if stop():
                return lines
            yield LogLine(time.time(), f"{name}-0", f"line {i}")
            time.sleep(self.log_delay)
        return lines

    def _record(self, method: str, target: str, raw: bytes, authorization: str | None) -> None:
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            body = unmarshal(raw, _FIELDS)
            where = faas_netes_target(method, url.path, query, raw)
            where_faasd = faasd_target(method, url.path, query, raw)
            mounts = secrets_mounted(raw) if url.path == "/system/functions" else []
        except (ValueError, RecursionError):
            body, where, where_faasd, mounts = {"_raw": raw.decode("utf-8", "replace")}, None, None, []
        expected = self.provider.credentials()
        authed = (
            expected is not None
            and authorization == "Basic " + base64.b64encode(f"{expected[0]}:{expected[1]}".encode()).decode()
        )
        self.requests.append(
            {
                "method": method,
                "path": url.path,
                "query": query,
                "raw_query": url.query,
                "body": body,
                "raw": raw,
                "authed": authed,
                "target": where,
                "target_faasd": where_faasd,
                "secrets": mounts,
            }
        )

    # -- faults ------------------------------------------------------------------------------

    def start(self) -> GatewayStandIn:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """The gateway goes down: the port is closed and open keep-alive connections are cut."""
        self.server.shutdown()
        self.server.server_close()
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def restart(self) -> None:
        """The gateway comes back on the same port."""
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self.handler_class)
        self.start()
