"""Structured JSON logs and CloudWatch embedded-metric-format (EMF) metrics, standard library only.

In Lambda, every line written to stdout lands in CloudWatch Logs; a line that
is an EMF document also becomes metrics, with no API call and no extra
permission. Writing both ourselves keeps the Lambda asset free of bundled
dependencies and lets local runs and tests capture exactly what production
writes.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import TextIO

# EMF allows at most 100 values per metric in one document.
MAX_VALUES_PER_METRIC = 100

_SECRET_KEY = re.compile(r"authorization|password|secret|token|credential", re.IGNORECASE)
_SECRET_TEXT = re.compile(
    r"(?P<keep>\b(?i:basic|bearer)\s+)[A-Za-z0-9+/=._~-]{8,}"  # HTTP auth header values
    r"|(?P<scheme>://)[^/@\s:]+:[^/@\s]+@"  # user:password@ in URLs
)
REDACTED = "[redacted]"

# Lambda's application log levels, least to most severe. With the JSON log format and a
# log level set, Lambda keeps a line only if its "level" is at or above the function's;
# a line without a level it knows counts as INFO, so a metric line without one vanishes
# under WARN or ERROR. Every line we write says one of these.
LAMBDA_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
# Lambda's names and Python's spellings -> the ``logging`` level that writes them.
_LOGGING_LEVELS = {
    "TRACE": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL,
}
_LAMBDA_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "FATAL",
}


def logging_level(level: str) -> int:
    """The ``logging`` level for a Lambda or Python level name (``WARN`` or ``WARNING``)."""
    try:
        return _LOGGING_LEVELS[level.upper()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}") from None


def lambda_level(levelno: int) -> str:
    """The name Lambda's log-level filter knows for a ``logging`` level."""
    known = max((n for n in _LAMBDA_NAMES if n <= levelno), default=logging.DEBUG)
    return _LAMBDA_NAMES[known]


def redact(text: str) -> str:
    """Blank out anything in ``text`` that looks like a credential.

    The registry client keeps credentials out of its errors; this is the
    second fence, so a mistake elsewhere cannot leak a token into the logs.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group("scheme"):
            return f"://{REDACTED}@"
        return f"{match.group('keep')}{REDACTED}"

    return _SECRET_TEXT.sub(replace, text)


def _scrub(fields: Mapping[str, object]) -> dict[str, object]:
    return {
        key: REDACTED if _SECRET_KEY.search(key) else _scrub_value(value)
        for key, value in fields.items()
    }


def _scrub_value(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return _scrub(value)
    if isinstance(value, list | tuple):
        return [_scrub_value(item) for item in value]
    return value


class _JsonFormatter(logging.Formatter):
    """One JSON object per record: level, message, timestamp, then context and fields."""

    def __init__(self, logger: Logger) -> None:
        super().__init__()
        self._owner = logger

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "level": lambda_level(record.levelno),
            "message": record.getMessage(),
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "service": self._owner.service,
            "logger": record.name,
        }
        entry.update(self._owner.keys)
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update(fields)
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            entry["error_type"] = type(error).__name__
            entry["traceback"] = "".join(traceback.format_exception(error))
        return json.dumps(_scrub(entry), default=str, ensure_ascii=False)


class _StdoutHandler(logging.Handler):
    """Writes to whatever ``sys.stdout`` is at the time, or to a fixed stream."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__()
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            stream = self._stream or sys.stdout
            stream.write(line + "\n")
            stream.flush()
        except Exception:  # logging must never break the work it reports on
            self.handleError(record)


class Logger:
    """JSON-lines logger over the standard ``logging`` tree.

    It owns the ``logging`` logger ``name`` (default ``soci_indexer``), so
    records from the pipeline and the registry client come out in the same
    format and with the same context keys. Records do not propagate to the
    root logger: Lambda's own root handler would print them a second time as text.
    """

    def __init__(
        self,
        service: str,
        *,
        level: str = "INFO",
        name: str = "soci_indexer",
        stream: TextIO | None = None,
    ) -> None:
        self.service = service
        self.keys: dict[str, object] = {}
        self._logger = logging.getLogger(name)
        self._logger.propagate = False
        self._logger.setLevel(logging_level(level))
        for old in [h for h in self._logger.handlers if isinstance(h, _StdoutHandler)]:
            self._logger.removeHandler(old)
        handler = _StdoutHandler(stream)
        handler.setFormatter(_JsonFormatter(self))
        self._logger.addHandler(handler)

    def set_level(self, level: str) -> None:
        self._logger.setLevel(logging_level(level))

    def append_keys(self, **keys: object) -> None:
        """Add context (request id, repository...) to every following line."""
        self.keys.update(keys)

    def clear_keys(self) -> None:
        self.keys.clear()

    def debug(self, message: str, **fields: object) -> None:
        self._logger.debug(message, extra={"fields": fields})

    def info(self, message: str, **fields: object) -> None:
        self._logger.info(message, extra={"fields": fields})

    def warning(self, message: str, **fields: object) -> None:
        self._logger.warning(message, extra={"fields": fields})

    def error(self, message: str, **fields: object) -> None:
        self._logger.error(message, extra={"fields": fields})

    def exception(self, message: str, **fields: object) -> None:
        """An error line with the current exception's type and traceback."""
        self._logger.error(message, exc_info=True, extra={"fields": fields})


