"""OpenTelemetry traces for web, pools and beat: off unless the standard OTEL_* variables ask for them.

One click is one trace: the Django request span, the Celery publish span inside
it, the task's run span in a pool (the trace context travels in the message's
headers) and the provider call the task makes with requests. Tracing is on when
`OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) or an OTLP endpoint is
set (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), and off
with `OTEL_SDK_DISABLED=true`. Everything else (endpoint, headers, sampler, batch
delays, `OTEL_SERVICE_NAME`) is read by the SDK itself from its standard variables.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:  # the SDK is imported by a process that traces, never by the others (130 ms each)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

SERVICE_PREFIX = "f_brain"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

_provider: TracerProvider | None = None


def exporter_name() -> str:
    """The trace exporter the environment asks for: `otlp`, `console`, or `none` (the default)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "none"
    named = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        return named
    return "otlp" if any(os.environ.get(variable) for variable in ENDPOINT_VARIABLES) else "none"


def _instrumentors() -> tuple:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    return DjangoInstrumentor(), CeleryInstrumentor(), RequestsInstrumentor()


def _exporter(name: str) -> SpanExporter:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    if name == "otlp":
        # OTLP over HTTP/protobuf: the collector's port 4318, no gRPC stack in the image.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    raise ImproperlyConfigured(f"OTEL_TRACES_EXPORTER={name!r}: this project ships otlp, console or none")


def _resource(role: str) -> Resource:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    # OTEL_SERVICE_NAME, when set, names every process alike; otherwise each role names itself.
    named = os.environ.get("OTEL_SERVICE_NAME")
    return Resource.create({} if named else {SERVICE_NAME: f"{SERVICE_PREFIX}-{role}"})


def start_tracing(role: str, processor: SpanProcessor | None = None) -> TracerProvider | None:
    """Trace this process (web, a pool's child, beat) if the environment asks for it, or into `processor`.

    Call it after a fork (the web server's workers, a pool's children): the batch
    processor's export thread does not survive one.
    """
    global _provider
    if _provider is not None:
        return _provider
    if processor is None:
        name = exporter_name()
        if name == "none":
            return None
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processor = BatchSpanProcessor(_exporter(name))
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=_resource(role))
    provider.add_span_processor(processor)
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(provider)  # once per process, as the API allows
    # The Django instrumentation adds its middleware to settings.MIDDLEWARE, so this
    # runs before the WSGI handler loads its middleware.
    for instrumentor in _instrumentors():
        instrumentor.instrument(tracer_provider=provider)
    _provider = provider
    return provider


def stop_tracing() -> None:
    """Export what is buffered and remove the instrumentations (a pool child's exit, a test's end)."""
    global _provider
    if _provider is None:
        return
    for instrumentor in _instrumentors():
        instrumentor.uninstrument()
    _provider.shutdown()
    _provider = None
