"""Dead letters, operator side: how the `dlq` tools read times and show ages and raw bytes.

Durations are `30s`, `30m`, `2h`, `7d`, `1w` or sums (`1h30m`); an instant is an RFC 3339
time (naive means UTC) or a duration meaning that long ago. Raw bytes are shown safely:
UTF-8 text when they decode, else base64, always labelled.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """`30s`, `30m`, `2h`, `7d`, `1w` or a sum of them (`1h30m`); ValueError otherwise."""
    spec = text.strip().lower()
    parts = _DURATION_PART.findall(spec)
    if not spec or "".join(number + unit for number, unit in parts) != spec:
        raise ValueError(f"{text!r} is not a duration like 30m, 2h, 7d or 1h30m")
    return timedelta(seconds=sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts))


def parse_instant(text: str, now: datetime) -> datetime:
    """An RFC 3339 / ISO 8601 time (naive means UTC) or a duration meaning that long ago."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        instant = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a timestamp (2024-05-01T12:00:00Z) nor a duration (2h)"
        ) from None
    return instant if instant.utcoffset() is not None else instant.replace(tzinfo=UTC)


def format_age(age: timedelta) -> str:
    """A short human age: `45s`, `12m`, `5h`, `3d`."""
    seconds = max(0, int(age.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def show_bytes(raw: bytes | None) -> dict[str, str] | None:
    """Bytes for a person or a JSON reader: `{"encoding": "utf-8"|"base64", "data": ...}`."""
    if raw is None:
        return None
    try:
        return {"encoding": "utf-8", "data": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"encoding": "base64", "data": base64.b64encode(raw).decode("ascii")}


__all__ = ["format_age", "parse_duration", "parse_instant", "show_bytes"]
