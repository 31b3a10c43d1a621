"""Dead letters, Kafka side: publish each poison record to the DLQ topic, the complete log of
every dead-lettered record (docs/contract.md section 4).

Each DLQ record keeps the original key and value bytes and carries `dead_letter_headers()`.
`publish` returns only when the broker has acknowledged every record, so the caller may then
move the offset. Acknowledgements are tracked per letter: a letter refused for its size (by
aiokafka's `max_request_size` check or by the broker) is degraded and sent again at once
(`degrade.topic_message`: value left out, `x-dlq-value-truncated` and `x-dlq-value-sha256`
added); when the broker is unavailable, `DeadLetterStoreError.unacknowledged` names the
letters still unacknowledged, so a retry re-sends only those and a letter reaches the topic
once per delivery of its source record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from stream_indexer.dlq.degrade import (
    MAX_TOPIC_LEVEL,
    TopicMessage,
    Verdict,
    first_fitting_message,
    kafka_verdict,
    topic_message,
)
from stream_indexer.dlq.record import DeadLetter
from stream_indexer.errors import DeadLetterStoreError

STORE_NAME = "kafka"

log = logging.getLogger(__name__)


class KafkaDeadLetterTopic:
    """The DLQ topic `topic`, written through a started `producer` the caller owns.

    `max_message_bytes` (the producer's `max_request_size`) lets a letter that cannot fit
    start degraded instead of being refused first; None leaves that to the producer.
    """

    store_name = STORE_NAME

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        *,
        timeout: float | None = 60.0,
        max_message_bytes: int | None = None,
        on_degraded: Callable[[], None] | None = None,
    ) -> None:
        self._producer = producer
        self.topic = topic
        self._timeout = timeout
        self._max_message_bytes = max_message_bytes
        self._on_degraded = on_degraded

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Send every letter, await every acknowledgement; DeadLetterStoreError if any fails."""
        if not letters:
            return
        messages = {i: self._fitting(letter) for i, letter in enumerate(letters)}
        try:
            async with asyncio.timeout(self._timeout):
                while messages:
                    rejected = await self._send_round(messages)
                    for i in rejected:
                        messages[i] = self._degrade(letters[i], messages[i])
        except (KafkaError, TimeoutError, OSError) as exc:
            raise DeadLetterStoreError(
                f"DLQ store kafka (topic {self.topic}) failed: {type(exc).__name__}: {exc}",
                unacknowledged=tuple(sorted(messages)),
            ) from exc

    def _fitting(self, letter: DeadLetter) -> TopicMessage:
        message = first_fitting_message(letter, self._max_message_bytes)
        if message.level and self._on_degraded is not None:
            self._on_degraded()
        return message

    def _degrade(self, letter: DeadLetter, message: TopicMessage) -> TopicMessage:
        if message.level >= MAX_TOPIC_LEVEL:
            # Only x-dlq-* headers are left: a limit this small is a configuration error.
            raise KafkaError(
                f"a minimal dead letter ({message.size} bytes) is still refused as too large"
            )
        log.warning(
            "DLQ topic refused a dead letter as too large, sending it degraded (level %d)",
            message.level + 1,
            extra={"topic": letter.topic, "partition": letter.partition, "offset": letter.offset},
        )
        if self._on_degraded is not None:
            self._on_degraded()
        return topic_message(letter, message.level + 1)

    async def _send_round(self, messages: dict[int, TopicMessage]) -> list[int]:
        """Send `messages`; drop each acknowledged one from it, return those refused for size.

        Raises the first "store unavailable" error after every queued delivery settled.
        """
        deliveries: dict[int, asyncio.Future[Any]] = {}
        rejected: list[int] = []
        failure: BaseException | None = None
        try:
            for i, message in sorted(messages.items()):
                try:
                    deliveries[i] = await self._producer.send(
                        self.topic, value=message.value, key=message.key, headers=message.headers
                    )
                except (KafkaError, UnicodeError) as exc:
                    if kafka_verdict(exc) is Verdict.REJECTED:
                        rejected.append(i)
                        continue
                    failure = exc
                    break
        finally:
            # Await every delivery that was queued, even when a later send failed, so that
            # none is left unobserved and each acknowledgement is counted.
            results = await asyncio.gather(*deliveries.values(), return_exceptions=True)
        for i, result in zip(deliveries, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                # A delivery future cancelled under us: the producer was stopped mid-flight.
                failure = failure or KafkaError("delivery cancelled; was the producer stopped?")
            elif isinstance(result, BaseException):
                if kafka_verdict(result) is Verdict.REJECTED:
                    rejected.append(i)
                else:
                    failure = failure or result
            else:
                del messages[i]
        if failure is not None:
            raise failure
        return rejected


__all__ = ["KafkaDeadLetterTopic"]
