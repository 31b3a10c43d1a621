"""Dead letters, fitting step: tell "store down" from "this letter can never be stored as is",
and shrink a letter until its store takes it (docs/dlq.md, "Degraded letters").

A store that is down is retried with the offset held; a letter a store refuses for what it
*is* (too large for the topic or the producer's request size, text or numbers Postgres
rejects) would be refused forever, so it is degraded one level at a time instead and never
retried as is. The table is the store of record for the bytes (`value` up to
`dlq.table_max_value_bytes`, with the size and SHA-256 always beside it); the topic message
carries the value only when it fits, else headers that let `dlq replay` fetch it back.

Pure logic, no I/O: both stores call it, and unit tests drive it without servers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from enum import Enum

import asyncpg
from aiokafka.errors import (
    CorruptRecordException,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from stream_indexer.dlq.headers import dead_letter_headers
from stream_indexer.dlq.record import DeadLetter

#: original value size in bytes; the topic message's value is empty
VALUE_TRUNCATED = "x-dlq-value-truncated"
#: SHA-256 (hex) of the original value, to check the bytes fetched back from the table
VALUE_SHA256 = "x-dlq-value-sha256"
#: original key size in bytes; the topic message has no key
KEY_TRUNCATED = "x-dlq-key-truncated"
#: how many original headers were left out of the topic message
HEADERS_DROPPED = "x-dlq-headers-dropped"

#: topic levels: 0 as is; 1 without the value; 2 without value, key and original headers
MAX_TOPIC_LEVEL = 2
#: table levels: 0 as is; 1 text columns ASCII, `data` NULL; 2 bytes cut to a minimum
MAX_TABLE_LEVEL = 2
#: what a level-2 table row keeps of the value, the key, and the error message
MINIMAL_VALUE_BYTES = 64 * 1024
MINIMAL_KEY_BYTES = 1024
MINIMAL_TEXT_CHARS = 1024

# SQLSTATE classes meaning "this row's data", not "this server": 22 data exception (NUL in
# text, invalid encoding, numeric out of range), 54 program limit exceeded (row too big).
_LETTER_SQLSTATE_CLASSES = frozenset({"22", "54"})
_KAFKA_TOO_LARGE = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    CorruptRecordException,
)


class Verdict(Enum):
    """What a store's refusal says: retry later, or change the letter."""

    #: the store could not take anything now: hold the batch and retry as is
    UNAVAILABLE = "unavailable"
    #: the store will never take this letter as is: degrade it, never retry it unchanged
    REJECTED = "rejected"


def kafka_verdict(error: BaseException) -> Verdict:
    """Too large (producer's own check or the broker's answer) or unencodable: rejected."""
    if isinstance(error, (*_KAFKA_TOO_LARGE, UnicodeError)):
        return Verdict.REJECTED
    return Verdict.UNAVAILABLE


def postgres_verdict(error: BaseException) -> Verdict:
    """Data errors (SQLSTATE 22xxx, 54xxx) and client-side encoding errors: rejected.

    Everything else (connection refused or reset, timeouts, read-only or shutting down
    server, lock or serialization trouble) is the store, not the letter.
    """
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = str(getattr(error, "sqlstate", "") or "")
        return Verdict.REJECTED if sqlstate[:2] in _LETTER_SQLSTATE_CLASSES else Verdict.UNAVAILABLE
    if isinstance(error, (asyncpg.exceptions._base.DataError, UnicodeError, OverflowError)):
        return Verdict.REJECTED
    return Verdict.UNAVAILABLE


# --- topic side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """One DLQ topic record as sent: key, value and all headers."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    level: int

    @property
    def size(self) -> int:
        """Serialized size as aiokafka computes it against `max_request_size`."""
        return int(
            DefaultRecordBatchBuilder.estimate_size_in_bytes(self.key, self.value, self.headers)
        )


def sha256_hex(data: bytes | None) -> str:
    return hashlib.sha256(data or b"").hexdigest()


