"""Dead letters, DLQ topic side: the `x-dlq-*` headers that say where a record came from and why
it failed (docs/contract.md section 4).

The original headers come first, unchanged, minus any earlier `x-dlq-*` ones, so a record that
is dead-lettered again after a replay carries one current set instead of a pile of old ones.
Every value is UTF-8 text; numbers are decimal. The error message is capped at 4 KiB (the full
text lives in the Postgres table).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC

from stream_indexer.dlq.record import DeadLetter

DLQ_HEADER_PREFIX = "x-dlq-"
ORIGINAL_TOPIC = "x-dlq-original-topic"
ORIGINAL_PARTITION = "x-dlq-original-partition"
ORIGINAL_OFFSET = "x-dlq-original-offset"
ORIGINAL_TIMESTAMP = "x-dlq-original-timestamp"
CONSUMER_GROUP = "x-dlq-consumer-group"
ERROR_CLASS = "x-dlq-error-class"
ERROR_MESSAGE = "x-dlq-error-message"
ATTEMPTS = "x-dlq-attempts"
FAILED_AT = "x-dlq-failed-at"

MAX_ERROR_MESSAGE_BYTES = 4096
TRUNCATION_MARK = "…"
# Kafka's own "no timestamp" value, used when the source record had none.
NO_TIMESTAMP = -1


def is_dlq_header(name: str) -> bool:
    """Whether `name` is one of ours (compared case-insensitively, to strip foreign spellings)."""
    return name.lower().startswith(DLQ_HEADER_PREFIX)


def strip_dlq_headers(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """`headers` without any `x-dlq-*` entry, order and duplicates otherwise kept."""
    return [(name, value) for name, value in headers if not is_dlq_header(name)]


def cap_utf8(text: str, limit: int = MAX_ERROR_MESSAGE_BYTES) -> bytes:
    """`text` as UTF-8 in at most `limit` bytes, cut on a character boundary.

    A cut text ends with `…` so a reader knows there is more (in Postgres). Characters that
    cannot be encoded (lone surrogates) are written as backslash escapes instead of failing.
    """
    encoded = text.encode("utf-8", "backslashreplace")
    if len(encoded) <= limit:
        return encoded
    mark = TRUNCATION_MARK.encode("utf-8")
    if limit < len(mark):
        return b""
    cut = limit - len(mark)
    # Step back over continuation bytes (10xxxxxx) to the start of the character cut in two.
    while cut > 0 and encoded[cut] & 0xC0 == 0x80:
        cut -= 1
    return encoded[:cut] + mark


def format_failed_at(letter: DeadLetter) -> str:
    """RFC 3339 in UTC with milliseconds and a `Z`, e.g. `2024-05-01T12:00:00.123Z`."""
    instant = letter.failed_at.astimezone(UTC)
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The headers of `letter`'s DLQ topic record: originals minus old `x-dlq-*`, plus ours."""
    timestamp = NO_TIMESTAMP if letter.timestamp_ms is None else letter.timestamp_ms
    ours = [
        (ORIGINAL_TOPIC, letter.topic.encode("utf-8", "backslashreplace")),
        (ORIGINAL_PARTITION, str(letter.partition).encode("ascii")),
        (ORIGINAL_OFFSET, str(letter.offset).encode("ascii")),
        (ORIGINAL_TIMESTAMP, str(timestamp).encode("ascii")),
        (CONSUMER_GROUP, letter.consumer_group.encode("utf-8", "backslashreplace")),
        (ERROR_CLASS, letter.error_class.encode("utf-8", "backslashreplace")),
        (ERROR_MESSAGE, cap_utf8(letter.error_message)),
        (ATTEMPTS, str(letter.attempts).encode("ascii")),
        (FAILED_AT, format_failed_at(letter).encode("ascii")),
    ]
    return strip_dlq_headers(letter.headers) + ours


__all__ = [
    "ATTEMPTS",
    "CONSUMER_GROUP",
    "DLQ_HEADER_PREFIX",
    "ERROR_CLASS",
    "ERROR_MESSAGE",
    "FAILED_AT",
    "MAX_ERROR_MESSAGE_BYTES",
    "ORIGINAL_OFFSET",
    "ORIGINAL_PARTITION",
    "ORIGINAL_TIMESTAMP",
    "ORIGINAL_TOPIC",
    "cap_utf8",
    "dead_letter_headers",
    "format_failed_at",
    "is_dlq_header",
    "strip_dlq_headers",
]