class Unit(StrEnum):
    COUNT = "Count"
    BYTES = "Bytes"
    SECONDS = "Seconds"


_Dimensions = tuple[tuple[str, str], ...]


class Metrics:
    """Collects metric values and writes them as EMF documents on ``flush``.

    Every metric has the ``service`` dimension. A metric added with a
    ``reason`` is published twice: under ``service`` alone (for totals and
    alarms) and under ``service`` + ``reason`` (to see why). More generally, a
    metric added with ``dimensions`` (in order, ``reason`` first) is published
    under ``service`` and under ``service`` plus each leading part of them:
    ``{"soci": "true", "cluster": "c"}`` gives ``[service]``, ``[service, soci]``
    and ``[service, soci, cluster]``, so a dashboard can read any of those levels.

    Each document carries a ``level`` that the function's own log level keeps:
    INFO, or ``level`` when that is more severe (WARN, ERROR, FATAL), so no
    log-level filter of Lambda drops a metric.
    """

    def __init__(
        self,
        namespace: str,
        service: str,
        *,
        level: str = "INFO",
        stream: TextIO | None = None,
    ) -> None:
        self.namespace = namespace
        self.service = service
        self.level = lambda_level(max(logging.INFO, logging_level(level)))
        self._stream = stream
        # extra dimensions ((key, value), ...) -> metric name -> (unit, values)
        self._groups: dict[_Dimensions, dict[str, tuple[Unit, list[float]]]] = {}

    def add(
        self,
        name: str,
        unit: Unit,
        value: float,
        *,
        reason: str = "",
        dimensions: Mapping[str, str] | None = None,
    ) -> None:
        extra = {"reason": reason} if reason else {}
        extra.update(dimensions or {})
        metrics = self._groups.setdefault(tuple(extra.items()), {})
        known_unit, values = metrics.setdefault(name, (unit, []))
        if known_unit != unit:
            raise ValueError(f"metric {name} is in {known_unit}, not {unit}")
        values.append(value)

    def documents(self, timestamp_ms: int | None = None) -> list[dict[str, object]]:
        """The EMF documents ``flush`` would write for what was added so far."""
        now = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        return [
            document
            for dimensions, metrics in sorted(self._groups.items())
            for document in self._group_documents(dimensions, metrics, now)
        ]

    def flush(self) -> None:
        """Write one line per EMF document, then forget the values."""
        stream = self._stream or sys.stdout
        for document in self.documents():
            stream.write(json.dumps(document, separators=(",", ":")) + "\n")
        stream.flush()
        self._groups.clear()

    def _group_documents(
        self,
        dimensions: _Dimensions,
        metrics: Mapping[str, tuple[Unit, list[float]]],
        timestamp_ms: int,
    ) -> list[dict[str, object]]:
        longest = max(len(values) for _, values in metrics.values())
        return [
            self._document(
                {
                    name: (unit, values[start : start + MAX_VALUES_PER_METRIC])
                    for name, (unit, values) in metrics.items()
                    if values[start : start + MAX_VALUES_PER_METRIC]
                },
                dimensions,
                timestamp_ms,
            )
            for start in range(0, longest, MAX_VALUES_PER_METRIC)
        ]

    def _document(
        self,
        metrics: Mapping[str, tuple[Unit, list[float]]],
        dimensions: _Dimensions,
        timestamp_ms: int,
    ) -> dict[str, object]:
        keys = [key for key, _ in dimensions]
        directive = {
            "Namespace": self.namespace,
            "Dimensions": [["service", *keys[:count]] for count in range(len(keys) + 1)],
            "Metrics": [{"Name": name, "Unit": str(unit)} for name, (unit, _) in metrics.items()],
        }
        document: dict[str, object] = {
            "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [directive]},
            "level": self.level,
            "service": self.service,
        }
        document.update(dimensions)
        for name, (_, values) in metrics.items():
            document[name] = values[0] if len(values) == 1 else values
        return document
