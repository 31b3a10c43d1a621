"""Dead letters, repair path two (`dlq replay`): re-publish DLQ topic records to their source.

A replayed record is the original one (key, value bytes, headers without `x-dlq-*`) plus
`x-replay-count` = previous count + 1, sent to the topic named by `x-dlq-original-topic`
(and its original partition, so per-listing order across the source topic is kept) or to
`--to-topic`. The indexer then treats it like any record: valid now, it is indexed
(versions decide, so replaying old events cannot overwrite newer ones); still poison, it
is dead-lettered again, carrying its count, and a record whose count reached the limit
is refused (counted as skipped), so a replay loop ends.

The tool reads with its own consumer group on manually assigned partitions and commits
what it examined after each acknowledged chunk, so a second run resumes where the first
stopped. It stops at the end offsets seen when it started: re-dead-lettered records it
causes land after them and are left for the next run. The end is the highwater of the
first fetch response per partition (some brokers' `end_offsets()` is wrong), with
an idle timeout as a backstop. Records not matching the filters are passed over and
committed too: the group will not offer them again.

Each acknowledged record is noted on its table row (`replayed_at`, `replay_count`:
`dlq/replayed.py`), so `dlq list` shows it "replayed, waiting" until the indexer resolves
the row; the replay goes on when the table cannot be reached (`rows_not_marked`).

A degraded DLQ record (its value left out, `x-dlq-value-truncated`) is replayed with the
key, value and headers its table row kept (`restore.TableOriginals`), checked against
`x-dlq-value-sha256`; when the table no longer has them the record is skipped and counted
(`value_unavailable`), never replayed with its placeholder value.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_indexer.dlq.degrade import is_degraded
from stream_indexer.dlq.headers import (
    ERROR_CLASS,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
)
from stream_indexer.dlq.replayed import ReplayLedger, source_of
from stream_indexer.dlq.restore import TableOriginals
from stream_indexer.errors import ReplayError
from stream_indexer.kafka_clients import consumer_kwargs, create_producer, producer_kwargs
from stream_indexer.repair.replay_records import (
    ReplayFilter,
    header,
    replay_count,
    replay_headers,
    text,
)
from stream_indexer.settings import Settings

DEFAULT_MAX_REPLAYS = 3
GROUP_SUFFIX = "-dlq-replay"


def default_group_id(settings: Settings) -> str:
    """The replay tool's consumer group: `<kafka.group_id>-dlq-replay`."""
    return settings.kafka.group_id + GROUP_SUFFIX


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    where: ReplayFilter = field(default_factory=ReplayFilter)
    to_topic: str | None = None
    limit: int | None = None
    dry_run: bool = False
    #: records per second, None for as fast as the broker takes them
    rate: float | None = None
    max_replays: int = DEFAULT_MAX_REPLAYS
    group_id: str | None = None
    #: stop when no record arrives for this long before the end is reached (backstop)
    idle_timeout_s: float = 3.0


@dataclass(slots=True)
class ReplayReport:
    examined: int = 0
    replayed: int = 0
    #: refused: `x-replay-count` already at the limit
    skipped_limit: int = 0
    #: did not match the filters
    filtered_out: int = 0
    #: no `x-dlq-original-topic` header and no `--to-topic`
    no_target: int = 0
    #: degraded records whose original bytes the table no longer has
    value_unavailable: int = 0
    #: replayed records whose table row could not be marked replayed (table unreachable)
    rows_not_marked: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    #: dry run: one line per record that would be replayed
    planned: list[str] = field(default_factory=list)
    group_id: str = ""

    def to_json(self, *, dry_run: bool) -> dict[str, Any]:
        return {
            "dry_run": dry_run,
            "group_id": self.group_id,
            "examined": self.examined,
            "replayed": 0 if dry_run else self.replayed,
            "would_replay": self.replayed if dry_run else 0,
            "skipped_replay_limit": self.skipped_limit,
            "filtered_out": self.filtered_out,
            "no_target_topic": self.no_target,
            "value_unavailable": self.value_unavailable,
            "rows_not_marked": self.rows_not_marked,
            "by_topic": dict(self.by_topic),
        }


