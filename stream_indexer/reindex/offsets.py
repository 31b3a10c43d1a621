"""Reindex, offsets: consumer-group positions read and written without joining the group.

The catch-up group starts where the live group stood before the backfill read its first
row: those offsets are read with `committed()` from a consumer that never joins the live
group, and committed for the catch-up group through a manually assigned consumer (no group
membership either). Lag is the high watermark minus a group's committed offset; the high
watermark comes from a fetch response (`highwater()`), since `end_offsets()` is wrong on
some brokers (tansu answers the last batch's base offset + 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_indexer.kafka_clients import connection_kwargs
from stream_indexer.lifecycle import Lifecycle
from stream_indexer.settings import Settings

#: how long a probe waits for every partition's fetch response
HIGHWATER_TIMEOUT_S = 5.0


def _consumer(settings: Settings, group_id: str | None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **connection_kwargs(settings.kafka),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024,
        max_partition_fetch_bytes=16 * 1024,
        fetch_max_wait_ms=100,
        isolation_level=settings.kafka.isolation_level,
    )


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer.topics()  # a metadata request
    partitions = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(partitions)]


async def group_offsets(settings: Settings, group_id: str) -> dict[int, int]:
    """`group_id`'s committed offset per partition of the topic; partitions it never
    committed are left out (the group would start them at the earliest offset)."""
    consumer = _consumer(settings, group_id)
    await consumer.start()
    try:
        found: dict[int, int] = {}
        for tp in await topic_partitions(consumer, settings.kafka.topic):
            offset = await consumer.committed(tp)
            if offset is not None and offset >= 0:
                found[tp.partition] = offset
        return found
    finally:
        await consumer.stop()


async def commit_group_offsets(
    settings: Settings, group_id: str, offsets: Mapping[int, int]
) -> None:
    """Commit `offsets` (partition -> offset) for `group_id` without joining it."""
    if not offsets:
        return
    consumer = _consumer(settings, group_id)
    await consumer.start()
    try:
        tps = {TopicPartition(settings.kafka.topic, p): o for p, o in offsets.items()}
        consumer.assign(list(tps))
        await consumer.commit(tps)
    finally:
        await consumer.stop()


class LagProbe(Lifecycle):
    """High watermarks of the topic and any group's lag against them."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._reader: AIOKafkaConsumer | None = None
        self._groups: dict[str, AIOKafkaConsumer] = {}
        self._tps: list[TopicPartition] = []
        self._highwater: dict[int, int] = {}

    async def _start(self) -> None:
        reader = _consumer(self._settings, None)
        await reader.start()
        self._reader = reader
        self._tps = await topic_partitions(reader, self._settings.kafka.topic)
        reader.assign(self._tps)

    async def _stop(self) -> None:
        consumers = [c for c in (self._reader, *self._groups.values()) if c is not None]
        self._reader, self._groups = None, {}
        for consumer in consumers:
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def highwaters(self) -> dict[int, int]:
        """Every partition's high watermark, from a fresh fetch response."""
        reader = self._reader
        if reader is None:
            raise RuntimeError("LagProbe used before start()")
        asked = time.time() * 1000
        for tp in self._tps:
            # fetching at the last known end costs an empty response
            known = self._highwater.get(tp.partition)
            if known is None:
                await reader.seek_to_beginning(tp)
            else:
                reader.seek(tp, known)
        deadline = time.monotonic() + HIGHWATER_TIMEOUT_S
        waiting = set(self._tps)
        while waiting and time.monotonic() < deadline:
            await reader.getmany(*waiting, timeout_ms=100, max_records=1)
            for tp in list(waiting):
                hw = reader.highwater(tp)
                if hw is not None and reader.last_poll_timestamp(tp) >= asked:
                    self._highwater[tp.partition] = hw
                    waiting.discard(tp)
            await asyncio.sleep(0)
        return dict(self._highwater)

    async def committed(self, group_id: str) -> dict[int, int]:
        consumer = self._groups.get(group_id)
        if consumer is None:
            consumer = _consumer(self._settings, group_id)
            await consumer.start()
            self._groups[group_id] = consumer
        found: dict[int, int] = {}
        for tp in self._tps:
            offset = await consumer.committed(tp)
            found[tp.partition] = offset if offset is not None and offset >= 0 else 0
        return found

    async def lag(self, group_id: str, highwaters: Mapping[int, int] | None = None) -> int:
        """Records the group has not committed yet, summed over partitions."""
        ends = highwaters if highwaters is not None else await self.highwaters()
        return total_lag(ends, await self.committed(group_id))


def total_lag(highwaters: Mapping[int, int], committed: Mapping[int, int]) -> int:
    """Records not committed yet, summed over the partitions of `highwaters`."""
    return sum(max(0, end - committed.get(p, 0)) for p, end in highwaters.items())


__all__ = [
    "LagProbe",
    "commit_group_offsets",
    "group_offsets",
    "topic_partitions",
    "total_lag",
]
