"""Logs for every fourflow process: plain text for a terminal, or JSON lines for a
collector, on standard error.

A JSON line carries ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``logger`` and
``msg``, then every field passed with ``extra={...}`` (``stream``, ``seq``, ``tx`` …) and
every field bound with ``log_context`` (the API binds ``request_id`` for the length of a
request), and ``exc`` with the traceback when there is one::

    {"ts": "2026-11-27T05:00:00.123Z", "level": "INFO", "logger": "fourflow.access",
     "msg": "GET /v1/health 200", "method": "GET", "status": 200, "request_id": "…"}

The text format puts the same fields after the message as ``key=value``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, Literal

from ledger.errors import InvalidInput

__all__ = ["FORMATS", "JsonFormatter", "TextFormatter", "configure_logging", "log_context"]

FORMATS: Final = ("text", "json")
LogFormat = Literal["text", "json"]

# what every LogRecord has; anything else on a record came in through ``extra`` (but
# uvicorn's terminal colours)
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_context: ContextVar[Mapping[str, Any] | None] = ContextVar("fourflow_log_context", default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record logged in this context (this task or thread, and
    the worker threads it hands sync work to)."""
    merged = {**(_context.get() or {}), **fields}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(_context.get() or {})
    fields.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD)
    return fields


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def _timestamp(created: float) -> str:
    return (
        datetime.fromtimestamp(created, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class JsonFormatter(logging.Formatter):
    """One JSON object a line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=_plain, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger message key=value …``, then the traceback."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = _fields(record)
        if fields:
            text += " " + " ".join(
                f"{key}={json.dumps(value, default=_plain, ensure_ascii=False)}"
                if not isinstance(value, str) or not value or " " in value
                else f"{key}={value}"
                for key, value in fields.items()
            )
        return text


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler configure_logging installs (and replaces when called again)."""


def configure_logging(fmt: str | None = None, level: str | int | None = None) -> None:
    """Send every logger's records (uvicorn's too) to standard error in ``fmt``
    (``$FOURFLOW_LOG_FORMAT``: text, the default, or json) from ``level`` up
    (``$FOURFLOW_LOG_LEVEL``: DEBUG, INFO, the default, WARNING, ERROR)."""
    fmt = (fmt or os.environ.get("FOURFLOW_LOG_FORMAT") or "text").strip().lower()
    if fmt not in FORMATS:
        raise InvalidInput(
            f"FOURFLOW_LOG_FORMAT: {fmt!r} is not one of {', '.join(FORMATS)}",
            code="bad_log_config",
        )
    raw = level if level is not None else os.environ.get("FOURFLOW_LOG_LEVEL") or "INFO"
    number = raw if isinstance(raw, int) else logging.getLevelName(raw.strip().upper())
    if not isinstance(number, int):
        raise InvalidInput(
            f"FOURFLOW_LOG_LEVEL: {raw!r} is not DEBUG, INFO, WARNING, ERROR or CRITICAL",
            code="bad_log_config",
        )
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
