"""Per-letter classification of DLQ store errors and degradation of letters until they fit."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RecordListTooLargeError,
    RequestTimedOutError,
)

from stream_indexer.dlq.degrade import (
    HEADERS_DROPPED,
    KEY_TRUNCATED,
    MAX_TABLE_LEVEL,
    MINIMAL_VALUE_BYTES,
    VALUE_SHA256,
    VALUE_TRUNCATED,
    Verdict,
    first_fitting_message,
    is_degraded,
    kafka_verdict,
    postgres_verdict,
    stored_value,
    table_letter,
    table_value_cap,
    topic_message,
)
from stream_indexer.dlq.held import HeldLetters
from stream_indexer.dlq.record import DeadLetter
from stream_indexer.dlq.table import PostgresDeadLetterTable
from stream_indexer.dlq.topic import KafkaDeadLetterTopic
from stream_indexer.dlq.writer import DeadLetterWriter
from stream_indexer.errors import DeadLetterStoreError

MIB = 1024 * 1024
LIMIT = MIB


def letter(offset: int = 0, **changes: Any) -> DeadLetter:
    fields: dict[str, Any] = {
        "topic": "listings.changes",
        "partition": 0,
        "offset": offset,
        "timestamp_ms": 1_714_564_800_000,
        "key": b"%d" % (offset + 1),
        "value": b'{"action": "index"}',
        "headers": (("trace", b"abc"),),
        "listing_id": offset + 1,
        "action": "index",
        "data": {"action": "index"},
        "error_class": "undecodable",
        "error_message": "bad",
        "attempts": 1,
        "consumer_group": "stream-indexer",
        "failed_at": datetime(2024, 5, 1, tzinfo=UTC),
    }
    fields.update(changes)
    return DeadLetter(**fields)


def names(headers: Sequence[tuple[str, bytes]]) -> list[str]:
    return [name for name, _ in headers]


def header(headers: Sequence[tuple[str, bytes]], name: str) -> bytes:
    [value] = [v for n, v in headers if n == name]
    return value


# --- classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        MessageSizeTooLargeError("2000821 bytes"),
        RecordListTooLargeError(),
        UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed"),
    ],
)
def test_kafka_too_large_or_unencodable_is_this_letter(error: BaseException) -> None:
    assert kafka_verdict(error) is Verdict.REJECTED


@pytest.mark.parametrize(
    "error",
    [
        KafkaConnectionError(),
        KafkaTimeoutError(),
        LeaderNotAvailableError(),
        NotLeaderForPartitionError(),
        RequestTimedOutError(),
        TimeoutError(),
        ConnectionResetError(),
    ],
)
def test_kafka_broker_trouble_is_the_store(error: BaseException) -> None:
    assert kafka_verdict(error) is Verdict.UNAVAILABLE


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UntranslatableCharacterError("\\u0000 cannot be converted to text"),
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence for UTF8"),
        asyncpg.exceptions.NumericValueOutOfRangeError("bigint out of range"),
        asyncpg.exceptions.InvalidTextRepresentationError("invalid input syntax"),
        asyncpg.exceptions.ProgramLimitExceededError("row is too big"),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
    ],
)
def test_postgres_data_errors_are_this_letter(error: BaseException) -> None:
    assert postgres_verdict(error) is Verdict.REJECTED


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.ReadOnlySQLTransactionError("read-only transaction"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.UndefinedColumnError("column value_size does not exist"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        ConnectionRefusedError(),
        TimeoutError(),
    ],
)
def test_postgres_down_or_read_only_is_the_store(error: BaseException) -> None:
    assert postgres_verdict(error) is Verdict.UNAVAILABLE


# --- topic degradation --------------------------------------------------------------------


def test_level_zero_is_the_letter_as_it_came() -> None:
    message = topic_message(letter())
    assert (message.key, message.value, message.level) == (b"1", b'{"action": "index"}', 0)
    assert names(message.headers)[0] == "trace"
    assert not is_degraded(message.headers)


def test_level_one_leaves_the_value_out_and_says_how_to_find_it() -> None:
    value = b"x" * (2 * MIB)
    message = topic_message(letter(value=value), 1)
    assert message.value == b"" and message.key == b"1"
    assert header(message.headers, VALUE_TRUNCATED) == str(2 * MIB).encode()
    assert header(message.headers, VALUE_SHA256) == hashlib.sha256(value).hexdigest().encode()
    assert "trace" in names(message.headers)
    assert is_degraded(message.headers)


def test_level_two_also_drops_key_and_original_headers() -> None:
    message = topic_message(letter(key=b"k" * 100, headers=(("a", b"1"), ("b", b"2"))), 2)
    assert message.key is None and message.value == b""
    assert header(message.headers, KEY_TRUNCATED) == b"100"
    assert header(message.headers, HEADERS_DROPPED) == b"2"
    assert all(name.startswith("x-dlq-") for name in names(message.headers))


def test_first_fitting_message_degrades_only_as_far_as_needed() -> None:
    assert first_fitting_message(letter(), LIMIT).level == 0
    assert first_fitting_message(letter(value=b"v" * 2 * MIB), LIMIT).level == 1
    junk = tuple((f"h{i}", b"\xff" * 1024) for i in range(2048))
    assert first_fitting_message(letter(value=b"v" * 2 * MIB, headers=junk), LIMIT).level == 2
    assert first_fitting_message(letter(value=b"v" * 2 * MIB), None).level == 0
    assert first_fitting_message(letter(value=b"v" * 2 * MIB), LIMIT).size <= LIMIT


def test_levels_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        topic_message(letter(), 3)
    with pytest.raises(ValueError):
        table_letter(letter(), MAX_TABLE_LEVEL + 1)


# --- table degradation --------------------------------------------------------------------


def test_stored_value_keeps_whole_values_up_to_the_cap_and_describes_the_original() -> None:
    small = stored_value(b"abc", 10)
    assert (small.value, small.size, small.truncated) == (b"abc", 3, False)
    assert small.sha256 == hashlib.sha256(b"abc").hexdigest()
    big = stored_value(b"a" * 20, 10)
    assert (big.value, big.size, big.truncated) == (b"a" * 10, 20, True)
    assert big.sha256 == hashlib.sha256(b"a" * 20).hexdigest()
    assert stored_value(None, 10) == stored_value(None, 10)
    assert stored_value(None, 10).value is None


def test_table_level_one_is_ascii_text_without_data_and_keeps_every_byte() -> None:
    hostile = letter(
        error_message="caf\u00e9 \x00 \udcff",
        data={"title": "\x00"},
        headers=(("n\u00e4me", b"\xff"),),
        value=b"\xff\x00",
    )
    degraded = table_letter(hostile, 1)
    assert degraded.data is None
    assert degraded.error_message.isascii() and "\x00" not in degraded.error_message
    assert degraded.headers == (("n\\xe4me", b"\xff"),)
    assert (degraded.key, degraded.value) == (hostile.key, hostile.value)


def test_table_last_level_cuts_bytes_to_a_minimum() -> None:
    degraded = table_letter(letter(key=b"k" * 5000, error_message="e" * 5000), MAX_TABLE_LEVEL)
    assert degraded.key is not None and len(degraded.key) == 1024
    assert degraded.headers == () and len(degraded.error_message) == 1024
    assert table_value_cap(MAX_TABLE_LEVEL, 16 * MIB) == MINIMAL_VALUE_BYTES
    assert table_value_cap(0, 16 * MIB) == 16 * MIB


# --- the topic store: per-letter acknowledgement and size refusals ------------------------


class FakeProducer:
    """aiokafka's producer contract: `send` refuses over `max_request_size` at once;
    deliveries of listed keys fail (broker trouble) until `down` is cleared."""

    def __init__(self, *, max_request_size: int = LIMIT, broker_limit: int | None = None) -> None:
        self.max_request_size = max_request_size
        self.broker_limit = broker_limit
        self.down: set[bytes | None] = set()
        self.sent: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self.acked: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    async def send(
        self, topic: str, *, value: bytes | None, key: bytes | None, headers: Any
    ) -> Any:
        size = len(value or b"") + len(key or b"") + sum(len(n) + len(v) for n, v in headers)
        if size > self.max_request_size:
            raise MessageSizeTooLargeError(f"The message is {size} bytes")
        self.sent.append((key, value, headers))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if key in self.down:
            future.set_exception(KafkaConnectionError("broker down"))
        elif self.broker_limit is not None and size > self.broker_limit:
            future.set_exception(MessageSizeTooLargeError("broker: MESSAGE_TOO_LARGE"))
        else:
            self.acked.append((key, value, headers))
            future.set_result(None)
        return future


def topic_store(producer: FakeProducer, **kwargs: Any) -> KafkaDeadLetterTopic:
    return KafkaDeadLetterTopic(cast(Any, producer), "t.dlq", **kwargs)


async def test_a_letter_over_the_request_size_is_degraded_not_retried_as_is() -> None:
    producer = FakeProducer()
    degraded: list[int] = []
    store = topic_store(producer, on_degraded=lambda: degraded.append(1))
    big = letter(0, value=b"v" * 2 * MIB)

    await store.publish([big, letter(1)])

    assert [(key, value) for key, value, _ in producer.acked] == [
        (b"2", letter(1).value),
        (b"1", b""),
    ]
    assert header(producer.acked[1][2], VALUE_TRUNCATED) == str(2 * MIB).encode()
    assert degraded == [1]


async def test_the_proactive_size_check_skips_the_refusal() -> None:
    producer = FakeProducer()
    store = topic_store(producer, max_message_bytes=LIMIT)
    await store.publish([letter(0, value=b"v" * 2 * MIB)])
    assert [value for _key, value, _h in producer.sent] == [b""], "sent degraded at once"


async def test_a_broker_refusal_for_size_degrades_the_letter_too() -> None:
    producer = FakeProducer(max_request_size=4 * MIB, broker_limit=MIB)
    await topic_store(producer).publish([letter(0, value=b"v" * 2 * MIB)])
    assert [value for _key, value, _h in producer.acked] == [b""]


async def test_broker_down_names_only_the_unacknowledged_letters() -> None:
    producer = FakeProducer()
    producer.down = {b"2"}
    store = topic_store(producer)
    letters = [letter(0), letter(1), letter(2)]

    with pytest.raises(DeadLetterStoreError) as caught:
        await store.publish(letters)

    assert caught.value.unacknowledged == (1,)
    assert [key for key, _v, _h in producer.acked] == [b"1", b"3"]


async def test_writer_retries_send_each_store_only_what_it_lacks() -> None:
    """The issue's duplicates: retries re-published the other letters of the batch."""
    producer = FakeProducer()
    producer.down = {b"2"}
    table = FakeTable()
    writer = DeadLetterWriter(cast(Any, table), topic_store(producer))
    letters = [letter(0), letter(1, value=b"v" * 2 * MIB), letter(2)]
    delivery = writer.deliver(letters)

    with pytest.raises(DeadLetterStoreError) as caught:
        await delivery.attempt()
    assert caught.value.stores == ("kafka",)
    assert delivery.held == 1
    producer.down.clear()
    result = await delivery.attempt()

    assert set(result.written) == {"postgres", "kafka"}
    assert sorted(key or b"" for key, _v, _h in producer.acked) == [b"1", b"2", b"3"], "each once"
    assert table.calls == [[0, 1, 2]], "the table had them all: not written again"
    assert delivery.held == 0


