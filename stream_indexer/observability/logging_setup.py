"""Observability: process-wide logging, JSON lines for machines or a console format for people.

Every module logs through stdlib `logging` with `extra=` fields (topic, partition, offset,
listing_id, ...); this module decides how a record looks. JSON lines carry `ts`, `level`,
`logger`, `msg` and every extra field at top level, so log pipelines can index them without
parsing text. Secrets are `SecretStr` and print masked; as a second line of defence every
record goes through `SecretMaskingFilter` (the one masker, `masking.mask_text`: passwords
inside URLs and every secret value the loaded settings hold) and values of extra fields
whose name says they are secret are masked, because a driver's error message can quote a
DSN or a password verbatim, at any level.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from stream_indexer.masking import MASK, mask_text

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(logging.LogRecord("", logging.INFO, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_SECRET_KEY = re.compile(
    r"(^|_)(password|passwd|secret|token|dsn|credentials?|api_?key)$", re.IGNORECASE
)


class SecretMaskingFilter(logging.Filter):
    """Masks secrets in a record before any handler formats it: the message (arguments
    merged in), the exception text and string extra fields. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        for key, value in _extra_fields(record).items():
            if isinstance(value, str):
                setattr(record, key, mask_text(value))
        return True


def _exception(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    text = record.exc_text or formatter.formatException(record.exc_info)  # type: ignore[arg-type]
    return mask_text(text)


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _RECORD_ATTRS or key.startswith("_"):
            continue
        fields[key] = MASK if _SECRET_KEY.search(key) and value is not None else value
    return fields


def _scalar(value: Any) -> Any:
    """JSON-safe value; unknown types (SecretStr, Path, exceptions) go through str()."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {str(k): _scalar(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scalar(v) for v in value]
    return mask_text(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, extra fields, exc/stack if any."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        for key, value in _extra_fields(record).items():
            doc.setdefault(key, _scalar(value))
        if record.exc_info:
            doc["exc"] = _exception(self, record)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc).decode()


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS.mmm LEVEL logger: msg key=value ...` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        line = f"{stamp} {record.levelname:<7} {record.name}: {mask_text(record.getMessage())}"
        extras = " ".join(f"{k}={_scalar(v)}" for k, v in _extra_fields(record).items())
        if extras:
            line = f"{line}  {extras}"
        if record.exc_info:
            line = f"{line}\n{_exception(self, record)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each record (as Python's own
    last-resort handler does), so a replaced stderr (pytest's capture) never goes stale."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str, fmt: Literal["json", "console"]) -> None:
    """Send all logging to stderr in `fmt` at `level`; calling it again replaces the setup.

    stderr keeps stdout free for command output (`config show`, `dlq list`). Handlers
    installed by others (pytest's capture, an embedding application) are left alone.
    """
    if fmt not in ("json", "console"):
        raise ValueError(f"log format must be 'json' or 'console', not {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(SecretMaskingFilter())
    handler._stream_indexer = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_stream_indexer", False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(numeric)


__all__ = ["ConsoleFormatter", "JsonFormatter", "SecretMaskingFilter", "configure_logging"]
