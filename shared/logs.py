"""JSON log lines on stderr, one object per line, carrying the current trace and span ids.

Every line has ``timestamp`` (RFC 3339, UTC), ``level``, ``logger``, ``message``,
``service``, and inside a span ``trace_id``/``span_id``; ``exception`` holds the
traceback when ``exc_info`` is given, and ``extra=`` fields are added as they are.

Secrets: any field whose key looks secret (``authorization``, ``api_key``, ``password``,
``secret``, ``token``, ...) is replaced by ``[REDACTED]`` at any depth, including gRPC
metadata given as ``(key, value)`` pairs. So log request metadata as a field, e.g.
``log.info("call", extra={"metadata": context.invocation_metadata()})``, never
interpolated into the message, where no key is left to recognise it by.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import TextIO

from opentelemetry import trace

__all__ = ["REDACTED", "JsonFormatter", "configure_logging", "redact"]

REDACTED = "[REDACTED]"

# Matched against the lower-cased key with "-" read as "_" (so x-api-key, apiKey and
# proxy-authorization are all caught). Over-redacting a harmless field is the cheap error.
_SECRET_KEY = re.compile(
    r"authorization|api_?key|service_key|passw(or)?d|secret|token|credential|cookie"
)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
# "message" and "asctime" appear once another formatter (e.g. pytest's) has run.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def configure_logging(service_name: str, level: str, *, stream: TextIO | None = None) -> None:
    """Send the root logger's records to ``stream`` (default stderr) as JSON lines.

    Calling again replaces the handler installed before rather than adding a second
    one; handlers installed by others (e.g. pytest's capture) are left alone. Python
    warnings are routed through logging so they too come out as JSON.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _JsonHandler)]:
        root.removeHandler(handler)
    handler = _JsonHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service_name))
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object (no newline inside: tracebacks are escaped)."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self._service = service_name

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self._service,
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = trace.format_trace_id(span.trace_id)
            line["span_id"] = trace.format_span_id(span.span_id)
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS:
                # An extra never overwrites a standard field; it is kept under a prefix.
                name = f"extra.{key}" if key in line else key
                line[name] = REDACTED if _is_secret(key) else redact(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def redact(value: object) -> object:
    """A copy of ``value`` fit for a log: values under secret-looking keys are hidden.

    Looks into mappings, ``(key, value)`` pairs (gRPC metadata) and other collections;
    strings and scalars are returned unchanged.
    """
    if isinstance(value, Mapping):
        return {str(k): REDACTED if _is_secret(k) else redact(v) for k, v in value.items()}
    if isinstance(value, str | bytes | bytearray) or not isinstance(value, Collection):
        return value
    if isinstance(value, tuple) and len(value) == 2 and _is_secret(value[0]):
        return [value[0], REDACTED]
    return [redact(item) for item in value]


def _is_secret(key: object) -> bool:
    return isinstance(key, str) and _SECRET_KEY.search(key.lower().replace("-", "_")) is not None


def _rfc3339(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _JsonHandler(logging.StreamHandler[TextIO]):
    """Marks the handler ``configure_logging`` owns, so a second call can replace it."""
