"""Which dead-letter stores must succeed before an offset may move."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest

from stream_indexer.dlq.writer import DeadLetterWriter
from stream_indexer.errors import DeadLetterStoreError


class _Store:
    """Stand-in for a store (pure logic under test: the writer's policy)."""

    def __init__(self, name: str, *, fails: bool) -> None:
        self.store_name = name
        self.fails = fails
        self.calls = 0

    async def _do(self, letters: Sequence[Any]) -> None:
        self.calls += 1
        if self.fails:
            raise DeadLetterStoreError(f"DLQ store {self.store_name} failed")

    write = _do
    publish = _do


def _writer(table: _Store, topic: _Store, **kwargs: Any) -> DeadLetterWriter:
    return DeadLetterWriter(cast(Any, table), cast(Any, topic), **kwargs)


async def test_both_required_by_default_and_the_error_names_the_failed_store() -> None:
    table, topic = _Store("postgres", fails=True), _Store("kafka", fails=False)
    with pytest.raises(DeadLetterStoreError) as caught:
        await _writer(table, topic).write([object()])  # type: ignore[list-item]
    assert caught.value.stores == ("postgres",)
    assert topic.calls == 1, "the other store is still written"


async def test_an_optional_store_failing_does_not_hold_the_offset() -> None:
    table, topic = _Store("postgres", fails=False), _Store("kafka", fails=True)
    result = await _writer(table, topic, optional={"kafka"}).write([object()])  # type: ignore[list-item]
    assert result.written == ("postgres",)
    assert result.failed_optional == ("kafka",)


def test_at_least_one_store_must_be_required() -> None:
    with pytest.raises(ValueError, match="required"):
        _writer(
            _Store("postgres", fails=False),
            _Store("kafka", fails=False),
            optional={"postgres", "kafka"},
        )
