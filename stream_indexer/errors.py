"""Error tree: every failure the pipeline names, split into retriable and poison.

    StreamIndexerError
    ├── ConfigError                    bad settings; the process refuses to start
    ├── TransientError (retriable)     retry with backoff, never dead-letter for it
    │   ├── SinkUnavailableError       OpenSearch unreachable, timeout, 429, 5xx, blocked
    │   ├── SourceUnavailableError     source database for thin events unreachable
    │   └── DeadLetterStoreError       DLQ table or DLQ topic could not be written
    └── PoisonRecordError              dead-letter the record and move on
        ├── UndecodableRecordError     not UTF-8 / not JSON / too large / too deep
        ├── SchemaInvalidError         JSON that breaks the event contract
        │   └── SourceRowRejectedError the source query fails on this listing's row
        ├── MappingRejectedError       OpenSearch refused the document (400, too large)
        └── RetriesExhaustedError      a record-level error outlived its attempt budget

`retriable` follows aiokafka's `KafkaError.retriable`: callers branch on the flag, not on
the class, so a new subclass lands on the right side automatically. `error_class` is the
short, stable label used in the DLQ table, the DLQ headers and metric labels.
"""

from __future__ import annotations

from typing import ClassVar


class StreamIndexerError(Exception):
    """Root of every error stream-indexer raises on purpose."""

    retriable: ClassVar[bool] = False
    error_class: ClassVar[str] = "error"


class ConfigError(StreamIndexerError):
    """A setting is missing or invalid; the message names the setting."""

    error_class = "config"


class TransientError(StreamIndexerError):
    """Worth retrying: the cause is outside the record and may go away."""

    retriable = True
    error_class = "transient"


class SinkUnavailableError(TransientError):
    """OpenSearch could not take the request right now (connection, timeout, 429, 5xx)."""

    error_class = "sink_unavailable"


class SourceUnavailableError(TransientError):
    """The source database used to hydrate thin events could not be queried."""

    error_class = "source_unavailable"


class DeadLetterStoreError(TransientError):
    """A dead-letter store (Postgres table or Kafka topic) refused or timed out."""

    error_class = "dlq_store_unavailable"

    def __init__(
        self,
        message: str,
        *,
        stores: tuple[str, ...] = (),
        unacknowledged: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(message)
        #: names of the stores that failed (`postgres`, `kafka`), when known
        self.stores = stores
        #: positions (in the letters given to one store) that store did not take; None: all
        self.unacknowledged = unacknowledged


class PoisonRecordError(StreamIndexerError):
    """The record itself is bad; retrying cannot help, so it is dead-lettered."""

    error_class = "poison"


class UndecodableRecordError(PoisonRecordError):
    """The bytes are not a JSON object we can read (encoding, syntax, size, depth)."""

    error_class = "undecodable"


class SchemaInvalidError(PoisonRecordError):
    """The JSON is readable but breaks the event contract (schemas/listing_event.v1.json)."""

    error_class = "schema_invalid"


class MappingRejectedError(PoisonRecordError):
    """OpenSearch rejected the document itself (mapping error, too large, illegal value)."""

    error_class = "mapping_rejected"


class SourceRowRejectedError(SchemaInvalidError):
    """Hydrating this listing makes the source query fail every time (a data error such as
    an id out of range), while other listings load: the row, not the database, is at fault."""

    error_class = "source_row_rejected"


class RetriesExhaustedError(PoisonRecordError):
    """A record-level transient error kept failing past the attempt budget."""

    error_class = "retries_exhausted"


__all__ = [
    "ConfigError",
    "DeadLetterStoreError",
    "MappingRejectedError",
    "PoisonRecordError",
    "RetriesExhaustedError",
    "SchemaInvalidError",
    "SinkUnavailableError",
    "SourceRowRejectedError",
    "SourceUnavailableError",
    "StreamIndexerError",
    "TransientError",
    "UndecodableRecordError",
]
