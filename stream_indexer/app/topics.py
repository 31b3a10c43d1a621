"""Topic setup: create the topics the pipeline needs (DLQ, dev and test topics) up front.

Create topics explicitly, before any producer or consumer touches them: brokers with topic
auto-creation (tansu always, with 4 partitions) would otherwise make them on the first
metadata request with a partition count nobody chose.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from stream_indexer.errors import ConfigError
from stream_indexer.kafka_security import check_tls

_METADATA_WAIT_S = 10.0


async def ensure_topic(
    bootstrap_servers: str,
    name: str,
    *,
    partitions: int,
    replication_factor: int = 1,
    config: dict[str, str] | None = None,
    client_kwargs: dict[str, object] | None = None,
) -> bool:
    """Create topic `name` unless it exists; True when this call created it.

    Raises `ConfigError` when the topic exists with fewer partitions than asked (keys would
    land on other partitions than planned), and the broker's error for any other failure.
    """
    context = (client_kwargs or {}).get("ssl_context")
    if isinstance(context, ssl.SSLContext):
        # the first Kafka connection of a start: a refused certificate must fail it, not
        # vanish into aiokafka's "Unable to bootstrap" and be waited on forever
        await check_tls(bootstrap_servers, context)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(client_kwargs or {}))
    try:
        await admin.start()
        created = await _create(admin, name, partitions, replication_factor, config or {})
        actual = await _partition_count(admin, name)
    finally:
        await admin.close()
    if actual < partitions:
        raise ConfigError(
            f"topic {name!r} exists with {actual} partitions, {partitions} are needed; "
            "recreate it or add partitions"
        )
    return created


async def _create(
    admin: AIOKafkaAdminClient,
    name: str,
    partitions: int,
    replication_factor: int,
    config: dict[str, str],
) -> bool:
    topic = NewTopic(
        name=name,
        num_partitions=partitions,
        replication_factor=replication_factor,
        topic_configs=config,
    )
    response = await admin.create_topics([topic])
    for entry in response.to_object()["topic_errors"]:
        code = entry["error_code"]
        if entry["topic"] != name or code == 0:
            continue
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            return False
        raise error(f"creating topic {name!r}: {entry.get('error_message') or error.message}")
    return True


async def _partition_count(admin: AIOKafkaAdminClient, name: str) -> int:
    """Partitions of `name` from metadata; waits briefly while a new topic propagates."""
    deadline = time.monotonic() + _METADATA_WAIT_S
    while True:
        topics: list[dict[str, Any]] = await admin.describe_topics([name])
        meta = next((t for t in topics if t["topic"] == name), None)
        if meta is not None and meta["error_code"] == 0 and meta["partitions"]:
            return len(meta["partitions"])
        if time.monotonic() > deadline:
            code = meta["error_code"] if meta is not None else -1
            raise for_code(code)(f"topic {name!r} not visible in metadata")
        await asyncio.sleep(0.1)
