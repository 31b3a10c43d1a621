"""Reindex, rollback: both aliases back on the old index, without losing what pods wrote since.

After a cutover, pods write the new index only. A rollback therefore first replays the topic
into the old index, in its own group (`<group>.rollback.<run id>`) starting from the live
group's offsets recorded at the cutover (every record a pod wrote to the new index is at or
past them), until it is near the live group; then it switches both aliases back in one
request and keeps replaying for the same grace as a cutover. Versions make the replay
harmless: the old index keeps whatever is newer. The new index is kept (`reindex cleanup`
deletes it). A rollback killed midway is finished by running it again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from stream_indexer.errors import ReindexError
from stream_indexer.reindex.offsets import commit_group_offsets
from stream_indexer.reindex.operation import grace, replay_into
from stream_indexer.reindex.session import Session
from stream_indexer.reindex.state import ReindexRun, RunLock

log = logging.getLogger(__name__)


def rollback_group(live_group: str, run_id: int) -> str:
    return f"{live_group}.rollback.{run_id}"


async def rollback(session: Session, grace_s: float | None) -> ReindexRun:
    """Roll back the alias's latest finished run (or finish a rollback begun before)."""
    settings, store = session.settings, session.store
    async with RunLock(settings.postgres.dsn.get_secret_value(), session.alias):
        current = await store.open_run(session.alias)
        if current is not None and current.phase != "rolling_back":
            raise ReindexError(
                f"reindex run {current.id} is in phase {current.phase}: abort it "
                "(`reindex abort`) or finish it (`reindex run`) before rolling back"
            )
        if current is None:
            current = await store.latest(session.alias)
            if current is None or current.phase != "done":
                what = (
                    "no reindex run" if current is None else f"run {current.id} is {current.phase}"
                )
                raise ReindexError(f"nothing to roll back: {what}")
            if current.old_index is None or not await session.client.indices.exists(
                index=current.old_index
            ):
                raise ReindexError(
                    f"run {current.id}: its old index is gone, nothing to roll back to"
                )
            group = rollback_group(session.live_group, current.id)
            await commit_group_offsets(settings, group, current.cutover_offsets or {})
            if not await store.transition(current, "done", "rolling_back"):
                raise ReindexError(f"run {current.id} changed meanwhile; try again")
        assert current.old_index is not None
        reporter = session.reporter
        reporter.set_phase("rolling_back")
        catch, on_lag = await replay_into(
            session,
            current,
            group_id=rollback_group(session.live_group, current.id),
            target_index=current.old_index,
            other_index=current.new_index,
        )
        try:
            async with catch:
                await catch.until_near(on_lag)
                await session.point_aliases(current.old_index, current.new_index)
                log.info(
                    "aliases switched back",
                    extra={"reindex_run": current.id, "index": current.old_index},
                )
                await grace(session, catch, grace_s, on_lag)
        finally:
            reporter.close()
        await store.transition(
            current, "rolling_back", "rolled_back", finished_at=datetime.now(UTC)
        )
        reporter.set_phase("rolled_back")
        return current


__all__ = ["rollback", "rollback_group"]
