"""Reindex, session: the clients one reindex command works with, opened and closed together.

A Postgres pool (the runs table, the DLQ table), an OpenSearch client for index and alias
calls, the lag probe, one metrics registry (the catch-up's pipeline metrics and the
`stream_indexer_reindex_*` gauges), the progress reporter and the stop event a signal sets.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from typing import Any, TextIO

from opensearchpy import AsyncOpenSearch
from prometheus_client import CollectorRegistry

from stream_indexer.app.startup import create_pool
from stream_indexer.errors import ReindexError
from stream_indexer.observability.metrics import Metrics
from stream_indexer.observability.reindex_metrics import ReindexMetrics
from stream_indexer.opensearch import aliases
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.reindex.offsets import LagProbe
from stream_indexer.reindex.progress import Reporter
from stream_indexer.reindex.state import ReindexRun, RunStore
from stream_indexer.settings import Settings


class Session:
    """`async with Session(settings) as s:` then `s.store`, `s.client`, `s.probe`, ..."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        stream: TextIO | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.settings = settings
        self.alias = settings.opensearch.index
        self.write_alias = settings.write_alias
        self.live_group = settings.kafka.group_id
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.reindex_metrics = ReindexMetrics(self.registry)
        self.reporter = Reporter(
            self.reindex_metrics, interval_s=settings.reindex.progress_interval_s, stream=stream
        )
        self.stop = stop or asyncio.Event()
        self._stack = AsyncExitStack()
        self.pool: Any = None
        self.store: RunStore
        self._admin = OpenSearchSink(settings, bulk_index=self.alias)  # index and alias calls
        self.probe = LagProbe(settings)
        self._probe_started = False

    @property
    def client(self) -> AsyncOpenSearch:
        return self._admin.client

    async def __aenter__(self) -> Session:
        try:
            self.pool = await create_pool(self.settings)
            self._stack.push_async_callback(self.pool.close)
            self.store = RunStore(self.pool)
            await self._admin.start()
            self._stack.push_async_callback(self._admin.stop)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._probe_started:
            with contextlib.suppress(Exception):
                await self.probe.stop()
        await self._stack.aclose()

    async def start_probe(self) -> LagProbe:
        if not self._probe_started:
            await self.probe.start()
            self._probe_started = True
        return self.probe

    async def check_not_aborted(self, run: ReindexRun) -> None:
        """Raise when another process aborted `run` (`reindex abort`) or a stop was asked."""
        current = await self.store.get(run.id)
        if current.phase == "aborted":
            raise ReindexError(f"reindex run {run.id} was aborted")
        if self.stop.is_set():
            raise ReindexError(
                f"reindex run {run.id} stopped in phase {run.phase}; rerun to resume it"
            )

    async def point_aliases(self, to_index: str, away_from: str | None) -> None:
        """Both aliases on `to_index` in one atomic request (a no-op when they are)."""
        client = self.client
        searched = await aliases.alias_targets(client, self.alias)
        written = await aliases.alias_targets(client, self.write_alias)
        if searched == [to_index] and written == [to_index]:
            return
        body = aliases.switch_actions(self.alias, self.write_alias, away_from, to_index)
        on = {self.alias: searched, self.write_alias: written}
        # remove only what is there (a deployment from before the write alias has none)
        body["actions"] = [
            action
            for action in body["actions"]
            if "remove" not in action
            or action["remove"]["index"] in on.get(action["remove"]["alias"], [])
        ]
        await client.indices.update_aliases(body=body)


__all__ = ["Session"]
