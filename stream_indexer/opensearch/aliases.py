"""Sink aliases: which physical index searches read and pods write, and moving both at once.

Searches read the search alias (`OPENSEARCH__INDEX`, filtered: it hides tombstones); pods
write through the write alias (`OPENSEARCH__WRITE_ALIAS`). Neither names a physical index,
so a reindex can build `<index>_v<N+1>` beside the live one and then move both aliases in
one atomic `_aliases` request: running pods resolve the write alias on every bulk request
and follow the switch with no restart, and readers never see an empty or half-built index.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from opensearchpy import AsyncOpenSearch

from stream_indexer.opensearch.mapping import alias_filter

#: `<base>_v<N>`: the physical indices of one alias, numbered in creation order
_VERSION_SUFFIX = "_v"


def switch_actions(
    search_alias: str, write_alias: str, from_index: str | None, to_index: str
) -> dict[str, Any]:
    """The one `_aliases` body that moves the search and the write alias to `to_index`.

    `from_index` None adds both aliases (a first start); otherwise both leave it in the same
    request, which OpenSearch applies atomically."""
    actions: list[dict[str, Any]] = []
    if from_index is not None and from_index != to_index:
        actions += [
            {"remove": {"index": from_index, "alias": search_alias}},
            {"remove": {"index": from_index, "alias": write_alias}},
        ]
    actions += [
        {"add": {"index": to_index, "alias": search_alias, "filter": alias_filter()}},
        {"add": {"index": to_index, "alias": write_alias, "is_write_index": True}},
    ]
    return {"actions": actions}


async def switch(
    client: AsyncOpenSearch,
    search_alias: str,
    write_alias: str,
    from_index: str | None,
    to_index: str,
) -> None:
    """Move both aliases to `to_index` in one atomic request."""
    await client.indices.update_aliases(
        body=switch_actions(search_alias, write_alias, from_index, to_index)
    )


async def alias_targets(client: AsyncOpenSearch, alias: str) -> list[str]:
    """The physical indices behind `alias`, sorted; empty when the alias does not exist."""
    # ignore=404: a missing alias is an answer here, not a failure worth a warning line
    found = await client.indices.get_alias(name=alias, ignore=404)
    return sorted(
        index
        for index, spec in found.items()
        if isinstance(spec, dict) and alias in spec.get("aliases", {})
    )


def versioned_name(base: str, number: int) -> str:
    return f"{base}{_VERSION_SUFFIX}{number}"


def version_number(base: str, index: str) -> int | None:
    """N for `<base>_v<N>`; None for any other name."""
    match = re.fullmatch(re.escape(base + _VERSION_SUFFIX) + r"(\d+)", index)
    return int(match.group(1)) if match else None


async def versioned_indices(client: AsyncOpenSearch, base: str) -> list[str]:
    """Every `<base>_v<N>` index, oldest (lowest N) first."""
    found = await client.indices.get(index=f"{base}{_VERSION_SUFFIX}*", ignore_unavailable=True)
    numbered = [(n, name) for name in found if (n := version_number(base, name)) is not None]
    return [name for _, name in sorted(numbered)]


async def create_next_index(client: AsyncOpenSearch, base: str, body: dict[str, Any]) -> str:
    """Create `<base>_v<N+1>` (N the highest existing) with `body`; return its name."""
    existing = await versioned_indices(client, base)
    numbers = [version_number(base, name) or 0 for name in existing]
    name = versioned_name(base, max(numbers, default=0) + 1)
    await client.indices.create(index=name, body=body)
    return name


async def tombstones(
    client: AsyncOpenSearch, index: str, page_size: int = 1_000
) -> AsyncIterator[list[tuple[int, int]]]:
    """Pages of `(listing_id, version)` of every tombstone in `index`, in id order.

    A reindex copies them into the new index: the source table has no row for a deleted
    listing, and without its tombstone a late, older event would bring it back."""
    search_after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {
            "size": page_size,
            "query": {"term": {"deleted": True}},
            "sort": [{"id": "asc"}],
            "_source": ["id", "version"],
        }
        if search_after is not None:
            body["search_after"] = search_after
        response = await client.search(index=index, body=body)
        hits = response["hits"]["hits"]
        if not hits:
            return
        yield [(int(hit["_source"]["id"]), int(hit["_source"]["version"])) for hit in hits]
        search_after = hits[-1]["sort"]


__all__ = [
    "alias_targets",
    "create_next_index",
    "switch",
    "switch_actions",
    "tombstones",
    "version_number",
    "versioned_indices",
    "versioned_name",
]
