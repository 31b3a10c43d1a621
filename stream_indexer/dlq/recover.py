"""Poison handling, reading step: recover what a failed record still says (listing id,
action, JSON body) for its dead-letter row, from bytes that may be hostile.

Strict JSON (orjson) first; when that fails, a lenient parse that accepts what Python's
`json` does beyond the standard (`NaN`, `Infinity`, huge integers) on the value decoded with
replacement characters, so a record rejected for one bad number still shows its `action`
and `listing_id` in the table instead of "unknown". Nothing here raises: too deep, too
large or unreadable input gives None.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from stream_indexer.models import MAX_LONG

#: values larger than this are not parsed leniently (the strict parse still runs)
LENIENT_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a dead-letter row can show about a record; None where nothing could be read."""

    data: dict[str, Any] | None
    listing_id: int | None
    action: str | None
    #: the event's `version`, so the row can be resolved once the listing is indexed past it
    version: int | None = None


def recover(key: bytes | None, value: bytes | None) -> Recovered:
    """Everything `recover_*` gives, parsing the value once."""
    parsed = recover_json(value)
    return Recovered(parsed, _listing_id(key, parsed), _action(parsed), _version(parsed))


def recover_json(value: bytes | None) -> dict[str, Any] | None:
    """The value as a JSON object (leniently, see the module doc), or None."""
    if value is None:
        return None
    try:
        parsed = orjson.loads(value)
    except Exception:  # orjson.JSONDecodeError, or anything else: never raise here
        parsed = _lenient(value)
    return parsed if isinstance(parsed, dict) else None


def recover_listing_id(key: bytes | None, value: bytes | None) -> int | None:
    """The listing id from the decimal key, else from a top-level `listing_id` in the value."""
    from_key = _positive_long(key)
    if from_key is not None:
        return from_key
    return _listing_id(None, recover_json(value))


def recover_action(value: bytes | None) -> str | None:
    """`"index"` or `"delete"` from a top-level `action`, else None."""
    return _action(recover_json(value))


def _lenient(value: bytes) -> Any:
    if len(value) > LENIENT_MAX_BYTES:
        return None
    try:
        return json.loads(value.decode("utf-8", "replace"))
    except Exception:  # ValueError, RecursionError, int digit limits: not readable
        return None


def _listing_id(key: bytes | None, parsed: dict[str, Any] | None) -> int | None:
    from_key = _positive_long(key)
    if from_key is not None or parsed is None:
        return from_key
    candidate = parsed.get("listing_id")
    if isinstance(candidate, str):
        return _positive_long(candidate.encode("utf-8", "replace"))
    if isinstance(candidate, int) and not isinstance(candidate, bool):
        return candidate if 0 < candidate <= MAX_LONG else None
    return None


def _action(parsed: dict[str, Any] | None) -> str | None:
    action = None if parsed is None else parsed.get("action")
    return action if action in ("index", "delete") else None


def _version(parsed: dict[str, Any] | None) -> int | None:
    version = None if parsed is None else parsed.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and 0 <= version <= MAX_LONG:
        return version
    return None


def _positive_long(raw: bytes | None) -> int | None:
    if not raw or len(raw) > 64 or not (raw.isascii() and raw.isdigit()):
        return None
    number = int(raw)
    return number if 0 < number <= MAX_LONG else None


__all__ = ["Recovered", "recover", "recover_action", "recover_json", "recover_listing_id"]
