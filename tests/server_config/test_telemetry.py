"""One click is one trace across processes: the POST and its publish here, the task and its provider call in a pool.

This process records its spans with the SDK's in-memory exporter; the pool, a
real worker process, exports its spans over OTLP/HTTP to a collector on loopback,
configured only by the standard OTEL_* variables.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from server_config.telemetry import exporter_name, start_tracing, stop_tracing
from tests.factories import make_city
from tools.harness import wait_for
from tools.otlp_collector import Collector, start_collector

TASK = "weather.tasks.fetch_weather_for_city"


def _hex(number: int, digits: int) -> str:
    return format(number, f"0{digits}x")


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = start_collector()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def traced_here() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    start_tracing("web", processor=SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        stop_tracing()


@pytest.mark.integration
def test_a_click_is_one_trace_from_the_post_to_the_provider_call(live, sim, collector, traced_here):
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    live.start("interactive", extra_env=tracing)
    try:
        city = make_city()
        client = Client()
        accepted = client.post(f"/api/cities/{city.pk}/refresh")
        assert accepted.status_code == 202, accepted.content
        task_id = accepted.json()["task_id"]
        wait_for(lambda: client.get(accepted.json()["status_url"]).json()["state"] == "SUCCESS", timeout=30,
                 what="the fetch to succeed")
        here = traced_here.get_finished_spans()
        post = next(s for s in here if s.kind == SpanKind.SERVER and s.attributes.get("http.method") == "POST")
        publish = next(s for s in here if s.name == f"apply_async/{TASK}")
        assert publish.attributes["messaging.message.id"] == task_id
        trace_id = _hex(post.context.trace_id, 32)
        assert _hex(publish.context.trace_id, 32) == trace_id
        assert publish.parent.span_id == post.context.span_id, "published inside the request"

        def pool_spans() -> tuple | None:
            spans = [s for s in collector.received() if s.trace_id == trace_id]
            run = next((s for s in spans if s.name == f"run/{TASK}"), None)
            call = next((s for s in spans if run and s.parent_span_id == run.span_id and s.name == "GET"), None)
            return (run, call) if call else None

        run, call = wait_for(pool_spans, timeout=30, what="the pool's spans of this trace")
        assert run.parent_span_id == _hex(publish.context.span_id, 16), "the task runs under its publish"
        assert run.service == "f_brain-worker-interactive"
        assert call.service == run.service
        assert sim.stats()["requests"] == 1, "one provider call, and it is the one traced"
    finally:
        live.start("interactive")  # untraced again, for the tests after this one


def test_tracing_is_off_unless_the_environment_asks(monkeypatch):
    for variable in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                     "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    assert exporter_name() == "none"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert exporter_name() == "otlp"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert exporter_name() == "none"
