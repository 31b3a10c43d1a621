"""Reindex, the new index's settings: filled without refreshes or replicas, then made whole.

OpenSearch's advice for an index loaded in bulk: nobody searches it before the cutover, so
refreshing it every second only makes segments to merge (`refresh_interval: -1`), and a
replica would index every document a second time while the primary is still being filled
(`number_of_replicas: 0`); both compete with the live pods for the same nodes. So the run's
index is created with those two, and just before the aliases move it takes the values its
own body asked for (or the cluster's defaults), is refreshed once, and the run waits until
its shards are as healthy as the old index's (replicas assigned), so the first search after
the cutover sees every document on an index as safe as the one it replaces.
(`REINDEX__LOAD_SETTINGS=false` keeps the body's settings throughout.)
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from opensearchpy import AsyncOpenSearch

from stream_indexer.errors import ReindexError

log = logging.getLogger(__name__)

#: while the backfill and the catch-up fill the index
LOADING = {"refresh_interval": "-1", "number_of_replicas": 0}
#: cluster health, worst first
_HEALTH = ("red", "yellow", "green")


def _index_settings(body: dict[str, Any]) -> dict[str, Any]:
    """The body's index settings, flat (`settings.index.x` and `settings.x` are the same)."""
    settings = dict(body.get("settings") or {})
    nested = settings.pop("index", None) or {}
    flat = {name.removeprefix("index."): value for name, value in settings.items()}
    return {**flat, **nested}


def loading_body(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with the loading settings in place of its own refresh interval and replicas."""
    out = copy.deepcopy(body)
    out["settings"] = {"index": {**_index_settings(body), **LOADING}}
    return out


def final_settings(body: dict[str, Any]) -> dict[str, Any]:
    """What the index takes before the cutover: the body's values; None resets to default."""
    own = _index_settings(body)
    return {name: own.get(name) for name in LOADING}


async def finish_loading(
    client: AsyncOpenSearch, index: str, body: dict[str, Any], *, like: str | None, wait_s: float
) -> None:
    """Give `index` its own settings, refresh it, and wait until its health is `like`'s.

    Idempotent (a resumed run repeats it). Raises `ReindexError` when the shards are still
    not assigned after `wait_s`: the run stays before its cutover, and a rerun waits again.
    """
    await client.indices.put_settings(index=index, body={"index": final_settings(body)})
    await client.indices.refresh(index=index)
    wanted = "yellow"
    if like is not None:
        old = await client.cluster.health(index=like)
        wanted = max(str(old.get("status", "yellow")), "yellow", key=_HEALTH.index)
    health = await client.cluster.health(
        index=index,
        wait_for_status=wanted,
        # the server waits up to `timeout`; the HTTP request must outlast it
        params={"timeout": f"{max(1, int(wait_s))}s", "request_timeout": wait_s + 30},
    )
    if health.get("timed_out"):
        raise ReindexError(
            f"index {index!r} is {health.get('status')}, not {wanted} like the index it "
            f"replaces, after REINDEX__REPLICAS_WAIT_S ({wait_s:g} s); the aliases did not "
            "move: check the cluster's shard allocation, then rerun `reindex cutover`"
        )
    log.info("reindex index ready for the cutover", extra={"index": index, "health": wanted})


__all__ = ["LOADING", "final_settings", "finish_loading", "loading_body"]
