"""OpenTelemetry traces of Slipway's work: off unless the standard ``OTEL_*`` variables ask.

Every Temporal client Slipway makes (the worker's, the server's command processes') carries
Temporal's ``TracingInterceptor``, so a trace context travels with each workflow start,
signal and update into the workflow and its activities. Spans are only *recorded and
exported* when the process configured an SDK tracer provider: :func:`configure` does that
when ``OTEL_TRACES_EXPORTER`` (``otlp`` or ``console``) or an ``OTEL_EXPORTER_OTLP_*``
endpoint is set, and ``OTEL_SDK_DISABLED`` is not ``true``. Without it the API's no-op
provider passes the caller's context on unchanged: a trace that began at the client's
request (its ``traceparent`` header) still continues in the workers that do export.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask this process to export traces."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return any(environ.get(name) for name in ENDPOINTS)


def _exporter(environ: Mapping[str, str]) -> SpanExporter:
    kind = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if kind == "console":
        return ConsoleSpanExporter()
    if kind != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={kind!r} is not supported here: use otlp, "
                         "console or none")
    # Imported here: only a process that exports over OTLP pays for the protobuf stack.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_*


def configure(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install a tracer provider exporting as the OTEL_* variables say (batching, so a slow
    collector never slows a release); False, and nothing installed, when they ask for none."""
    if not wanted(environ):
        return False
    provider = TracerProvider(resource=Resource.create(
        {"service.name": environ.get("OTEL_SERVICE_NAME") or service}))
    provider.add_span_processor(BatchSpanProcessor(_exporter(environ)))
    trace.set_tracer_provider(provider)
    return True


def interceptors() -> list[Interceptor]:
    """The interceptors of every Temporal client Slipway makes."""
    return [TracingInterceptor()]


def flush() -> None:
    """Export what this process recorded, before it ends (a no-op without a provider)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(5000)


def continue_trace(traceparent: str) -> None:
    """Make the caller's W3C ``traceparent`` the current context of this process (a command
    process runs one command): what it starts in Temporal joins the caller's trace."""
    if traceparent:
        context.attach(propagate.extract({"traceparent": traceparent}))
