"""The fake's HTTP face: MTurk's JSON 1.1 requester endpoint plus the worker site's routes.

Routes:

- ``POST /`` with ``X-Amz-Target: MTurkRequesterServiceV20170117.<Operation>`` and a
  SigV4-signed JSON body: the requester API (what boto3 calls);
- ``POST /mturk/externalSubmit`` (form-encoded, ``assignmentId`` + at least one field):
  where the HIT page's form posts the finished work, as on MTurk;
- ``POST /_worker/accept`` ``{"hitId", "workerId"}`` -> ``{"assignmentId", "url"}``,
  ``GET /_worker/preview?hitId=`` -> ``{"url"}``, ``POST /_worker/return``
  ``{"assignmentId"}``: what a worker's clicks on the worker site would do.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from markets.mturk.fake import sigv4
from markets.mturk.fake.service import FakeMTurk, Fault

TARGET_PREFIX = "MTurkRequesterServiceV20170117."
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_BODY_BYTES = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like AWS endpoints; every reply has a length
    # Headers and body in one segment, sent at once (Nagle + delayed ACK cost 40 ms a call).
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: FakeMTurkServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read the fake's state, not its access log

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise Fault("RequestEntityTooLarge", "request body too large", status=413)
        return self.rfile.read(length) if length else b""

    def _reply(
        self, status: int, payload: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", f"fake-{id(payload):x}")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _reply_json(
        self, status: int, data: dict[str, Any], content_type: str = "application/json"
    ) -> None:
        self._reply(status, json.dumps(data, default=_json_default).encode(), content_type)

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        try:
            body = self._body()
            if parts.path == "/" and self.headers.get("X-Amz-Target"):
                self._requester_api(parts.path, parts.query, body)
            elif parts.path == "/mturk/externalSubmit":
                fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
                assignment_id = self.server.fake.external_submit(fields)
                page = (
                    "<!doctype html><title>Submitted</title>"
                    f"<p>Assignment {assignment_id} submitted.</p>"
                )
                self._reply(200, page.encode(), "text/html; charset=utf-8")
            elif parts.path == "/_worker/accept":
                data = _json_object(body)
                assignment_id, url = self.server.fake.accept(
                    str(data.get("hitId", "")), str(data.get("workerId", ""))
                )
                self._reply_json(200, {"assignmentId": assignment_id, "url": url})
            elif parts.path == "/_worker/return":
                self.server.fake.return_assignment(str(_json_object(body).get("assignmentId", "")))
                self._reply_json(200, {})
            else:
                self._reply_json(404, {"error": f"no route {parts.path}"})
        except Fault as fault:
            if self.headers.get("X-Amz-Target"):
                self._reply_json(fault.status, fault.body(), JSON_CONTENT_TYPE)
            else:
                self._reply_json(fault.status, {"error": fault.message})

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        try:
            if parts.path == "/_worker/preview":
                hit_id = (parse_qs(parts.query).get("hitId") or [""])[0]
                self._reply_json(200, {"url": self.server.fake.preview_url(hit_id)})
            else:
                self._reply_json(404, {"error": f"no route {parts.path}"})
        except Fault as fault:
            self._reply_json(fault.status, {"error": fault.message})

    def _requester_api(self, path: str, query: str, body: bytes) -> None:
        target = self.headers.get("X-Amz-Target", "")
        if not target.startswith(TARGET_PREFIX):
            raise Fault("UnknownOperationException", f"Unknown target {target!r}")
        fake = self.server.fake
        sigv4.verify(
            method="POST",
            path=path,
            query=query,
            headers=dict(self.headers.items()),
            body=body,
            credentials=fake.credentials,
            region=fake.region,
        )
        try:
            params = json.loads(body or b"{}")
        except ValueError as error:
            raise Fault("SerializationException", f"request body is not JSON: {error}") from error
        result = fake.handle(target[len(TARGET_PREFIX) :], params)
        self._reply_json(200, result, JSON_CONTENT_TYPE)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError as error:
        raise Fault("WorkerError", f"body is not JSON: {error}", status=400) from error
    if not isinstance(data, dict):
        raise Fault("WorkerError", "body must be a JSON object", status=400)
    return data


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(f"cannot serialise {type(value).__name__}")


class FakeMTurkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeMTurk, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.fake = fake
        self.url = f"http://{host}:{self.server_address[1]}"
        fake.submit_base_url = self.url


@contextmanager
def serve_fake_mturk(
    fake: FakeMTurk | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[FakeMTurkServer]:
    """Run the fake on a loopback port in a background thread for the duration of the block."""
    server = FakeMTurkServer(fake or FakeMTurk(), host, port)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-mturk", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
