"""Poison handling: turn a failed Kafka record into a `DeadLetter` with its full context.

The dead letter keeps the original key, value bytes and headers untouched (replay needs
them bit for bit) and recovers what it can (listing id, action, JSON body) for the table's
actionable view, without ever raising on hostile input.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stream_indexer.dlq.record import DeadLetter
from stream_indexer.dlq.recover import recover
from stream_indexer.dlq.redaction import Redactor
from stream_indexer.errors import StreamIndexerError
from stream_indexer.masking import mask_text

MAX_ERROR_MESSAGE_CHARS = 64 * 1024


def dead_letter_for(
    record: Any,
    error: BaseException,
    *,
    attempts: int,
    consumer_group: str,
    redactor: Redactor | None = None,
) -> DeadLetter:
    """A dead letter for aiokafka `ConsumerRecord` `record` that failed with `error`."""
    error_class = (
        error.error_class if isinstance(error, StreamIndexerError) else type(error).__name__
    )
    message = mask_text(str(error)) or type(error).__name__  # rows and headers are read widely
    value: bytes | None = record.value
    found = recover(record.key, value)
    data = found.data
    if redactor:
        # only what the redactor could parse (and redact) goes to the `data` column
        value, data = redactor.apply(value)
    headers = tuple((str(name), bytes(value or b"")) for name, value in (record.headers or ()))
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp,
        key=record.key,
        value=value,
        headers=headers,
        listing_id=found.listing_id,
        action=found.action,
        data=data,
        error_class=error_class,
        error_message=message[:MAX_ERROR_MESSAGE_CHARS],
        attempts=attempts,
        consumer_group=consumer_group,
        failed_at=datetime.now(UTC),
        version=found.version,
    )