def topic_message(letter: DeadLetter, level: int = 0) -> TopicMessage:
    """`letter` as a DLQ topic record at degradation `level` (0 .. MAX_TOPIC_LEVEL)."""
    if not 0 <= level <= MAX_TOPIC_LEVEL:
        raise ValueError(f"topic level {level} is not 0..{MAX_TOPIC_LEVEL}")
    if level == 0:
        value = letter.value
        if value is None and letter.key is None:
            value = b""  # Kafka allows a record with neither; aiokafka refuses to send one
        return TopicMessage(letter.key, value, dead_letter_headers(letter), 0)
    original = letter.value or b""
    marks = [
        (VALUE_TRUNCATED, str(len(original)).encode("ascii")),
        (VALUE_SHA256, sha256_hex(original).encode("ascii")),
    ]
    if level == 1:
        return TopicMessage(letter.key, b"", dead_letter_headers(letter) + marks, 1)
    marks.append((KEY_TRUNCATED, str(len(letter.key or b"")).encode("ascii")))
    marks.append((HEADERS_DROPPED, str(len(letter.headers)).encode("ascii")))
    return TopicMessage(None, b"", dead_letter_headers(replace(letter, headers=())) + marks, 2)


def first_fitting_message(letter: DeadLetter, max_bytes: int | None) -> TopicMessage:
    """The least degraded message not over `max_bytes` (the last level when none is)."""
    message = topic_message(letter, 0)
    while max_bytes is not None and message.size > max_bytes and message.level < MAX_TOPIC_LEVEL:
        message = topic_message(letter, message.level + 1)
    return message


def is_degraded(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> bool:
    """Whether a DLQ topic record left its value out (replay then reads the table)."""
    return any(name.lower() == VALUE_TRUNCATED for name, _value in headers)


# --- table side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredValue:
    """What the table's `value`, `value_size`, `value_sha256`, `value_truncated` get."""

    value: bytes | None
    size: int | None
    sha256: str | None
    truncated: bool


def stored_value(value: bytes | None, cap: int) -> StoredValue:
    """`value` up to `cap` bytes; beyond it its first `cap` bytes, flagged truncated.

    Size and SHA-256 always describe the original, so a truncated row still identifies it.
    """
    if value is None:
        return StoredValue(None, None, None, False)
    digest = sha256_hex(value)
    if len(value) <= cap:
        return StoredValue(value, len(value), digest, False)
    return StoredValue(value[:cap], len(value), digest, True)


def ascii_text(text: str) -> str:
    """Text any Postgres encoding stores: non-ASCII and NUL as backslash escapes."""
    return text.encode("ascii", "backslashreplace").decode("ascii").replace("\x00", "\\x00")


def table_letter(letter: DeadLetter, level: int) -> DeadLetter:
    """`letter` as the table gets it at degradation `level` (0 .. MAX_TABLE_LEVEL).

    Level 1 keeps every byte but makes each text column plain ASCII and drops the `data`
    column; level 2 also cuts value, key and error message to a few KiB and drops the
    headers (the value column is then flagged truncated, with the original size and hash).
    """
    if not 0 <= level <= MAX_TABLE_LEVEL:
        raise ValueError(f"table level {level} is not 0..{MAX_TABLE_LEVEL}")
    if level == 0:
        return letter
    degraded = replace(
        letter,
        topic=ascii_text(letter.topic),
        action=ascii_text(letter.action) if letter.action else None,
        data=None,
        error_class=ascii_text(letter.error_class),
        error_message=ascii_text(letter.error_message),
        consumer_group=ascii_text(letter.consumer_group),
        headers=tuple((ascii_text(name), value) for name, value in letter.headers),
    )
    if level == 1:
        return degraded
    return replace(
        degraded,
        key=None if letter.key is None else letter.key[:MINIMAL_KEY_BYTES],
        headers=(),
        error_message=degraded.error_message[:MINIMAL_TEXT_CHARS],
    )


def table_value_cap(level: int, cap: int) -> int:
    """The value cap a row at `level` uses: the setting, or the minimal one at the last level."""
    return min(cap, MINIMAL_VALUE_BYTES) if level >= MAX_TABLE_LEVEL else cap


__all__ = [
    "HEADERS_DROPPED",
    "KEY_TRUNCATED",
    "MAX_TABLE_LEVEL",
    "MAX_TOPIC_LEVEL",
    "VALUE_SHA256",
    "VALUE_TRUNCATED",
    "StoredValue",
    "TopicMessage",
    "Verdict",
    "ascii_text",
    "first_fitting_message",
    "is_degraded",
    "kafka_verdict",
    "postgres_verdict",
    "sha256_hex",
    "stored_value",
    "table_letter",
    "table_value_cap",
    "topic_message",
]
