"""integrations/tracing.py: off unless OTEL_* asks, the caller's trace continued."""

from __future__ import annotations

import pytest
from opentelemetry import context, trace
from temporalio.contrib.opentelemetry import TracingInterceptor

from integrations import tracing


@pytest.mark.parametrize(("environ", "wanted"), [
    ({}, False),
    ({"OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
])
def test_traces_are_exported_only_when_the_otel_variables_ask(environ: dict[str, str],
                                                             wanted: bool) -> None:
    assert tracing.wanted(environ) is wanted


def test_nothing_is_installed_by_default_and_an_unknown_exporter_is_refused() -> None:
    assert tracing.configure("slipway-test", {}) is False
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER='zipkin' is not supported"):
        tracing.configure("slipway-test", {"OTEL_TRACES_EXPORTER": "zipkin"})


def test_every_temporal_client_carries_the_tracing_interceptor() -> None:
    assert [type(i) for i in tracing.interceptors()] == [TracingInterceptor]


def test_the_callers_traceparent_becomes_the_current_context() -> None:
    token = context.attach(context.Context())
    try:
        tracing.continue_trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        current = trace.get_current_span().get_span_context()
        assert format(current.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert format(current.span_id, "016x") == "00f067aa0ba902b7" and current.is_remote
    finally:
        context.detach(token)
