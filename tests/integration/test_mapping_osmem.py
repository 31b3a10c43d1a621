"""The index definition against osmem-server: strict mapping, flat attributes, tombstones."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConflictError, RequestError

from stream_indexer.models import Listing
from stream_indexer.opensearch.mapping import (
    alias_actions,
    index_body,
    tombstone_document,
)

pytestmark = pytest.mark.integration

ALIAS = "listings"
PHYSICAL = "listings_v1"
NOW = "2024-06-01T12:00:00Z"


@pytest.fixture
def client(osmem_url: str) -> Iterator[OpenSearch]:
    os_client = OpenSearch(hosts=[osmem_url])
    os_client.indices.create(index=PHYSICAL, body=index_body())
    os_client.indices.update_aliases(body=alias_actions(ALIAS, PHYSICAL))
    yield os_client
    os_client.close()


def full_listing(listing_id: int = 7, **changes: Any) -> dict[str, Any]:
    listing = Listing.model_validate(
        {
            "id": listing_id,
            "title": "Vintage oak dining table",
            "price": 450.5,
            "status": "active",
            "updated_at": "2024-06-01T11:59:00Z",
            "user_id": 99,
            "category_id": 12,
            "description": "Solid oak, seats six.",
            "condition": "used",
            "currency": "EUR",
            "location": {"lat": 52.52, "lon": 13.405},
            "city": "Berlin",
            "country": "DE",
            "attributes": {"material": "oak", "seats": 6, "extendable": False, "note": None},
            "images": ["https://img.example.com/7/1.jpg"],
            "views_count": 321,
            "created_at": "2024-05-20T08:00:00+02:00",
            **changes,
        }
    )
    return listing.model_dump(mode="json", exclude_none=True)


def write(client: OpenSearch, doc: dict[str, Any], version: int) -> dict[str, Any]:
    body = {**doc, "version": version, "indexed_at": NOW, "event_id": f"ev-{version}"}
    result: dict[str, Any] = client.index(
        index=ALIAS,
        id=str(doc["id"]),
        body=body,
        params={"version": version, "version_type": "external_gte"},
    )
    return result


def search_ids(client: OpenSearch, index: str, query: dict[str, Any] | None = None) -> list[str]:
    body = {"query": query or {"match_all": {}}}
    hits = client.search(index=index, body=body)["hits"]["hits"]
    return sorted(hit["_id"] for hit in hits)


def test_every_listing_field_is_mapped(client: OpenSearch) -> None:
    mapped = client.indices.get_mapping(index=PHYSICAL)[PHYSICAL]["mappings"]
    assert mapped["dynamic"] == "strict"
    assert set(mapped["properties"]) == set(Listing.model_fields) | {
        "version",
        "indexed_at",
        "event_id",
        "deleted",
    }


def test_full_listing_indexes_and_is_searchable(client: OpenSearch) -> None:
    result = write(client, full_listing(), version=5)
    assert result["result"] == "created"
    assert result["_version"] == 5

    assert search_ids(client, ALIAS, {"match": {"title": "oak"}}) == ["7"]
    assert search_ids(client, ALIAS, {"term": {"title.raw": "Vintage oak dining table"}}) == ["7"]
    assert search_ids(client, ALIAS, {"term": {"attributes.material": "oak"}}) == ["7"]
    assert search_ids(client, ALIAS, {"range": {"price": {"gte": 450, "lte": 451}}}) == ["7"]
    source = client.get(index=PHYSICAL, id="7")["_source"]
    assert source["location"] == {"lat": 52.52, "lon": 13.405}
    assert source["version"] == 5


def test_new_attribute_keys_do_not_grow_the_mapping(client: OpenSearch) -> None:
    before = client.indices.get_mapping(index=PHYSICAL)
    for n in range(20):
        write(client, full_listing(100 + n, attributes={f"key_{n}": n, "shared": "x"}), 1)
    assert client.indices.get_mapping(index=PHYSICAL) == before
    assert search_ids(client, ALIAS, {"term": {"attributes.key_3": "3"}}) == ["103"]


def test_unknown_field_is_rejected_by_strict_mapping(client: OpenSearch) -> None:
    with pytest.raises(RequestError) as info:
        write(client, {**full_listing(), "surprise": "field"}, version=1)
    assert info.value.error == "strict_dynamic_mapping_exception"
    assert search_ids(client, PHYSICAL) == []


def test_tombstone_is_hidden_from_the_alias_but_keeps_its_version(client: OpenSearch) -> None:
    write(client, full_listing(), version=5)
    write(client, full_listing(8), version=1)
    stamp = datetime(2024, 6, 1, 12, 1, tzinfo=UTC).isoformat()
    tombstone = tombstone_document(7, 6, "ev-delete", stamp)
    client.index(
        index=ALIAS,
        id="7",
        body=tombstone,
        params={"version": 6, "version_type": "external_gte"},
    )

    assert search_ids(client, ALIAS) == ["8"]
    assert search_ids(client, PHYSICAL) == ["7", "8"]
    assert client.get(index=PHYSICAL, id="7")["_version"] == 6

    # A late, older index event must not resurrect the listing.
    with pytest.raises(ConflictError):
        write(client, full_listing(), version=5)
    assert search_ids(client, ALIAS) == ["8"]

    # A genuine re-create with a newer version is visible again.
    assert write(client, full_listing(title="Back on sale"), version=7)["_version"] == 7
    assert search_ids(client, ALIAS) == ["7", "8"]
    assert client.get(index=ALIAS, id="7")["_source"]["title"] == "Back on sale"


def test_alias_swap_moves_searches_atomically(client: OpenSearch) -> None:
    write(client, full_listing(), version=1)
    client.indices.create(index="listings_v2", body=index_body())
    client.indices.update_aliases(body=alias_actions(ALIAS, "listings_v2", remove_from=(PHYSICAL,)))
    assert search_ids(client, ALIAS) == []
    assert list(client.indices.get_alias(name=ALIAS)) == ["listings_v2"]
