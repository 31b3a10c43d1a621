"""Reindex, administration: `reindex abort`, `reindex cleanup --keep N` and `reindex status`.

Abort marks the open run aborted (only before its cutover), waits for the process running it
to notice and release the run lock, then deletes the index it was building. Cleanup deletes
versioned indices of the alias that no alias points to and no open run uses, keeping the
newest N. Status reads the run row: phase, rows, rate, ETA, catch-up lag.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from stream_indexer.errors import ReindexBusyError, ReindexError
from stream_indexer.opensearch import aliases
from stream_indexer.reindex.progress import eta_seconds
from stream_indexer.reindex.session import Session
from stream_indexer.reindex.state import ReindexRun, RunLock

#: how long `abort` waits for the running process to stop
ABORT_WAIT_S = 120.0
ABORT_POLL_S = 0.5


async def abort(session: Session, wait_s: float = ABORT_WAIT_S) -> ReindexRun:
    """Stop the open run before its cutover and delete its new index."""
    store = session.store
    current = await store.open_run(session.alias)
    if current is None:
        raise ReindexError(f"no reindex of {session.alias!r} is open")
    if current.phase not in ("backfill", "catchup"):
        raise ReindexError(
            f"reindex run {current.id} is past its cutover (phase {current.phase}); "
            "let it finish and use `reindex rollback`"
        )
    if not await store.transition(current, ("backfill", "catchup"), "aborted"):
        raise ReindexError(f"reindex run {current.id} moved on meanwhile; check `reindex status`")
    lock = RunLock(session.settings.postgres.dsn.get_secret_value(), session.alias)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            await lock.acquire()
            break
        except ReindexBusyError:
            if time.monotonic() > deadline:
                raise ReindexError(
                    f"run {current.id} is marked aborted but the process running it did not "
                    f"stop within {wait_s:.0f} s; its index {current.new_index} is kept"
                ) from None
            await asyncio.sleep(ABORT_POLL_S)
    try:
        await session.client.indices.delete(index=current.new_index, ignore=404)
        await store.update(current, finished_at=datetime.now(UTC))
    finally:
        await lock.release()
    return current


async def cleanup(session: Session, keep: int) -> list[str]:
    """Delete the alias's old versioned indices; return their names."""
    if keep < 0:
        raise ReindexError("--keep must be 0 or more")
    client = session.client
    indices = await aliases.versioned_indices(client, session.alias)
    protected = set(await aliases.alias_targets(client, session.alias))
    protected |= set(await aliases.alias_targets(client, session.write_alias))
    current = await session.store.open_run(session.alias)
    if current is not None:
        protected |= {current.new_index} | ({current.old_index} if current.old_index else set())
    newest = set(indices[-keep:]) if keep else set()
    doomed = [name for name in indices if name not in protected and name not in newest]
    for name in doomed:
        await client.indices.delete(index=name, ignore=404)
    return doomed


async def status(session: Session) -> dict[str, Any]:
    """The latest run of the alias as plain data (`reindex status --json`)."""
    latest = await session.store.latest(session.alias)
    if latest is None:
        return {"alias": session.alias, "run": None}
    data = latest.to_json()
    rate = latest.docs_per_s or 0.0
    eta = (
        eta_seconds(latest.rows_done, latest.rows_total, rate)
        if latest.phase == "backfill"
        else None
    )
    data["eta_s"] = None if eta is None else round(eta)
    return {"alias": session.alias, "run": data}


def status_text(report: dict[str, Any]) -> str:
    run = report["run"]
    if run is None:
        return f"{report['alias']}: no reindex run"
    eta = run["eta_s"] if run["eta_s"] is not None else "-"
    lines = [
        f"{report['alias']}: run {run['id']} {run['phase']} "
        f"({run['old_index'] or '-'} -> {run['new_index']}, source {run['source']})",
        f"  rows        {run['rows_done']}/{run['rows_total']}"
        f"  {run['docs_per_s'] or 0:,.0f} docs/s  ETA {eta} s",
        f"  tombstones  {run['tombstones_carried']}  dead letters {run['dead_lettered']}"
        f"  resumed {run['resumes']}x",
        f"  catch-up lag {run['catchup_lag'] if run['catchup_lag'] is not None else '-'}",
    ]
    if run.get("error"):
        lines.append(f"  error       {run['error']}")
    return "\n".join(lines)


__all__ = ["abort", "cleanup", "status", "status_text"]
