"""OpenTelemetry spans of a decision: intake, policy evaluation, each step attempt and
each compensation, in one trace per decision.

The exporter comes from the standard ``OTEL_*`` environment variables only. With
``OTEL_TRACES_EXPORTER`` unset or ``none`` no provider is installed: the tracer is the
API's no-op one, nothing is exported and nothing is sent over the network. ``otlp``
uses ``opentelemetry-exporter-otlp`` (which reads ``OTEL_EXPORTER_OTLP_*``) and
``console`` prints spans to stderr.

The intake (web process, at once) and the runner (another process, later) never share
a context, so the OpenTelemetry trace id is derived from the decision's ``trc_`` id: its
ULID's 128 bits. Every span of a decision is a child of the same remote parent, a span
id derived from it too, so a tracing backend shows them as one trace.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    ProxyTracerProvider,
    Span,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
)
from ulid import ULID

from mutations.connectors import PlatformError

logger = logging.getLogger("runs.tracing")

TRACER_NAME = "backstop"
EXPORTER_VARIABLE = "OTEL_TRACES_EXPORTER"

_configured = threading.Lock()
_done = False
_OFF = nullcontext()  # reusable: what a span is when tracing is off, nothing allocated


def configure() -> None:
    """Install a tracer provider with the exporter ``OTEL_TRACES_EXPORTER`` names, once per
    process; do nothing when it is unset or ``none`` or a provider is installed already."""
    global _done
    with _configured:
        if _done:
            return
        _done = True
        names = [
            name.strip().lower()
            for name in os.environ.get(EXPORTER_VARIABLE, "").split(",")
            if name.strip()
        ]
        names = [name for name in names if name != "none"]
        if not names or not isinstance(trace.get_tracer_provider(), ProxyTracerProvider):
            return
        exporters = [exporter for exporter in map(_exporter, names) if exporter is not None]
        if not exporters:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; "backstop"
        # when they name no service.
        resource = Resource.create()
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "backstop"}))
        provider = TracerProvider(resource=resource)
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        logger.info("tracing: exporting spans with %s", ", ".join(names))


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name == "otlp":
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        )
        module = "grpc" if protocol == "grpc" else "http"
        try:
            exporters = importlib.import_module(
                f"opentelemetry.exporter.otlp.proto.{module}.trace_exporter"
            )
        except ImportError:
            logger.error(
                "tracing: OTEL_TRACES_EXPORTER=otlp but opentelemetry-exporter-otlp is not "
                "installed; no spans are exported (pip install opentelemetry-exporter-otlp)"
            )
            return None
        return exporters.OTLPSpanExporter()
    logger.error("tracing: unknown OTEL_TRACES_EXPORTER %r ignored (otlp, console, none)", name)
    return None


def enabled() -> bool:
    """Return True when spans are recorded: a tracer provider is installed (by
    ``configure`` or by a test)."""
    if not _done:
        configure()
    provider = trace.get_tracer_provider()
    return not isinstance(provider, (ProxyTracerProvider, trace.NoOpTracerProvider))


def trace_id_for(backstop_trace_id: str) -> int:
    """Return the OpenTelemetry trace id of a decision's ``trc_`` id: the 128 bits of its
    ULID, or of a sha256 of it when it is not one."""
    _, _, chars = backstop_trace_id.partition("_")
    try:
        value = int.from_bytes(ULID.from_str(chars).bytes, "big")
    except ValueError:
        value = 0
    if not value:
        value = int.from_bytes(hashlib.sha256(backstop_trace_id.encode()).digest()[:16], "big")
    return value


def decision_context(backstop_trace_id: str) -> Context:
    """Return a context whose parent is the decision: the spans started in it, in any
    process, belong to the decision's trace."""
    digest = hashlib.sha256(f"span:{backstop_trace_id}".encode()).digest()
    parent = SpanContext(
        trace_id=trace_id_for(backstop_trace_id),
        span_id=int.from_bytes(digest[:8], "big") or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


@contextmanager
def _span(name: str, backstop_trace_id: str, attributes: dict[str, Any]) -> Iterator[Span]:
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name, context=decision_context(backstop_trace_id), attributes=attributes
    ) as span:
        yield span


def decision_span(
    name: str, backstop_trace_id: str, **attributes: Any
) -> Any:  # a context manager yielding a Span, or None when tracing is off
    """Start a span of the decision's trace (``backstop.<key>`` attributes); when tracing
    is off, return a no-op context manager that yields None."""
    if not enabled():
        return _OFF
    return _span(
        name,
        backstop_trace_id,
        {f"backstop.{key}": value for key, value in attributes.items() if value is not None},
    )


def child_span(name: str, **attributes: Any) -> Any:
    """Start a span under the current one (e.g. the policy evaluation under the intake);
    a no-op context manager when tracing is off."""
    if not enabled():
        return _OFF
    return trace.get_tracer(TRACER_NAME).start_as_current_span(
        name,
        attributes={
            f"backstop.{key}": value for key, value in attributes.items() if value is not None
        },
    )


def set_attributes(span: Span | None, **attributes: Any) -> None:
    """Add ``backstop.<key>`` attributes to a span (nothing when tracing is off)."""
    if span is not None:
        for key, value in attributes.items():
            if value is not None:
                span.set_attribute(f"backstop.{key}", value)


def annotate(**attributes: Any) -> None:
    """Add ``backstop.<key>`` attributes to the current span (nothing when tracing is off)."""
    if enabled():
        set_attributes(trace.get_current_span(), **attributes)


def attempt_outcome(span: Span, error: PlatformError | None) -> None:
    """Tag an attempt's span with its outcome: ``applied``, or the error's class (and the
    span's status is then an error, with the platform's message)."""
    if error is None:
        set_attributes(span, outcome="applied")
        return
    set_attributes(span, outcome=error.kind, error=error.message)
    span.set_status(Status(StatusCode.ERROR, error.message))
