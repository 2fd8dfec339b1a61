"""Audit sinks never block or fail a request: Redis down, a webhook that fails and recovers."""

from __future__ import annotations

import http.server
import json
import threading
import time

import redis

from openfaas_iam.audit import AuditLog, RedisStreamSink, WebhookSink, api_event, sign_body


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

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
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
        start = time.monotonic()
        for i in range(3):
            sink.send({"n": i})
        assert time.monotonic() - start < 0.1, "sending never waits for the receiver"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sink.delivered < 3:
            time.sleep(0.05)
        assert sink.delivered == 3 and sink.dropped == 0
        headers, body = got[0]
        assert json.loads(body) == [{"n": 0}, {"n": 1}, {"n": 2}]
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
