"""Dead letters, context: what a record that failed to decode still tells (id, action, body).

Best effort and total: these run on hostile bytes after decoding failed, for the dead-letter
row and for replay's filters, so they never raise and return None when nothing fits.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_indexer.models import MAX_LONG


def recover_json(value: bytes | None) -> dict[str, Any] | None:
    """The value as a JSON object, or None when it is not one (for the DLQ `data` column)."""
    if value is None:
        return None
    try:
        parsed = orjson.loads(value)
    except Exception:  # orjson.JSONDecodeError, or anything else: never raise here
        return None
    return parsed if isinstance(parsed, dict) else None


def recover_listing_id(key: bytes | None, value: bytes | None) -> int | None:
    """The listing id from the decimal key, else from a top-level `listing_id` in the value."""
    from_key = _positive_long(key)
    if from_key is not None:
        return from_key
    parsed = recover_json(value)
    if parsed is None:
        return None
    candidate = parsed.get("listing_id")
    if isinstance(candidate, str):
        return _positive_long(candidate.encode("utf-8", "replace"))
    if isinstance(candidate, int) and not isinstance(candidate, bool):
        return candidate if 0 < candidate <= MAX_LONG else None
    return None


def recover_action(value: bytes | None) -> str | None:
    """`"index"` or `"delete"` from a top-level `action`, else None."""
    parsed = recover_json(value)
    if parsed is None:
        return None
    action = parsed.get("action")
    return action if action in ("index", "delete") else None


def _positive_long(raw: bytes | None) -> int | None:
    if not raw or len(raw) > 64 or not (raw.isascii() and raw.isdigit()):
        return None
    number = int(raw)
    return number if 0 < number <= MAX_LONG else None


__all__ = ["recover_action", "recover_json", "recover_listing_id"]
