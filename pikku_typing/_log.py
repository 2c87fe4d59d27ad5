"""Logging of pikku: the standard :mod:`logging` module, silent by default.

Loggers (SPEC section 10): ``pikku`` and its children ``pikku.runtime`` (runs, passes, step
attempts, recovery), ``pikku.worker`` (queues, ``pikku-worker``), ``pikku.analyzer``
(``pikku-analyze``). ``pikku`` has a :class:`logging.NullHandler`, like any library: nothing
is printed until the application configures logging (``logging.basicConfig(level="INFO")``).

Records about a run carry ``extra`` fields, so a log shipper (``pikku-worker --log-format
json``) or a filter can use them: ``run_id``, ``workflow``, and for steps ``step_key``,
``attempt``, ``rpc`` and, for a retry, ``delay`` (seconds). :data:`EXTRA_FIELDS` lists them.

The two formatters ``pikku-worker`` uses live here: :class:`OneLineFormatter` (readable, one
line per record) and :class:`JsonFormatter` (one JSON object per line).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "EXTRA_FIELDS",
    "JsonFormatter",
    "OneLineFormatter",
    "analyzer_log",
    "fields",
    "root_log",
    "runtime_log",
    "worker_log",
]

root_log: Final = logging.getLogger("pikku")
runtime_log: Final = logging.getLogger("pikku.runtime")
worker_log: Final = logging.getLogger("pikku.worker")
analyzer_log: Final = logging.getLogger("pikku.analyzer")

if not any(isinstance(h, logging.NullHandler) for h in root_log.handlers):
    root_log.addHandler(logging.NullHandler())

EXTRA_FIELDS: Final = ("run_id", "workflow", "step_key", "attempt", "rpc", "delay", "status")
"""The ``extra`` fields pikku puts on its records (only those that apply)."""


def fields(**values: Any) -> dict[str, Any]:
    """The ``extra`` mapping of a record: the given fields that are not ``None``."""
    return {k: v for k, v in values.items() if v is not None}


def describe(exc: BaseException) -> str:
    """``ExcType: message`` on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class OneLineFormatter(logging.Formatter):
    """Every record on one line: an exception is ``ExcType: message`` (with its cause), not a
    traceback, unless ``tracebacks``."""

    def __init__(self, tracebacks: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks:
            return super().format(record)
        if not record.exc_info:
            return " ".join(super().format(record).split("\n"))
        exc = record.exc_info[1]
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            text = super().format(record)
        finally:
            record.exc_info, record.exc_text = saved
        if exc is not None:
            parts = [describe(exc)]
            cause = exc.__cause__ or exc.__context__
            if cause is not None:
                parts.append(describe(cause))
            text += " [" + " <- ".join(parts) + "]"
        return " ".join(text.split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, per line: ``time`` (ISO 8601 UTC), ``level``, ``logger``,
    ``message``, the pikku ``extra`` fields present on the record, ``process``, and for an
    exception ``error`` (``ExcType: message``) plus ``traceback`` when ``tracebacks``."""

    def __init__(self, tracebacks: bool = False) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                out[name] = value
        out["process"] = record.process
        if record.exc_info and record.exc_info[1] is not None:
            out["error"] = describe(record.exc_info[1])
            if self.tracebacks:
                out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)
