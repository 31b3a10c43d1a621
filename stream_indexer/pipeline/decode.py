"""Record decoding: one Kafka record (key, value bytes) to a `ListingEvent` or a poison error.

Runs once per record, so the happy path is a single `ListingEvent.model_validate_json` (one
parse, in Rust) plus a few byte-level checks; everything slow happens only once a record
has already failed. Failures split in two, both poison:

- `UndecodableRecordError`: no value (a Kafka tombstone), too large (refused unread),
  not UTF-8, not JSON, not a JSON object, nested deeper than `MAX_DEPTH`;
- `SchemaInvalidError`: a JSON object that breaks the contract (pydantic errors, or a key
  that is not the decimal `listing_id`).

Messages are short (field path + reason) and never echo the payload: they end up in DLQ
headers, logs and metrics. What a failed record still tells (`dlq/recover.py`) is read there.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from stream_indexer.errors import SchemaInvalidError, UndecodableRecordError
from stream_indexer.models import ListingEvent

#: Deepest container nesting accepted (the top-level object is level 1).
MAX_DEPTH = 32
#: Cap on a whole error message, and on each part of it.
MAX_MESSAGE_CHARS = 500
_MAX_ERROR_CHARS = 160
_MAX_LOC_PART_CHARS = 40
_MAX_ERRORS_SHOWN = 3
_MAX_KEY_SHOWN = 32

# A JSON string literal (escapes included); only ever run on text that already parsed.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_UNIFY_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def decode_event(key: bytes | None, value: bytes | None, *, max_bytes: int) -> ListingEvent:
    """Decode and validate one record; raise a `PoisonRecordError` subclass when it is bad.

    A missing key is accepted; a present key must be the decimal `listing_id`.
    """
    checked = precheck(value, max_bytes)
    try:
        event = ListingEvent.model_validate_json(checked)
    except ValidationError as exc:
        raise _classify(exc, checked) from None
    check_after_validation(key, checked, event.listing_id)
    return event


def precheck(value: bytes | None, max_bytes: int) -> bytes:
    """The checks before parsing: a value is there and is not too large to read."""
    if value is None:
        raise UndecodableRecordError("record has no value (a Kafka tombstone), expected an event")
    size = len(value)
    if size > max_bytes:
        raise UndecodableRecordError(
            f"value is {size} bytes, over the {max_bytes}-byte limit; not parsed"
        )
    return value


def check_after_validation(key: bytes | None, value: bytes, listing_id: int) -> None:
    """The checks of a valid event: not nested too deep, and the key is its listing id."""
    # Depth cannot exceed the number of opening brackets: a C-speed bound that spares the
    # exact check for every realistic event. Deep unknown fields would otherwise pass.
    if value.count(b"{") + value.count(b"[") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        raise _too_deep()
    if key is not None and key != b"%d" % listing_id:
        _check_key(key, listing_id)


def _classify(exc: ValidationError, value: bytes) -> UndecodableRecordError | SchemaInvalidError:
    """Turn pydantic's verdict into our error class with a short message (failure path only)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return _syntax_error(value, first["msg"])
    if first["type"] == "model_type" and not first["loc"]:
        return UndecodableRecordError(f"value is {_json_kind(value)}, expected an object")
    # Valid JSON that breaks the contract; hostile nesting is still reported as such.
    if value.count(b"{") + value.count(b"[") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
        return _too_deep()
    return SchemaInvalidError(_schema_message(errors))


def _syntax_error(value: bytes, pydantic_msg: str) -> UndecodableRecordError:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as err:
        return UndecodableRecordError(
            f"value is not valid UTF-8 (at byte {err.start}: {err.reason})"
        )
    if not value.strip():
        return UndecodableRecordError("value is empty, expected a JSON object")
    if "recursion limit" in pydantic_msg:
        return _too_deep()
    reason = pydantic_msg.removeprefix("Invalid JSON: ")
    return UndecodableRecordError(_cap(f"value is not valid JSON: {reason}", MAX_MESSAGE_CHARS))


def _too_deep() -> UndecodableRecordError:
    return UndecodableRecordError(f"value is nested deeper than {MAX_DEPTH} levels")


def _deeper_than(value: bytes, limit: int) -> bool:
    """Exact nesting check for text that parsed as JSON, without recursion or objects.

    Strings are removed (they may hold brackets), the rest is reduced to brackets, and each
    pass deletes the innermost pairs, i.e. exactly one level of nesting.
    """
    brackets = _JSON_STRING.sub(b"", value).translate(_UNIFY_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return bool(brackets)


def _json_kind(value: bytes) -> str:
    first = value.lstrip()[:1]
    if first == b"[":
        return "a JSON array"
    if first == b'"':
        return "a JSON string"
    if first in (b"t", b"f"):
        return "a JSON boolean"
    if first == b"n":
        return "JSON null"
    return "a JSON number"


def _schema_message(errors: list[Any]) -> str:
    parts = []
    for error in errors[:_MAX_ERRORS_SHOWN]:
        path = ".".join(_cap(str(part), _MAX_LOC_PART_CHARS) for part in error["loc"]) or "event"
        parts.append(_cap(f"{path}: {error['msg']}", _MAX_ERROR_CHARS))
    message = "; ".join(parts)
    if len(errors) > _MAX_ERRORS_SHOWN:
        message += f" (+{len(errors) - _MAX_ERRORS_SHOWN} more)"
    return _cap(message, MAX_MESSAGE_CHARS)


def _check_key(key: bytes, listing_id: int) -> None:
    """Slow path of the key check: accepts leading zeros, names the mismatch otherwise."""
    if not (key.isascii() and key.isdigit()):
        raise SchemaInvalidError(f"key {_show_key(key)} is not a decimal listing id")
    if key.lstrip(b"0") != b"%d" % listing_id:
        raise SchemaInvalidError(f"key {_show_key(key)} does not match listing_id {listing_id}")


def _show_key(key: bytes) -> str:
    if len(key) > _MAX_KEY_SHOWN:
        return f"{key[:_MAX_KEY_SHOWN]!r}... ({len(key)} bytes)"
    return repr(key)


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "MAX_DEPTH",
    "check_after_validation",
    "decode_event",
    "precheck",
]
