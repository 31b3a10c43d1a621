"""Redaction: drop or hash listing fields (PII) before a payload is stored as a dead letter.

Applies to the listing object (`data`) of a decodable event value: the stored value bytes,
the table's `data` column and the DLQ topic record all carry the redacted JSON. A value that
is not a JSON object cannot be redacted and is stored as it came (documented trade-off: a
replay of a redacted record indexes the redacted listing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson


class Redactor:
    """Drops `drop` fields and replaces `hash_` fields by `sha256:<hex>` of their JSON."""

    def __init__(self, drop: Iterable[str] = (), hash_: Iterable[str] = ()) -> None:
        self.drop = frozenset(drop)
        self.hash = frozenset(hash_) - self.drop

    def __bool__(self) -> bool:
        return bool(self.drop or self.hash)

    def apply(self, value: bytes | None) -> tuple[bytes | None, dict[str, Any] | None]:
        """(stored value, parsed object) with the listing fields redacted where possible."""
        if value is None:
            return None, None
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value, None
        if not isinstance(parsed, dict):
            return value, None
        data = parsed.get("data")
        if not isinstance(data, dict) or not (self.drop | self.hash) & data.keys():
            return value, parsed
        redacted = {k: v for k, v in data.items() if k not in self.drop}
        for name in self.hash & redacted.keys():
            digest = hashlib.sha256(orjson.dumps(redacted[name])).hexdigest()
            redacted[name] = f"sha256:{digest}"
        parsed["data"] = redacted
        return orjson.dumps(parsed), parsed
