"""Producer side: emit listing events to Kafka from a service, directly or via an outbox.

    async with ListingEventProducer(settings) as producer:
        delivery = producer.emit_index_nowait(listing, version=version_from_datetime(ts))
        await delivery            # optional: wait for Kafka's acknowledgement

`emit_*_nowait` validates and queues the event, then returns (the sender writes its bytes): it
never waits for the event loop or the broker. `SyncListingEventProducer` does the same for
blocking code.

`insert_event(conn, event, topic=...)` writes the event in your own database transaction
instead; `stream-indexer outbox relay` (`OutboxRelay`) publishes those rows.
"""

from stream_indexer.producer.client import (
    DeliveryResult,
    ListingEventProducer,
    ProducerBackpressureError,
    ProducerClosedError,
    ProducerDeliveryError,
)
from stream_indexer.producer.events import (
    InvalidEventError,
    delete_event,
    encode_key,
    encode_value,
    index_event,
    validate_event,
    version_from_datetime,
)
from stream_indexer.producer.outbox import PoolOutbox, insert_event
from stream_indexer.producer.relay import OutboxMetrics, OutboxRelay
from stream_indexer.producer.sync import SyncListingEventProducer

__all__ = [
    "DeliveryResult",
    "InvalidEventError",
    "ListingEventProducer",
    "OutboxMetrics",
    "OutboxRelay",
    "PoolOutbox",
    "ProducerBackpressureError",
    "ProducerClosedError",
    "ProducerDeliveryError",
    "SyncListingEventProducer",
    "delete_event",
    "encode_key",
    "encode_value",
    "index_event",
    "insert_event",
    "validate_event",
    "version_from_datetime",
]
