"""OpenTelemetry spans of the seed decision: intake, policy, every step attempt and the
compensation, in one trace, tagged with the decision and the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from ulid import ULID

from controlplane.models import ServiceAccount
from runs import tracing
from runs.models import RunStatus, StepExecution, WorkflowRun
from tests.conftest import drain, submit
from tests.controlplane.test_mcp import seed_scenario

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Record this test's spans in memory (a tracer provider is installed once per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()  # the provider keeps it, exporting nothing from now on


def test_seed_decision_spans_form_one_trace(
    agent: ServiceAccount, spans: InMemorySpanExporter
) -> None:
    decision = submit(agent, seed_scenario(agent))
    drain()
    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.COMPENSATED

    recorded = spans.get_finished_spans()
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in recorded:
        by_name.setdefault(span.name, []).append(span)
    credit = StepExecution.objects.get(run=run, step_id="credit_target_channel", kind="forward")
    assert credit.attempts == 3  # Google answers 429 until the retries are spent
    assert {name: len(found) for name, found in by_name.items()} == {
        "decision.intake": 1,
        "policy.evaluate": 1,
        "step.attempt": 1 + credit.attempts,  # the debit once, the credit three times
        "compensation.attempt": 1,
    }

    expected_trace = tracing.trace_id_for(decision.trace_id)
    assert {span.context.trace_id for span in recorded} == {expected_trace}
    for span in recorded:
        assert span.attributes is not None
        assert span.attributes["backstop.decision_id"] == decision.id
        if span.name != "policy.evaluate":  # evaluated before the run exists
            assert span.attributes["backstop.run_id"] == run.run_id

    intake, policy = by_name["decision.intake"][0], by_name["policy.evaluate"][0]
    assert policy.parent is not None and policy.parent.span_id == intake.context.span_id
    assert policy.attributes is not None and policy.attributes["backstop.outcome"] == "allow"

    attempts = sorted(by_name["step.attempt"], key=lambda span: span.start_time or 0)
    assert [
        (
            s.attributes["backstop.step_id"],
            s.attributes["backstop.attempt"],
            s.attributes["backstop.outcome"],
        )
        for s in attempts
        if s.attributes is not None
    ] == [
        ("debit_source_channel", 1, "applied"),
        ("credit_target_channel", 1, "rate_limit"),
        ("credit_target_channel", 2, "rate_limit"),
        ("credit_target_channel", 3, "rate_limit"),
    ]
    assert [s.status.status_code for s in attempts] == [
        StatusCode.UNSET,
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.ERROR,
    ]
    (compensation,) = by_name["compensation.attempt"]
    assert compensation.attributes is not None
    assert compensation.attributes["backstop.outcome"] == "applied"
    assert compensation.attributes["backstop.attempt"] == 1


def test_trace_id_is_the_ulid_of_the_decision_trace() -> None:
    ulid = ULID()
    assert tracing.trace_id_for(f"trc_{ulid}") == int.from_bytes(ulid.bytes, "big")
    # Not a ULID: a hash of it, still stable and never the invalid id 0.
    assert tracing.trace_id_for("trc_seed") == tracing.trace_id_for("trc_seed") != 0
