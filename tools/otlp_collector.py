"""A minimal OTLP/HTTP trace receiver on loopback: what worker processes export, for tests to read."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as a process exported it (ids in hex, as the SDK prints them)."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str


class Collector(ThreadingHTTPServer):
    """Keeps every span received, in arrival order."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """The base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces)."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def received(self) -> list[ReceivedSpan]:
        """A copy of the spans so far."""
        with self.lock:
            return list(self.spans)


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != TRACES_PATH:
            self.send_error(404)
            return
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope_spans in resource_spans.scope_spans:
                spans.extend(ReceivedSpan(service, span.name, span.trace_id.hex(), span.span_id.hex(),
                                          span.parent_span_id.hex()) for span in scope_spans.spans)
        with self.server.lock:
            self.server.spans.extend(spans)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the http.server API
        """Quiet: the test reads spans, not an access log."""


def start_collector() -> Collector:
    """A collector serving in a daemon thread; call shutdown() and server_close() when done."""
    collector = Collector()
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    return collector
