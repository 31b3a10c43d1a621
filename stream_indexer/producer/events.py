"""Producer side, step 1: build and validate an event, then encode it for Kafka.

Every producer path (the library, `produce`, the outbox) goes through here, so an event is
checked against the same pydantic models the consumer uses before a single byte leaves the
process. A failure raises `InvalidEventError` naming each bad field, and nothing is sent.

`emit_*_nowait` runs on the caller's thread, so it takes the fast form (`*_event_dict`):
the validator compiled from the models (`event_dicts`, sparse form) yields a plain dict
holding only the fields given, and orjson writes the same bytes the model would. An event
it refuses is validated again by the models, which raise the `InvalidEventError` (so the
message and `fields` are the models' own).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import SchemaValidator

from stream_indexer.errors import InvalidEventError
from stream_indexer.event_dicts import (
    SPARSE_EVENT_DICT_VALIDATOR,
    SPARSE_SAME_ID_EVENT_DICT_VALIDATOR,
    EventDict,
    event_dict,
)
from stream_indexer.models import Listing, ListingEvent


def _problems(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(part) for part in err["loc"]) or "event"
        out.append((prefix + path, err["msg"]))
    return out


#: event ids the sender keeps made ahead for the loop thread's callers (one syscall for all)
EVENT_ID_BATCH = 256
#: ids a caller makes itself when its pool ran dry: few, so that the call that pays for them
#: stays short (about 1 µs each)
EVENT_ID_INLINE = 32


class _EventIds(threading.local):
    """Random (version 4) UUIDs, made ahead of time in a per-thread pool.

    `uuid.uuid4()` makes one `getrandom` syscall per id, and building a `UUID` runs a long
    Python constructor: together 7-10 µs of a cold emit call (an API request every
    millisecond or so) against 26 for the whole call. So ids are made in batches from one
    `os.urandom` read, and the sender tops the loop thread's pool up between batches
    (`top_up_event_ids`), off the callers' path; a caller refills the pool itself only when
    it ran dry (a burst, or a thread the sender does not run on). The pool is per thread (no
    two threads share ids) and emptied in a forked child (which would otherwise repeat its
    parent's ids).
    """

    def __init__(self) -> None:
        self.ready: list[uuid.UUID] = []

    def next(self) -> uuid.UUID:
        ready = self.ready
        if not ready:
            self.refill(EVENT_ID_INLINE)
        return ready.pop()

    def refill(self, count: int) -> None:
        raw = os.urandom(16 * count)
        self.ready.extend(
            # RFC 4122 variant and version 4, as `uuid.UUID(..., version=4)` sets them
            uuid.UUID(int=(value & ~(0xC000 << 48) | 0x8000 << 48) & ~(0xF000 << 64) | 4 << 76)
            for value in (int.from_bytes(raw[at : at + 16]) for at in range(0, len(raw), 16))
        )


_event_ids = _EventIds()


def _forget_event_ids() -> None:
    global _event_ids
    _event_ids = _EventIds()


os.register_at_fork(after_in_child=_forget_event_ids)


def new_event_id() -> uuid.UUID:
    """A random event id (same distribution as `uuid.uuid4()`, made ahead of time)."""
    return _event_ids.next()


def top_up_event_ids() -> None:
    """Refill this thread's id pool once it is half used (the sender calls it on the loop
    thread between batches, so emit calls there find their ids ready)."""
    ids = _event_ids
    missing = EVENT_ID_BATCH - len(ids.ready)
    if missing >= EVENT_ID_BATCH // 2:
        ids.refill(missing)


def now_utc() -> datetime:
    return datetime.now(UTC)


def version_from_datetime(moment: datetime) -> int:
    """A version that strictly increases with `updated_at`: microseconds since the epoch."""
    if moment.tzinfo is None:
        raise ValueError("version_from_datetime needs a timezone-aware datetime")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def validate_event(event: ListingEvent | Mapping[str, Any]) -> ListingEvent:
    """Return a validated `ListingEvent`; raise `InvalidEventError` naming the bad fields."""
    if isinstance(event, ListingEvent):
        return event
    try:
        return ListingEvent.model_validate(event)
    except ValidationError as exc:
        raise InvalidEventError(_problems(exc)) from None


def validate_json_line(line: bytes | str) -> ListingEvent:
    """Parse one JSON object and validate it (used by `produce` for JSON Lines input)."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError([("event", f"not valid JSON: {exc}")]) from None
    if not isinstance(raw, dict):
        raise InvalidEventError([("event", "must be a JSON object")])
    return validate_event(raw)


