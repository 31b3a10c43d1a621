"""DLQ table gauges: open rows and the oldest open row (what the alerts and dashboard use),
and the whole table's size and oldest row (open and resolved: what retention keeps)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from stream_indexer.dlq.table import quote_table_name
from stream_indexer.observability.metrics import Metrics

log = logging.getLogger(__name__)
SAMPLE_INTERVAL_S = 15.0


async def sample_dlq_table(
    pool: Any, table: str, metrics: Metrics, stopping: asyncio.Event
) -> None:
    """Every SAMPLE_INTERVAL_S until `stopping`: open and total rows, their oldest ages."""
    age = "coalesce(extract(epoch FROM now() - min(created_at){}), 0)::float8"
    query = (
        f"SELECT count(*), {age.format('')}, count(*) FILTER (WHERE resolved_at IS NULL), "
        f"{age.format(' FILTER (WHERE resolved_at IS NULL)')} FROM {quote_table_name(table)}"
    )
    while not stopping.is_set():
        try:
            count, oldest, open_rows, oldest_open = await pool.fetchrow(query)
        except Exception as exc:  # the table may not be migrated yet: keep serving
            log.debug("DLQ stats query failed: %s", exc)
        else:
            metrics.dlq_entries.set(count)
            metrics.dlq_oldest_entry_age.set(oldest)
            metrics.dlq_open_rows.set(open_rows)
            metrics.dlq_oldest_open_age.set(oldest_open)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), SAMPLE_INTERVAL_S)
