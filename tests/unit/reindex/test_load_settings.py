"""The new index is filled with the loading settings and takes its body's own ones after."""

from __future__ import annotations

from typing import Any

import pytest

from stream_indexer.opensearch.mapping import index_body
from stream_indexer.reindex.load_settings import LOADING, final_settings, loading_body


def test_loading_body_replaces_refresh_and_replicas_and_keeps_the_rest() -> None:
    body = index_body(number_of_shards=3, number_of_replicas=2)
    body["settings"]["index"]["refresh_interval"] = "30s"
    loading = loading_body(body)
    assert loading["settings"] == {"index": {"number_of_shards": 3, **LOADING}}
    assert loading["mappings"] == body["mappings"]
    assert body["settings"]["index"]["number_of_replicas"] == 2  # the run's body is untouched
    assert final_settings(body) == {"refresh_interval": "30s", "number_of_replicas": 2}


@pytest.mark.parametrize(
    "settings",
    [
        {"refresh_interval": "5s", "number_of_replicas": 1},
        {"index.refresh_interval": "5s", "index.number_of_replicas": 1},
        {"index": {"refresh_interval": "5s"}, "number_of_replicas": 1},
    ],
)
def test_flat_and_nested_settings_are_read_alike(settings: dict[str, Any]) -> None:
    body = {"settings": settings, "mappings": {"properties": {}}}
    assert final_settings(body) == {"refresh_interval": "5s", "number_of_replicas": 1}
    assert loading_body(body)["settings"] == {"index": LOADING}  # one form: no duplicate key


def test_a_body_without_them_returns_to_the_cluster_defaults() -> None:
    defaults = {"refresh_interval": None, "number_of_replicas": None}
    assert final_settings({"mappings": {}}) == defaults
    assert loading_body({})["settings"] == {"index": LOADING}
