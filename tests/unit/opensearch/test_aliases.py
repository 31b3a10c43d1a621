"""The alias switch body: both aliases leave the old index and reach the new one at once."""

from __future__ import annotations

from stream_indexer.opensearch.aliases import switch_actions, version_number, versioned_name
from stream_indexer.opensearch.mapping import alias_filter


def test_a_switch_moves_both_aliases_in_one_body_with_the_tombstone_filter() -> None:
    body = switch_actions("listings", "listings_write", "listings_v1", "listings_v2")
    assert body == {
        "actions": [
            {"remove": {"index": "listings_v1", "alias": "listings"}},
            {"remove": {"index": "listings_v1", "alias": "listings_write"}},
            {"add": {"index": "listings_v2", "alias": "listings", "filter": alias_filter()}},
            {"add": {"index": "listings_v2", "alias": "listings_write", "is_write_index": True}},
        ]
    }


def test_a_first_switch_only_adds() -> None:
    actions = switch_actions("l", "l_write", None, "l_v1")["actions"]
    assert [next(iter(action)) for action in actions] == ["add", "add"]
    assert switch_actions("l", "l_write", "l_v1", "l_v1") == switch_actions(
        "l", "l_write", None, "l_v1"
    )


def test_version_numbers_belong_to_their_base_only() -> None:
    assert versioned_name("listings", 12) == "listings_v12"
    assert version_number("listings", "listings_v12") == 12
    assert version_number("listings", "listings_v") is None
    assert version_number("listings", "listings_x_v2") is None
    assert version_number("list", "listings_v2") is None
