"""Observability: process-wide logging, JSON lines for machines or a console format for people.

Every module logs through stdlib `logging` with `extra=` fields (topic, partition, offset,
listing_id, ...); this module decides how a record looks. JSON lines carry `ts`, `level`,
`logger`, `msg` and every extra field at top level, so log pipelines can index them without
parsing text. Secrets are `SecretStr` and print masked; as a second line of defence the
formatters also mask passwords inside URLs (`postgresql://user:***@host`) and values of
extra fields whose name says they are secret, because a driver's error message can quote a
DSN verbatim.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(logging.LogRecord("", logging.INFO, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*(?P<tail>@)")
_SECRET_KEY = re.compile(
    r"(^|_)(password|passwd|secret|token|dsn|credentials?|api_?key)$", re.IGNORECASE
)
MASK = "**********"


def redact(text: str) -> str:
    """Mask the password part of any URL in `text` (`scheme://user:***@host`)."""
    return _URL_PASSWORD.sub(rf"\g<head>{MASK}\g<tail>", text)


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
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _scalar(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scalar(v) for v in value]
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, extra fields, exc/stack if any."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in _extra_fields(record).items():
            doc.setdefault(key, _scalar(value))
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc).decode()


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS.mmm LEVEL logger: msg key=value ...` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        line = f"{stamp} {record.levelname:<7} {record.name}: {redact(record.getMessage())}"
        extras = " ".join(f"{k}={_scalar(v)}" for k, v in _extra_fields(record).items())
        if extras:
            line = f"{line}  {extras}"
        if record.exc_info:
            line = f"{line}\n{redact(self.formatException(record.exc_info))}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler._stream_indexer = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_stream_indexer", False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(numeric)


__all__ = ["ConsoleFormatter", "JsonFormatter", "configure_logging", "redact"]