# --- the table store: a rejected batch is split and only the bad letter degraded ----------


class FakeTable:
    store_name = "postgres"

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    async def write(self, letters: Sequence[DeadLetter]) -> None:
        self.calls.append([letter.offset for letter in letters])


class AsciiOnlyConn:
    """A server that rejects non-ASCII text (as a SQL_ASCII/LATIN1 database would)."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self.rejected = 0
        self.down = False

    async def execute(self, statement: str, *columns: list[Any], **_options: Any) -> None:
        if self.down:
            raise ConnectionResetError("connection reset")
        texts = [v for column in columns for v in column if isinstance(v, str)]
        if any(not text.isascii() for text in texts):
            self.rejected += 1
            raise asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence")
        self.rows.extend(list(row) for row in zip(*columns, strict=True))


class FakePool:
    def __init__(self, conn: AsciiOnlyConn) -> None:
        self.conn = conn

    def acquire(self, timeout: float | None = None) -> Any:
        conn = self.conn

        class _Ctx:
            async def __aenter__(self) -> AsciiOnlyConn:
                return conn

            async def __aexit__(self, *exc: object) -> None:
                return None

        return _Ctx()


async def test_a_rejected_row_is_degraded_alone_and_the_others_stored_as_they_are() -> None:
    conn = AsciiOnlyConn()
    degraded: list[int] = []
    table = PostgresDeadLetterTable(
        cast(Any, FakePool(conn)), on_degraded=lambda: degraded.append(1)
    )
    good, bad = letter(0), letter(1, error_message="caf\u00e9", data={"t": "\u00e9"})

    await table.write([good, bad, letter(2)])

    by_offset = {row[8]: row for row in conn.rows}
    assert sorted(by_offset) == [0, 1, 2]
    assert by_offset[0][2] is not None, "the good letter keeps its data column"
    assert (by_offset[1][2], by_offset[1][4]) == (None, "caf\\xe9")
    assert by_offset[1][10] == bad.value, "every byte of the value is kept"
    assert degraded == [1]


async def test_table_down_names_the_letters_not_written() -> None:
    conn = AsciiOnlyConn()
    conn.down = True
    table = PostgresDeadLetterTable(cast(Any, FakePool(conn)))
    with pytest.raises(DeadLetterStoreError) as caught:
        await table.write([letter(0), letter(1)])
    assert caught.value.unacknowledged == (0, 1)


async def test_a_value_over_the_table_cap_keeps_its_first_bytes_size_and_hash() -> None:
    conn = AsciiOnlyConn()
    table = PostgresDeadLetterTable(cast(Any, FakePool(conn)), max_value_bytes=64 * 1024)
    value = b"v" * 100_000
    await table.write([letter(0, value=value)])
    [row] = conn.rows
    assert (len(row[10]), row[14], row[16]) == (64 * 1024, 100_000, True)
    assert row[15] == hashlib.sha256(value).hexdigest()


# --- held letters (readiness) ---------------------------------------------------------------


def test_held_letters_summary_names_store_count_and_reason() -> None:
    held = HeldLetters()
    assert held.summary() is None
    held.hold(("t", 0), 3, ("postgres",), "ConnectionRefusedError")
    held.hold(("t", 1), 2, ("postgres",), "ConnectionRefusedError")
    assert held.letters == 5
    summary = held.summary()
    assert summary is not None
    assert "postgres" in summary and "5 letters" in summary and "ConnectionRefusedError" in summary
    held.release(("t", 0))
    held.release(("t", 1))
    assert held.summary() is None and held.letters == 0
