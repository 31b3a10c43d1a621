"""Core: the error tree, every failure stream-indexer names, split into retriable and poison.

    StreamIndexerError
    ├── ConfigError                    bad settings; the process refuses to start
    │   └── AddressError               a DSN or host URL that cannot be read unambiguously
    ├── TransientError (retriable)     retry with backoff, never dead-letter for it
    │   ├── SinkUnavailableError       OpenSearch unreachable, timeout, 429, 5xx, blocked
    │   │   └── SinkRequestAbandonedError  stuck on a dead connection; re-sent at once
    │   ├── SourceUnavailableError     source database for thin events unreachable
    │   ├── DeadLetterStoreError       DLQ table or DLQ topic could not be written
    │   ├── ProducerBackpressureError  Kafka could not take an emitted event in time
    │   └── ProducerDeliveryError      a buffered event was never acknowledged
    ├── PoisonRecordError              dead-letter the record and move on
    │   ├── UndecodableRecordError     not UTF-8 / not JSON / too large / too deep
    │   ├── SchemaInvalidError         JSON that breaks the event contract
    │   │   ├── InvalidEventError      a producer refused to send such an event
    │   │   └── SourceRowRejectedError the source query fails on this listing's row
    │   ├── MappingRejectedError       OpenSearch refused the document (400, too large)
    │   └── RetriesExhaustedError      a record-level error outlived its attempt budget
    ├── StartupAbortedError            stop requested while waiting for dependencies
    ├── StartupFailedError             a start step failed in a way waiting cannot fix (exit 3)
    ├── ClientCertificateRequiredError a TLS server wants the client certificate we did not send
    ├── RetryAbortedError              stop requested while an operation was being retried
    ├── MigrationError                 migration files or schema version unsafe to run
    ├── ReplayError                    `dlq replay` could not run or finish
    ├── OperationFailed                a `dlq` command could not do what was asked
    ├── ReindexError                   a `reindex` command could not do what was asked
    │   └── ReindexBusyError           another process runs a reindex of the alias (exit 4)
    ├── ProducerClosedError            emit before start() or after stop()
    └── ChildExitedError               a dev-stack server died before it was ready

`retriable` follows aiokafka's `KafkaError.retriable`: callers branch on the flag, not on
the class, so a new subclass lands on the right side automatically. `error_class` is the
short, stable label used in the DLQ table, the DLQ headers and metric labels.

The modules that raise these re-export them (`stream_indexer.producer.ProducerClosedError`,
`stream_indexer.app.migrate.MigrationError`, ...), so either import path works.
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


class AddressError(ConfigError, ValueError):
    """An address that cannot be parsed; the message is safe to show (no part of the value).

    Also a ValueError, so that a settings validator raising it is a validation error."""


class TransientError(StreamIndexerError):
    """Worth retrying: the cause is outside the record and may go away."""

    retriable = True
    error_class = "transient"


class SinkUnavailableError(TransientError):
    """OpenSearch could not take the request right now (connection, timeout, 429, 5xx)."""

    error_class = "sink_unavailable"


class SinkRequestAbandonedError(SinkUnavailableError):
    """A bulk request sent before the sink went away was given up once a probe answered:
    it is re-sent at once and is no evidence against the sink (the circuit ignores it)."""

    error_class = "sink_request_abandoned"


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


class ProducerBackpressureError(TransientError):
    """Kafka could not take the event within `emit_timeout_ms` and no outbox is configured."""

    error_class = "producer_backpressure"


class ProducerDeliveryError(TransientError):
    """A buffered event was not acknowledged in time and could not be moved to an outbox."""

    error_class = "producer_delivery_failed"


class InvalidEventError(SchemaInvalidError):
    """The event breaks the contract; `fields` names every offending field (dotted path)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        detail = "; ".join(f"{field}: {msg}" for field, msg in problems)
        super().__init__(f"invalid listing event: {detail}")

    @property
    def fields(self) -> list[str]:
        return [field for field, _ in self.problems]


class StartupAbortedError(StreamIndexerError):
    """Stop was requested before the service's dependencies became reachable."""


class StartupFailedError(StreamIndexerError):
    """A start step failed in a way waiting cannot fix; the message says what to change."""

    error_class = "startup_failed"

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"start-up failed ({step}): {message}")
        #: what the process was doing (`app.startup_errors.Step`)
        self.step = step


class ClientCertificateRequiredError(StreamIndexerError):
    """A TLS server requires a client certificate and none is configured; the message names
    the setting. A start step that meets it fails as `StartupFailedError` (exit 3)."""


class RetryAbortedError(StreamIndexerError):
    """A stop was requested while an operation was still being retried (`backoff.retry`)."""


class MigrationError(StreamIndexerError):
    """The migration files or the recorded schema version do not allow a safe run."""

    error_class = "migration"


class ReplayError(StreamIndexerError):
    """The replay could not run or finish (DLQ topic missing, broker unreachable)."""

    error_class = "replay_failed"


class OperationFailed(StreamIndexerError):
    """A command could not do what was asked (row not found, purge not confirmed)."""

    error_class = "operation_failed"


class ReindexError(StreamIndexerError):
    """A `reindex` command could not do what was asked (no open run, wrong phase)."""

    error_class = "reindex_failed"


class ReindexBusyError(ReindexError):
    """Another process holds the reindex lock of this alias: two runs at once are refused."""

    error_class = "reindex_busy"


class ProducerClosedError(StreamIndexerError):
    """`emit` was called before `start()` or after `stop()`."""

    error_class = "producer_closed"


class ChildExitedError(StreamIndexerError, RuntimeError):
    """A dev-stack server process exited before it became ready (still a RuntimeError)."""

    error_class = "child_exited"


__all__ = [
    "AddressError",
    "ChildExitedError",
    "ClientCertificateRequiredError",
    "ConfigError",
    "DeadLetterStoreError",
    "InvalidEventError",
    "MappingRejectedError",
    "MigrationError",
    "OperationFailed",
    "PoisonRecordError",
    "ProducerBackpressureError",
    "ProducerClosedError",
    "ProducerDeliveryError",
    "ReindexBusyError",
    "ReindexError",
    "ReplayError",
    "RetriesExhaustedError",
    "RetryAbortedError",
    "SchemaInvalidError",
    "SinkRequestAbandonedError",
    "SinkUnavailableError",
    "SourceRowRejectedError",
    "SourceUnavailableError",
    "StartupAbortedError",
    "StartupFailedError",
    "StreamIndexerError",
    "TransientError",
    "UndecodableRecordError",
]
