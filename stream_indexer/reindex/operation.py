"""Reindex, the run: backfill -> catch-up -> cutover -> grace, each step resumable.

`run()` serves `reindex run` (the whole way), `reindex start` (stops once the catch-up group
is near the live group) and `reindex cutover` (continues an open run to the end). Holding
the run lock, it continues the alias's open run or begins one: the live group's committed
offsets are read first (before any row), then the row is written, then the index is
created; each later step writes the row before it goes on. See `rollback.py` for the way
back and `admin.py` for abort, cleanup and status.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opensearchpy.exceptions import RequestError

from stream_indexer.backoff import Backoff, RetryPolicy
from stream_indexer.dlq.redaction import Redactor
from stream_indexer.dlq.table import PostgresDeadLetterTable
from stream_indexer.dlq.topic import KafkaDeadLetterTopic
from stream_indexer.dlq.writer import DeadLetterWriter
from stream_indexer.errors import ReindexError
from stream_indexer.kafka_clients import create_producer, producer_kwargs
from stream_indexer.masking import mask_text
from stream_indexer.opensearch import aliases
from stream_indexer.opensearch.assembler import BulkAssembler
from stream_indexer.opensearch.mapping import index_body
from stream_indexer.opensearch.sink import MAX_TIMEOUT_SCALE, OpenSearchSink
from stream_indexer.opensearch.writer import BulkWriter
from stream_indexer.pipeline.source_scan import SourceScanner
from stream_indexer.reindex.backfill import Backfill, BackfillTools
from stream_indexer.reindex.catchup import CatchUp
from stream_indexer.reindex.live_watch import LiveWatch
from stream_indexer.reindex.load_settings import finish_loading, loading_body
from stream_indexer.reindex.offsets import LagProbe, commit_group_offsets, group_offsets
from stream_indexer.reindex.session import Session
from stream_indexer.reindex.state import ReindexRun, RunLock
from stream_indexer.reindex.throttle import LiveGate

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What `reindex run` / `start` / `cutover` asked for."""

    source: str = "postgres"
    #: a full index body (settings and mappings); None: the models' `index_body()`
    mapping: dict[str, Any] | None = None
    max_rate: float | None = None
    grace_s: float | None = None
    #: False for `reindex start`: stop once caught up, before the cutover
    cutover: bool = True
    #: False for `reindex cutover`: only an open run may be continued
    begin: bool = True


def default_grace_s(session: Session) -> float:
    """Longer than a bulk request can stay in flight (its timeout, scaled for size)."""
    return session.settings.opensearch.request_timeout_s * MAX_TIMEOUT_SCALE + 5.0


def catchup_group(live_group: str, run_id: int) -> str:
    return f"{live_group}.reindex.{run_id}"


async def mappings_differ(session: Session, one: str | None, other: str) -> bool:
    if one is None:
        return True
    found = await session.client.indices.get_mapping(index=f"{one},{other}")
    return bool(found[one]["mappings"] != found[other]["mappings"])


async def run(session: Session, options: RunOptions) -> ReindexRun:
    """Advance the alias's reindex as far as `options` say; the run row as it ends."""
    settings = session.settings
    async with RunLock(settings.postgres.dsn.get_secret_value(), session.alias):
        current = await session.store.open_run(session.alias)
        if current is None:
            if not options.begin:
                raise ReindexError(
                    f"no reindex of {session.alias!r} is open; begin one with `reindex start`"
                )
            current = await _begin(session, options)
        else:
            await session.store.update(current, resumes=current.resumes + 1, error=None)
            log.info(
                "resuming reindex run",
                extra={
                    "reindex_run": current.id,
                    "phase": current.phase,
                    "last_id": current.last_id,
                },
            )
        if current.phase == "rolling_back":
            raise ReindexError(
                f"run {current.id} is being rolled back; finish it with `reindex rollback`"
            )
        session.reporter.rows(current.rows_done, current.rows_total)
        try:
            if current.phase == "backfill":
                await _backfill(session, current, options)
            if current.phase in ("catchup", "grace"):
                await _catch_up_and_cut_over(session, current, options)
        except Exception as exc:
            # the phase stays: a rerun resumes; the row says what stopped it
            with contextlib.suppress(Exception):
                await session.store.update(current, error=mask_text(str(exc))[:2000])
            raise
        finally:
            session.reporter.close()
        return current