def index_event(
    listing: Listing | Mapping[str, Any],
    version: int,
    *,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
    thin: bool = False,
) -> ListingEvent:
    """An `index` event for `listing`; `thin=True` leaves out the snapshot (consumer loads it).

    For a thin event `listing` may be just `{"id": 42}`.
    """
    snapshot: Listing | Mapping[str, Any] | None
    listing_id: Any
    if isinstance(listing, Listing):
        snapshot, listing_id = listing, listing.id
    elif thin:
        snapshot, listing_id = None, listing.get("id")  # only the id matters for a thin event
    else:
        try:
            snapshot = Listing.model_validate(listing)
        except ValidationError as exc:
            raise InvalidEventError(_problems(exc, prefix="data.")) from None
        listing_id = snapshot.id
    return validate_event(
        {
            "event_id": event_id or new_event_id(),
            "action": "index",
            "listing_id": listing_id,
            "version": version,
            "occurred_at": occurred_at or now_utc(),
            "data": None if thin or snapshot is None else snapshot,
        }
    )


def delete_event(
    listing_id: int,
    version: int,
    *,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> ListingEvent:
    """A `delete` event: the listing's document is removed (tombstoned at `version`)."""
    return validate_event(
        {
            "event_id": event_id or new_event_id(),
            "action": "delete",
            "listing_id": listing_id,
            "version": version,
            "occurred_at": occurred_at or now_utc(),
        }
    )


def validate_event_dict(event: ListingEvent | Mapping[str, Any]) -> EventDict:
    """`validate_event`, yielding the event's dict form (see the module docstring)."""
    if isinstance(event, ListingEvent):
        return event_dict(event)
    try:
        return _validated(event)
    except ValidationError:
        return event_dict(validate_event(event))  # raises the models' InvalidEventError


def index_event_dict(
    listing: Listing | Mapping[str, Any],
    version: int,
    *,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
    thin: bool = False,
) -> EventDict:
    """`index_event`, yielding the event's dict form (see the module docstring).

    For a plain dict, `listing_id` is `listing["id"]`, the very value `data.id` is validated
    from, so the validator that skips comparing the two is used (see
    `SPARSE_SAME_ID_EVENT_DICT_VALIDATOR`); another mapping could answer `get` and item
    access differently, so it gets the full check.
    """
    if isinstance(listing, Mapping):
        same_id = type(listing) is dict
        try:
            return _validated(
                {
                    "event_id": event_id or new_event_id(),
                    "action": "index",
                    "listing_id": listing.get("id"),
                    "version": version,
                    "occurred_at": occurred_at or now_utc(),
                    "data": None if thin else listing,
                },
                SPARSE_SAME_ID_EVENT_DICT_VALIDATOR if same_id else SPARSE_EVENT_DICT_VALIDATOR,
            )
        except ValidationError:
            pass  # the models raise the error, in their words
    event = index_event(listing, version, occurred_at=occurred_at, event_id=event_id, thin=thin)
    return event_dict(event)


def delete_event_dict(
    listing_id: int,
    version: int,
    *,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> EventDict:
    """`delete_event`, yielding the event's dict form (see the module docstring)."""
    try:
        return _validated(
            {
                "event_id": event_id or new_event_id(),
                "action": "delete",
                "listing_id": listing_id,
                "version": version,
                "occurred_at": occurred_at or now_utc(),
            }
        )
    except ValidationError:
        pass  # the models raise the error, in their words
    return event_dict(delete_event(listing_id, version, occurred_at=occurred_at, event_id=event_id))


def _validated(
    candidate: object, validator: SchemaValidator = SPARSE_EVENT_DICT_VALIDATOR
) -> EventDict:
    """The sparse dict form: fields left out stay out (nothing to strip before encoding)."""
    out: EventDict = validator.validate_python(candidate)
    return out


def encode_key(listing_id: int) -> bytes:
    """The record key: the listing id as decimal UTF-8 (so one listing maps to one partition)."""
    return b"%d" % listing_id


def encode_value(event: ListingEvent) -> bytes:
    """The record value: compact UTF-8 JSON with known fields only and absent fields left out.

    Serialized by pydantic-core straight to JSON (`event_dicts.encode_event_dict` writes the
    same bytes from the dict form, which is what `emit_*_nowait` uses).
    """
    return event.model_dump_json(exclude_none=True).encode()


__all__ = [
    "EventDict",
    "InvalidEventError",
    "delete_event",
    "delete_event_dict",
    "encode_key",
    "encode_value",
    "index_event",
    "index_event_dict",
    "new_event_id",
    "top_up_event_ids",
    "validate_event",
    "validate_event_dict",
    "validate_json_line",
    "version_from_datetime",
]
