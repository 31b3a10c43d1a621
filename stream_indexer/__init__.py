"""stream-indexer: keeps an OpenSearch index of listings in step with Kafka change events."""

from stream_indexer.errors import (
    ConfigError,
    PoisonRecordError,
    StreamIndexerError,
    TransientError,
)
from stream_indexer.models import Listing, ListingEvent
from stream_indexer.settings import Settings, load_settings

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Listing",
    "ListingEvent",
    "PoisonRecordError",
    "Settings",
    "StreamIndexerError",
    "TransientError",
    "__version__",
    "load_settings",
]