async def _begin(session: Session, options: RunOptions) -> ReindexRun:
    settings, client = session.settings, session.client
    old = await aliases.alias_targets(client, session.write_alias) or await aliases.alias_targets(
        client, session.alias
    )
    if len(old) > 1:
        raise ReindexError(f"{session.alias!r} points at {len(old)} indices; expected one")
    # before the backfill reads a row: where the catch-up group will start
    live = {} if options.source == "topic" else await group_offsets(settings, session.live_group)
    total = 0
    if options.source == "postgres":
        async with SourceScanner(settings.source_dsn, settings.source) as scanner:
            total = await scanner.count()
    existing = await aliases.versioned_indices(client, session.alias)
    numbers = [aliases.version_number(session.alias, name) or 0 for name in existing]
    new_index = aliases.versioned_name(session.alias, max(numbers, default=0) + 1)
    created = await session.store.create(
        alias=session.alias,
        old_index=old[0] if old else None,
        new_index=new_index,
        source=options.source,
        rows_total=total,
    )
    os = settings.opensearch
    body = options.mapping or index_body(
        number_of_shards=os.number_of_shards, number_of_replicas=os.number_of_replicas
    )
    await session.store.update(created, live_offsets=live, index_body=body)
    try:
        await _ensure_new_index(session, created)
    except RequestError as exc:  # 400: the body itself is wrong; retrying will not help
        await session.store.transition(
            created, "backfill", "failed", error=mask_text(str(exc)), finished_at=datetime.now(UTC)
        )
        raise ReindexError(f"the cluster refused the new index's body: {exc.error}") from exc
    log.info(
        "reindex run begun",
        extra={"reindex_run": created.id, "old_index": created.old_index, "index": new_index},
    )
    return created


async def _ensure_new_index(session: Session, current: ReindexRun) -> None:
    """Create the run's index unless it exists (a run killed before creating it)."""
    if not await session.client.indices.exists(index=current.new_index):
        body = current.index_body
        if session.settings.reindex.load_settings:
            body = loading_body(body or {})
        await session.client.indices.create(index=current.new_index, body=body)


