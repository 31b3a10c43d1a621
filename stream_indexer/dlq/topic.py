"""Dead letters, Kafka side: publish each poison record to the DLQ topic, the complete log of
every dead-lettered record (DESIGN.md section 4).

Each DLQ record keeps the original key and value bytes and carries `dead_letter_headers()`.
`publish` returns only when the broker has acknowledged every record, so the caller may then
move the offset. A retry after a partial failure publishes the whole batch again: the topic is
a log, and a duplicate there is accepted (replay is idempotent downstream, versions decide).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream_indexer.dlq.headers import dead_letter_headers
from stream_indexer.dlq.record import DeadLetter
from stream_indexer.errors import DeadLetterStoreError

STORE_NAME = "kafka"


class KafkaDeadLetterTopic:
    """The DLQ topic `topic`, written through a started `producer` the caller owns."""

    store_name = STORE_NAME

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, *, timeout: float | None = 60.0
    ) -> None:
        self._producer = producer
        self.topic = topic
        self._timeout = timeout

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Send every letter, await every acknowledgement; DeadLetterStoreError if any fails."""
        if not letters:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._send_all(letters)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise DeadLetterStoreError(
                f"DLQ store kafka (topic {self.topic}) failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def _send_all(self, letters: Sequence[DeadLetter]) -> None:
        deliveries: list[asyncio.Future[Any]] = []
        try:
            for letter in letters:
                value = letter.value
                if value is None and letter.key is None:
                    # Kafka allows a record with neither; aiokafka refuses to send one.
                    value = b""
                deliveries.append(
                    await self._producer.send(
                        self.topic,
                        value=value,
                        key=letter.key,
                        headers=dead_letter_headers(letter),
                    )
                )
        finally:
            # Await every delivery that was queued, even when a later send failed, so that
            # none is left unobserved; the first failure is what we report.
            results = await asyncio.gather(*deliveries, return_exceptions=True)
        for result in results:
            if isinstance(result, asyncio.CancelledError):
                # A delivery future cancelled under us: the producer was stopped mid-flight.
                raise KafkaError("delivery cancelled; was the producer stopped?")
            if isinstance(result, BaseException):
                raise result


__all__ = ["KafkaDeadLetterTopic"]
