"""Audit sinks never block or fail a request: Redis down, a webhook that fails and recovers."""

from __future__ import annotations

import http.server
import json
import threading
import time

import redis

from openfaas_iam.observability.audit import AuditLog, RedisStreamSink, WebhookSink, api_event, sign_body


def test_redis_down_does_not_fail_a_request(throwaway_redis, capsys) -> None:
    client = redis.Redis.from_url(throwaway_redis.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    sink = RedisStreamSink(client, "audit")
    audit = AuditLog(sinks=[sink])
    audit.api(api_event({"sub": "fed:a"}, "/system/functions", "POST", ["Function:Create"], 202))
    assert client.xlen("audit") == 1
    throwaway_redis.stop()
    start = time.monotonic()
    for _ in range(5):
        audit.api(api_event({"sub": "fed:a"}, "/system/functions", "POST", ["Function:Create"], 202))
    assert time.monotonic() - start < 5
    assert sink.failures == 5
    assert capsys.readouterr().out.count('"event":"api_access"') == 6, "the log line is always written"


def test_get_is_not_audited_by_default_but_denials_are(capsys) -> None:
    audit = AuditLog()
    audit.api(api_event(None, "/system/functions", "GET", ["Function:List"], 200))
    audit.api(api_event(None, "/system/functions", "GET", ["Function:List"], 403), denied=True)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and json.loads(out[0])["response_code"] == 403


def test_webhook_retries_with_backoff_and_signs_batches() -> None:
    got: list[tuple[dict, bytes]] = []
    failures = {"left": 2}

    gate = threading.Event()  # the receiver answers nothing until the test has sent everything

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            gate.wait(10)
            if failures["left"] > 0:
                failures["left"] -= 1
                self.send_response(503)
            else:
                got.append((dict(self.headers.items()), body))
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink = WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/", lambda: b"k", flush_interval=0.2, backoff=0.05)
    try:
        # Not a wall-clock bound (a busy machine can pause this thread for 100 ms): the receiver holds
        # every request until the gate opens, so sends that waited for it would still be here.
        for i in range(3):
            sink.send({"n": i})
        assert sink.delivered == 0 and got == [], "sending never waits for the receiver"
        gate.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sink.delivered < 3:
            time.sleep(0.05)
        assert sink.delivered == 3 and sink.dropped == 0
        # One batch, or more when this thread was paused longer than flush_interval between sends:
        # every event once, in order, each batch signed.
        assert [e for _, body in got for e in json.loads(body)] == [{"n": 0}, {"n": 1}, {"n": 2}]
        for headers, body in got:
            assert headers["X-Openfaas-Signature-256"] == sign_body(b"k", body)
    finally:
        sink.close()
        server.shutdown()


def test_webhook_queue_is_bounded() -> None:
    sink = WebhookSink("http://127.0.0.1:9/", lambda: b"k", max_queue=10, flush_interval=5, retries=1)
    try:
        for i in range(50):
            sink.send({"n": i})
        assert sink.queue.qsize() <= 10 and sink.dropped >= 39
    finally:
        sink.close()


class StuckStream:
    """A log pipe that blocks on its first write until released (a stuck log shipper)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.text: list[str] = []

    def write(self, text: str) -> None:
        self.entered.set()
        self.release.wait()
        self.text.append(text)

    def flush(self) -> None:
        pass


def test_a_stuck_log_never_blocks_a_request_and_lost_lines_are_counted() -> None:
    stream = StuckStream()
    audit = AuditLog(stream, background=True, max_queue=5)  # type: ignore[arg-type]
    audit.exchange(granted=True, subject="fed:first", issuer="https://idp", client="", policies=["p"], jti="j")
    assert stream.entered.wait(5), "the writer thread took the first line"
    done = threading.Event()

    def requests() -> None:  # 20 exchanges while the pipe is stuck
        for i in range(20):
            audit.exchange(granted=False, subject=f"fed:{i}", issuer="https://idp", client="", reason="no")
        done.set()

    threading.Thread(target=requests, daemon=True).start()
    assert done.wait(5), "emit blocked on a stuck log"
    assert audit.writer is not None and audit.writer.dropped == 15  # 5 queued, 15 lost
    stream.release.set()
    audit.flush()
    lines = [json.loads(line) for chunk in stream.text for line in chunk.splitlines()]
    assert [e["subject"] for e in lines if e["event"] == "token_exchange"] == [
        "fed:first",
        *(f"fed:{i}" for i in range(5)),
    ]
    assert [e["lost"] for e in lines if e["event"] == "audit_lost"] == [15]


def test_every_exchange_line_appears_when_the_log_keeps_up(capsys) -> None:
    audit = AuditLog(background=True)
    for i in range(500):
        audit.exchange(granted=False, subject=f"fed:{i}", issuer="https://idp", client="", reason="no")
    audit.flush()
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["subject"] for e in out] == [f"fed:{i}" for i in range(500)]
    assert audit.writer is not None and audit.writer.dropped == 0