async def _backfill(session: Session, current: ReindexRun, options: RunOptions) -> None:
    settings, reporter = session.settings, session.reporter
    # a bulk to a missing index would create one with a dynamic mapping
    await _ensure_new_index(session, current)
    reporter.set_phase("backfill")
    max_rate = options.max_rate if options.max_rate is not None else settings.reindex.max_rate
    watch = _live_watch(session, await session.start_probe())
    last_check = time.monotonic()

    async def on_page(rows: int, next_size: int, reason: str) -> None:
        nonlocal last_check
        reporter.rows(current.rows_done, current.rows_total)
        session.reindex_metrics.page_size.set(next_size)
        if reason:
            session.reindex_metrics.throttled.labels(reason).inc()
        if time.monotonic() - last_check >= settings.reindex.probe_interval_s:
            last_check = time.monotonic()
            await session.store.update(current, docs_per_s=reporter.rate)
            await session.check_not_aborted(current)

    async with AsyncExitStack() as stack:
        backoff = Backoff.from_settings(settings.retry)
        policy = RetryPolicy.until_stopped(backoff, session.stop)
        sink = OpenSearchSink(settings, bulk_index=current.new_index)
        await sink.start()
        stack.push_async_callback(sink.stop)
        os, in_flight = settings.opensearch, settings.reindex.bulk_in_flight
        assembler = BulkAssembler(
            sink,
            session.metrics,
            max_in_flight=in_flight,
            # a page goes out as `in_flight` requests side by side, never merged into one
            max_docs=max(1, -(-settings.reindex.page_size // in_flight)),
            max_bytes=os.bulk_max_bytes,
        )
        await assembler.start()
        stack.push_async_callback(assembler.stop)
        tools = BackfillTools(
            settings=settings,
            store=session.store,
            client=session.client,
            writer=BulkWriter(
                assembler=assembler,
                circuit=None,
                policy=policy,
                metrics=session.metrics,
                retry=settings.retry,
            ),
            dead_letters=await _dead_letter_writer(session, stack),
            metrics=session.metrics,
            policy=policy,
            live_lag=lambda: watch.latest_lag,
            live_gate=watch.gate,
            on_page=on_page,
            redactor=Redactor(settings.dlq.redact_drop_fields, settings.dlq.redact_hash_fields),
        )
        backfill = Backfill(tools, current, max_rate=max_rate)
        if not current.tombstones_done:
            carried = await backfill.carry_tombstones()
            session.reindex_metrics.tombstones_carried.set(carried)
        if current.source == "postgres":
            await stack.enter_async_context(watch)
            await backfill.slow_start_with_live_traffic()
            reporter.restart_rate(current.rows_done)
            async with SourceScanner(settings.source_dsn, settings.source) as scanner:
                await backfill.copy_rows(scanner)
    reporter.rows(current.rows_done, current.rows_total)
    await session.check_not_aborted(current)
    await commit_group_offsets(
        settings, catchup_group(session.live_group, current.id), current.live_offsets or {}
    )
    if not await session.store.transition(current, "backfill", "catchup", docs_per_s=reporter.rate):
        raise ReindexError(f"reindex run {current.id} was aborted")


def _live_watch(session: Session, probe: LagProbe) -> LiveWatch:
    """The live group read every probe interval: the gate the backfill's pages and the
    catch-up's requests wait on, and the live-lag gauge."""
    r = session.settings.reindex
    return LiveWatch(
        probe,
        session.live_group,
        LiveGate(
            r.live_lag_max_s,
            stall_s=r.live_stall_s,
            hold_share=r.live_hold_share,
            on_hold=session.reindex_metrics.held,
        ),
        interval_s=r.probe_interval_s,
        on_lag=session.reindex_metrics.live_lag.set,
    )


async def _dead_letter_writer(session: Session, stack: AsyncExitStack) -> DeadLetterWriter:
    settings = session.settings
    producer = create_producer(settings, "dlq")
    await producer.start()
    stack.push_async_callback(producer.stop)
    return DeadLetterWriter(
        PostgresDeadLetterTable(
            session.pool, settings.dlq.table, max_value_bytes=settings.dlq.table_max_value_bytes
        ),
        KafkaDeadLetterTopic(
            producer,
            settings.dlq_topic,
            max_message_bytes=producer_kwargs(settings, purpose="dlq")["max_request_size"],
        ),
        optional={"postgres", "kafka"} - set(settings.dlq.required_stores),
    )


async def _catch_up_and_cut_over(
    session: Session, current: ReindexRun, options: RunOptions
) -> None:
    store, reporter = session.store, session.reporter
    reporter.set_phase(current.phase)
    watch = _live_watch(session, await session.start_probe())
    catch, on_lag = await replay_into(
        session,
        current,
        group_id=catchup_group(session.live_group, current.id),
        target_index=current.new_index,
        other_index=current.old_index,
        live_gate=watch.gate,
    )
    async with watch, catch:
        if current.phase == "catchup":
            await catch.until_near(on_lag)
            if not options.cutover:
                log.info("reindex caught up; cut over with `reindex cutover`")
                return
            await _ready_for_cutover(session, current)  # before the switch's offsets are read
            cutover = await group_offsets(session.settings, session.live_group)
            if not await store.transition(
                current, "catchup", "grace", cutover_offsets=cutover, cutover_at=datetime.now(UTC)
            ):
                raise ReindexError(f"reindex run {current.id} was aborted")
        else:  # resumed in grace: the switch may not have been made yet (idempotent)
            await _ready_for_cutover(session, current)
        await session.point_aliases(current.new_index, current.old_index)
        reporter.set_phase("grace")
        log.info(
            "aliases switched",
            extra={"reindex_run": current.id, "index": current.new_index, "alias": session.alias},
        )
        await grace(session, catch, options.grace_s, on_lag)
    await store.transition(current, "grace", "done", finished_at=datetime.now(UTC))
    reporter.set_phase("done")


async def _ready_for_cutover(session: Session, current: ReindexRun) -> None:
    """The new index's own settings back, refreshed, replicas assigned (`load_settings`)."""
    if session.settings.reindex.load_settings:
        await finish_loading(
            session.client,
            current.new_index,
            current.index_body or {},
            like=current.old_index,
            wait_s=session.settings.reindex.replicas_wait_s,
        )


async def replay_into(
    session: Session,
    current: ReindexRun,
    *,
    group_id: str,
    target_index: str,
    other_index: str | None,
    live_gate: LiveGate | None = None,
) -> tuple[CatchUp, Callable[[int, int], Awaitable[None]]]:
    """A consumer group replaying the topic into `target_index` (the catch-up, or a
    rollback's replay into the old index), and the lag callback that records its progress
    on the run's row and stops it once the run is aborted."""
    probe = await session.start_probe()

    async def on_lag(caught: int, live: int) -> None:
        session.reporter.lags(caught, live)
        await session.store.update(current, catchup_lag=caught)
        await session.check_not_aborted(current)

    catch = CatchUp(
        session.settings,
        session.metrics,
        probe,
        group_id=group_id,
        target_index=target_index,
        mappings_differ=await mappings_differ(session, other_index, target_index),
        live_gate=live_gate,
    )
    return catch, on_lag


async def grace(session: Session, catch: CatchUp, grace_s: float | None, on_lag: Any) -> None:
    """After a switch: keep replaying for the grace period and until past the watermarks."""
    ends = await session.probe.highwaters()
    seconds = grace_s if grace_s is not None else session.settings.reindex.grace_s
    await catch.for_seconds(seconds if seconds is not None else default_grace_s(session), on_lag)
    await catch.until_past(ends, on_lag)


__all__ = [
    "RunOptions",
    "catchup_group",
    "default_grace_s",
    "grace",
    "mappings_differ",
    "replay_into",
    "run",
]
