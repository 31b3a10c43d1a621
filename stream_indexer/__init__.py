"""stream-indexer: keeps an OpenSearch index of listings in step with Kafka change events."""

from stream_indexer.dlq.record import DeadLetter
from stream_indexer.dlq.writer import DeadLetterWriter
from stream_indexer.errors import (
    ConfigError,
    PoisonRecordError,
    StreamIndexerError,
    TransientError,
)
from stream_indexer.models import Listing, ListingEvent
from stream_indexer.observability.metrics import Metrics
from stream_indexer.producer import (
    ListingEventProducer,
    ProducerBackpressureError,
    SyncListingEventProducer,
    insert_event,
)
from stream_indexer.settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DeadLetter",
    "DeadLetterWriter",
    "Listing",
    "ListingEvent",
    "ListingEventProducer",
    "Metrics",
    "PoisonRecordError",
    "ProducerBackpressureError",
    "Settings",
    "StreamIndexerError",
    "SyncListingEventProducer",
    "TransientError",
    "__version__",
    "insert_event",
    "load_settings",
]