class _Pacer:
    """At most `rate` calls of `wait()` per second, evenly spaced."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 0.0 if not rate else 1.0 / rate
        self._next = time.monotonic()

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


class DlqReplayer:
    """One `dlq replay` run over `settings.dlq_topic`."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_start: Callable[[int], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_start = on_start
        self._on_progress = on_progress
        self._originals: TableOriginals | None = None
        self._ledger: ReplayLedger | None = None

    async def run(self, options: ReplayOptions) -> ReplayReport:
        settings = self._settings
        group_id = options.group_id or default_group_id(settings)
        report = ReplayReport(group_id=group_id)
        consumer = AIOKafkaConsumer(
            **{
                **consumer_kwargs(settings),
                "group_id": group_id,
                "auto_offset_reset": "earliest",
                "enable_auto_commit": False,
            }
        )
        producer: AIOKafkaProducer | None = None
        self._originals = TableOriginals(settings)
        self._ledger = ReplayLedger(settings)
        try:
            await consumer.start()
            tps = await self._assign(consumer, options.to_topic)
            if not options.dry_run:
                # a degraded letter's value may be as large as the table keeps
                request_size = producer_kwargs(settings, purpose="events")["max_request_size"]
                producer = create_producer(
                    settings,
                    "events",
                    max_request_size=max(
                        request_size, settings.dlq.table_max_value_bytes + 64 * 1024
                    ),
                )
                await producer.start()
            await self._replay(consumer, producer, tps, options, report)
        finally:
            if producer is not None:
                await producer.stop()
            await consumer.stop()
            await self._originals.close()
            await self._ledger.close()
            report.rows_not_marked = self._ledger.unrecorded
        return report

    async def _assign(
        self, consumer: AIOKafkaConsumer, to_topic: str | None
    ) -> list[TopicPartition]:
        topic = self._settings.dlq_topic
        # Asking for an unknown topic by name would create it on brokers that auto-create.
        existing = await consumer.topics()
        if topic not in existing:
            raise ReplayError(f"DLQ topic {topic!r} does not exist")
        if to_topic is not None and to_topic not in existing:
            raise ReplayError(f"target topic {to_topic!r} does not exist")
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        return tps

    async def _replay(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer | None,
        tps: list[TopicPartition],
        options: ReplayOptions,
        report: ReplayReport,
    ) -> None:
        starts = {tp: await consumer.position(tp) for tp in tps}
        pending, ends = await self._capture_ends(consumer, tps, options.idle_timeout_s)
        if self._on_start is not None:
            self._on_start(sum(max(0, ends[tp] - starts[tp]) for tp in tps))
        pacer = _Pacer(options.rate)
        open_tps = {tp for tp in tps if starts[tp] < ends[tp]}
        consumer.pause(*(set(tps) - open_tps))
        idle_since = time.monotonic()
        while open_tps:
            if pending:
                chunk, pending = pending, {}
            else:
                chunk = await consumer.getmany(*open_tps, timeout_ms=200)
            if any(chunk.values()):
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > options.idle_timeout_s:
                return  # nothing more arrives although the highwater said so: stop there
            limit_hit = await self._chunk(chunk, ends, producer, consumer, pacer, options, report)
            if limit_hit:
                return
            for tp in list(open_tps):
                if await consumer.position(tp) >= ends[tp]:
                    open_tps.discard(tp)
                    consumer.pause(tp)

    async def _capture_ends(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], timeout_s: float
    ) -> tuple[dict[TopicPartition, list[Any]], dict[TopicPartition, int]]:
        """Fetch until every partition has reported its highwater; keep what was fetched."""
        pending: dict[TopicPartition, list[Any]] = {}
        deadline = time.monotonic() + max(timeout_s, 10.0)
        while True:
            ends = {tp: consumer.highwater(tp) for tp in tps}
            if all(end is not None for end in ends.values()):
                return pending, {tp: int(end) for tp, end in ends.items() if end is not None}
            if time.monotonic() > deadline:
                raise ReplayError("the broker reported no end offset for the DLQ topic in time")
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                pending.setdefault(tp, []).extend(records)

    async def _chunk(
        self,
        chunk: dict[TopicPartition, list[Any]],
        ends: dict[TopicPartition, int],
        producer: AIOKafkaProducer | None,
        consumer: AIOKafkaConsumer,
        pacer: _Pacer,
        options: ReplayOptions,
        report: ReplayReport,
    ) -> bool:
        """Handle one fetched chunk; commit what was examined. True when `--limit` is hit."""
        deliveries: list[asyncio.Future[Any]] = []
        examined: dict[TopicPartition, int] = {}
        sources: list[tuple[str, int, int]] = []
        limit_hit = False
        try:
            for tp, records in chunk.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    if options.limit is not None and report.replayed >= options.limit:
                        limit_hit = True
                        break
                    future = await self._one(record, producer, pacer, options, report)
                    if future is not None:
                        deliveries.append(future)
                        source = source_of(record.headers or ())
                        if source is not None:
                            sources.append(source)
                    examined[tp] = record.offset + 1
                    report.examined += 1
                    if self._on_progress is not None:
                        self._on_progress(1)
                if limit_hit:
                    break
        finally:
            # Every queued delivery is awaited, even when a later send failed; the first
            # failure is raised and nothing of this chunk is committed.
            results = await asyncio.gather(*deliveries, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if sources and self._ledger is not None:
            await self._ledger.replayed(sources)
        if examined and not options.dry_run:
            await consumer.commit(examined)
        return limit_hit

    async def _one(
        self,
        record: Any,
        producer: AIOKafkaProducer | None,
        pacer: _Pacer,
        options: ReplayOptions,
        report: ReplayReport,
    ) -> asyncio.Future[Any] | None:
        headers = tuple((str(k), bytes(v or b"")) for k, v in record.headers or ())
        if not options.where.matches(record.key, record.value, headers, record.timestamp):
            report.filtered_out += 1
            return None
        count = replay_count(headers)
        if count >= options.max_replays:
            report.skipped_limit += 1
            return None
        original = text(header(headers, ORIGINAL_TOPIC))
        target = options.to_topic or original
        if not target:
            report.no_target += 1
            return None
        key, value, source_headers = record.key, record.value, headers
        if producer is not None and is_degraded(headers):
            found = None if self._originals is None else await self._originals.original(headers)
            if found is None:
                report.value_unavailable += 1
                return None
            key, value, source_headers = found.key, found.value, found.headers
            count = max(count, replay_count(found.headers))
            if count >= options.max_replays:
                report.skipped_limit += 1
                return None
        partition = None
        if target == original and producer is not None:
            partition = await _original_partition(producer, target, headers)
        report.replayed += 1
        report.by_topic[target] += 1
        if producer is None:
            report.planned.append(
                f"would replay {record.topic}[{record.partition}]@{record.offset} "
                f"key={text(record.key)!r} error_class={text(header(headers, ERROR_CLASS))} "
                f"-> {target} (x-replay-count {count + 1})"
            )
            return None
        await pacer.wait()
        if value is None and key is None:
            value = b""  # Kafka allows neither; aiokafka refuses to send one
        future: asyncio.Future[Any] = await producer.send(
            target,
            value=value,
            key=key,
            headers=replay_headers(source_headers, count + 1),
            partition=partition,
        )
        return future


async def _original_partition(
    producer: AIOKafkaProducer, topic: str, headers: Iterable[tuple[str, bytes]]
) -> int | None:
    """The record's original partition when the target topic still has it."""
    raw = header(list(headers), ORIGINAL_PARTITION)
    if raw is None:
        return None
    try:
        partition = int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    partitions = await producer.partitions_for(topic)
    return partition if partition in partitions else None


__all__ = [
    "DEFAULT_MAX_REPLAYS",
    "DlqReplayer",
    "ReplayError",
    "ReplayOptions",
    "ReplayReport",
    "default_group_id",
]
