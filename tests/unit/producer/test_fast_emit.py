"""The producer's fast path (`*_event_dict`: the validator compiled from the models, then
orjson) and the models take the same decision on the same Python input, refuse with the same
`InvalidEventError` (message and `fields`), and yield the same values and the same bytes."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.event_strategies import events, listings, long_ints, same

from stream_indexer.errors import InvalidEventError
from stream_indexer.event_dicts import encode_event_dict, event_dict, without_nulls
from stream_indexer.models import Listing, ListingEvent
from stream_indexer.producer import ListingEventProducer, encode_value
from stream_indexer.producer.events import (
    EVENT_ID_BATCH,
    delete_event,
    delete_event_dict,
    index_event,
    index_event_dict,
    new_event_id,
    top_up_event_ids,
    validate_event,
    validate_event_dict,
)
from stream_indexer.settings import load_settings

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CHECKS = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)


def outcome(build: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", build()
    except InvalidEventError as exc:
        return "invalid", (str(exc), exc.fields)
    except Exception as exc:  # e.g. a thin listing that is no mapping: whatever the models do
        return "error", (type(exc), str(exc))


def assert_alike(model: tuple[str, Any], fast: tuple[str, Any]) -> None:
    """Same decision; same error text and fields, or same values and the same record bytes."""
    assert model[0] == fast[0], (model, fast)
    if model[0] != "ok":
        assert fast[1] == model[1]
        return
    event: ListingEvent = model[1]
    assert same(without_nulls(event_dict(event)), without_nulls(fast[1]))
    assert encode_event_dict(fast[1]) == encode_value(event)


def python_values(value: Any) -> st.SearchStrategy[Any]:
    """The generated JSON-shaped input, and the same with the Python objects a caller passes
    (UUID, aware datetimes at any offset)."""
    if not isinstance(value, dict):
        return st.just(value)
    offsets = st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
    moments = st.datetimes(
        min_value=datetime(1900, 1, 2), max_value=datetime(2100, 1, 1), timezones=offsets
    )
    swapped = dict(value)
    swaps: dict[str, st.SearchStrategy[Any]] = {
        "event_id": st.uuids(),
        "occurred_at": moments,
    }
    return st.fixed_dictionaries(
        {
            k: st.one_of(st.just(v), swaps[k]) if k in swaps else st.just(v)
            for k, v in swapped.items()
        }
    )


@CHECKS
@given(st.data())
def test_any_event_mapping_is_judged_and_encoded_alike(data: st.DataObject) -> None:
    event = data.draw(events().flatmap(python_values))
    assert_alike(
        outcome(lambda: validate_event(event)), outcome(lambda: validate_event_dict(event))
    )


@CHECKS
@given(st.data())
def test_index_events_are_judged_and_encoded_alike(data: st.DataObject) -> None:
    listing_id = data.draw(st.one_of(st.integers(1, 10**6), long_ints(1)[1]))
    listing = data.draw(listings(listing_id))
    version = data.draw(long_ints(0)[1])
    thin = data.draw(st.booleans())
    args = {"occurred_at": NOW, "event_id": uuid.uuid4(), "thin": thin}
    assert_alike(
        outcome(lambda: index_event(listing, version, **args)),
        outcome(lambda: index_event_dict(listing, version, **args)),
    )


@CHECKS
@given(long_ints(1)[1], long_ints(0)[1])
def test_delete_events_are_judged_and_encoded_alike(listing_id: Any, version: Any) -> None:
    args = {"occurred_at": NOW, "event_id": uuid.uuid4()}
    assert_alike(
        outcome(lambda: delete_event(listing_id, version, **args)),
        outcome(lambda: delete_event_dict(listing_id, version, **args)),
    )


def test_models_given_instead_of_mappings_take_the_same_path() -> None:
    listing = Listing(id=7, title="Oak desk", price=10, status="active", updated_at=NOW)
    event = index_event(listing, 3, occurred_at=NOW)
    assert validate_event_dict(event) == event_dict(event)
    fast = index_event_dict(listing, 3, occurred_at=NOW, event_id=event.event_id)
    assert encode_event_dict(fast) == encode_value(event)


class _IdsDisagree(Mapping[str, Any]):
    """A mapping whose `get("id")` differs from what iterating it yields."""

    def __init__(self, listing: dict[str, Any]) -> None:
        self._listing = listing

    def __getitem__(self, key: str) -> Any:
        return self._listing[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._listing)

    def __len__(self) -> int:
        return len(self._listing)

    def get(self, key: str, default: Any = None) -> Any:
        return 999 if key == "id" else self._listing.get(key, default)


def test_a_mapping_whose_get_disagrees_with_its_items_yields_what_the_models_yield() -> None:
    listing = {"id": 7, "title": "Oak desk", "price": 10, "status": "active", "updated_at": NOW}
    odd = _IdsDisagree(listing)
    fast = index_event_dict(odd, 3, occurred_at=NOW)
    assert fast["listing_id"] == fast["data"]["id"]
    model = index_event(odd, 3, occurred_at=NOW, event_id=fast["event_id"])
    assert encode_event_dict(fast) == encode_value(model)


def test_fields_left_out_stay_out_so_there_are_no_nulls_to_strip() -> None:
    listing = {"id": 7, "title": "Oak desk", "price": 10, "status": "active", "updated_at": NOW}
    sparse = index_event_dict({**listing, "city": None}, 3, occurred_at=NOW)
    assert set(sparse) == {"event_id", "action", "listing_id", "version", "occurred_at", "data"}
    assert list(sparse["data"]) == ["id", "title", "price", "status", "updated_at", "city"]
    assert "data" not in delete_event_dict(7, 4, occurred_at=NOW)
    # the full form (defaults filled in) and the sparse one are written alike
    full = event_dict(index_event(listing, 3, occurred_at=NOW, event_id=sparse["event_id"]))
    assert encode_event_dict(sparse) == encode_event_dict(full)
    assert b"null" not in encode_event_dict(sparse)


def test_the_refusal_names_the_fields_as_the_models_do() -> None:
    bad = {"id": 7, "title": "", "price": -1, "status": "active", "updated_at": NOW}
    with pytest.raises(InvalidEventError) as refused:
        index_event_dict(bad, 1)
    assert refused.value.fields == ["data.title", "data.price"]
    assert "data.title: String should have at least 1 character" in str(refused.value)
    with pytest.raises(InvalidEventError) as refused:
        delete_event_dict(0, -1)
    assert refused.value.fields == ["listing_id", "version"]


async def test_emit_nowait_refuses_a_bad_event_before_anything_is_queued() -> None:
    class NoKafka:
        async def start(self) -> None:
            pass

        async def stop(self) -> None:
            pass

    class Producer(ListingEventProducer):
        def _new_kafka_producer(self) -> Any:
            return NoKafka()

    async with Producer(load_settings({"producer.enable_idempotence": False})) as producer:
        bad = {"id": 7, "title": "", "price": 1, "status": "active", "updated_at": NOW}
        with pytest.raises(InvalidEventError) as refused:
            producer.emit_index_nowait(bad, 1)
        assert refused.value.fields == ["data.title"]
        with pytest.raises(InvalidEventError) as refused:
            producer.emit_nowait({"action": "index"})
        assert "event_id" in refused.value.fields
        assert producer.pending == 0


def test_event_ids_are_random_version_4_uuids_never_repeated() -> None:
    ids = [new_event_id() for _ in range(3 * EVENT_ID_BATCH)]
    assert len(set(ids)) == len(ids)
    assert {(u.version, u.variant) for u in ids} == {(4, uuid.RFC_4122)}
    other: list[uuid.UUID] = []
    thread = threading.Thread(target=lambda: other.extend(new_event_id() for _ in range(64)))
    thread.start()
    thread.join()
    assert not set(other) & set(ids)  # each thread draws from its own pool


def test_the_sender_tops_the_pool_up_so_emit_calls_never_read_random_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []
    real_urandom = os.urandom
    monkeypatch.setattr(os, "urandom", lambda n: reads.append(n) or real_urandom(n))
    for _ in range(EVENT_ID_BATCH):  # use up whatever the pool held, and more
        new_event_id()
    top_up_event_ids()  # the sender, between batches
    reads.clear()
    ids = [new_event_id() for _ in range(EVENT_ID_BATCH // 2)]
    assert reads == []  # made ahead of time
    top_up_event_ids()
    assert len(reads) == 1  # at least half used: refilled
    ids += [new_event_id() for _ in range(EVENT_ID_BATCH // 2)]
    assert len(reads) == 1  # ... to full
    assert len(set(ids)) == len(ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_repeat_its_parents_event_ids() -> None:
    new_event_id()  # the pool is filled: a child would inherit it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next id and leave at once
        os.write(write, new_event_id().bytes)
        os._exit(0)
    os.close(write)
    child = uuid.UUID(bytes=os.read(read, 16))
    os.close(read)
    os.waitpid(pid, 0)
    assert child != new_event_id()
