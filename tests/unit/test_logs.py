"""JSON log lines: shape, trace context, exceptions, extras and secret redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from grpc import aio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from shared.logs import REDACTED, configure_logging, redact

ReadLines = Callable[[], list[dict[str, object]]]

log = logging.getLogger("loyalty.test")


@pytest.fixture
def read_lines() -> Iterator[ReadLines]:
    """Route the root logger to a buffer as ``configure_logging`` does; restore it after."""
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("points", "info", stream=stream)

    def lines() -> list[dict[str, object]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield lines
    for handler in set(root.handlers) - before:  # only ours: pytest swaps its own per phase
        root.removeHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_line_is_one_json_object_with_the_standard_fields(read_lines: ReadLines) -> None:
    log.info("balance is %d points", 120)

    [line] = read_lines()
    assert line["level"] == "INFO"
    assert line["logger"] == "loyalty.test"
    assert line["message"] == "balance is 120 points"
    assert line["service"] == "points"
    assert "trace_id" not in line
    assert "span_id" not in line
    stamp = str(line["timestamp"])
    assert stamp.endswith("Z")
    moment = datetime.fromisoformat(stamp)
    assert moment.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - moment).total_seconds()) < 60


def test_line_inside_a_span_carries_its_trace_and_span_ids(read_lines: ReadLines) -> None:
    # A local provider: the span context is what matters, not the global set-up.
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("earn") as span:
        log.info("earned")
    context = span.get_span_context()

    [line] = read_lines()
    assert line["trace_id"] == trace.format_trace_id(context.trace_id)
    assert line["span_id"] == trace.format_span_id(context.span_id)
    assert len(str(line["trace_id"])) == 32
    assert len(str(line["span_id"])) == 16


def test_exception_text_and_extra_fields_are_included(read_lines: ReadLines) -> None:
    try:
        raise RuntimeError("ledger unreachable")
    except RuntimeError:
        log.exception("earn failed", extra={"member_id": "m-1", "attempt": 2})

    [line] = read_lines()
    assert line["level"] == "ERROR"
    assert line["member_id"] == "m-1"
    assert line["attempt"] == 2
    exception = str(line["exception"])
    assert exception.startswith("Traceback")
    assert "RuntimeError: ledger unreachable" in exception


def test_an_extra_never_overwrites_a_standard_field(read_lines: ReadLines) -> None:
    log.info("hello", extra={"service": "spoofed"})

    [line] = read_lines()
    assert line["service"] == "points"
    assert line["extra.service"] == "spoofed"


def test_level_filters_lines(read_lines: ReadLines) -> None:
    log.debug("noise")
    log.warning("kept")

    assert [line["message"] for line in read_lines()] == ["kept"]


def test_configuring_twice_keeps_one_json_handler(read_lines: ReadLines) -> None:
    stream = io.StringIO()
    configure_logging("points", "INFO", stream=stream)
    log.info("once")

    assert read_lines() == []  # the first handler was replaced, not kept alongside
    assert len(stream.getvalue().splitlines()) == 1


def test_secret_extras_are_redacted_at_any_depth(read_lines: ReadLines) -> None:
    metadata = aio.Metadata(("authorization", "Bearer s3cret"), ("x-request-id", "r-1"))
    log.info(
        "call",
        extra={
            "authorization": "Bearer s3cret",
            "metadata": metadata,
            "pairs": (("x-api-key", "s3cret"),),
            "request": {"member": "m-1", "auth": {"password": "s3cret", "apiKey": "s3cret"}},
            "service_key": "s3cret",
        },
    )

    [line] = read_lines()
    assert "s3cret" not in json.dumps(line)
    assert line["authorization"] == REDACTED
    assert line["metadata"] == [["authorization", REDACTED], ["x-request-id", "r-1"]]
    assert line["pairs"] == [["x-api-key", REDACTED]]
    assert line["request"] == {"member": "m-1", "auth": {"password": REDACTED, "apiKey": REDACTED}}
    assert line["service_key"] == REDACTED


def test_redact_leaves_harmless_values_alone() -> None:
    value = {"member_id": "m-1", "lines": [{"sku": "A", "qty": 2}], "note": "authorization"}
    assert redact(value) == value
    assert redact("Bearer abc") == "Bearer abc"
    assert redact(3) == 3
