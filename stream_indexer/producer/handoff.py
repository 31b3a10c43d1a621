"""Producer side, the hand-off: a bounded, thread-safe queue between emit callers and the sender.

`ListingEventProducer.emit_nowait` appends here from the caller's thread and returns; one task
on the producer's event loop takes whatever is queued and hands it to aiokafka. The bound
counts events that were accepted and are not settled yet (queued, or sent and waiting for the
broker), so memory stays bounded while Kafka is slow or away.

A caller on the loop's own thread never waits for room: nothing could free a slot while it
waits. A caller on another thread may wait, up to a deadline read from the monotonic clock
inside the call (a `threading.Condition`), never from an asyncio timer a busy loop can delay.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Admission(enum.Enum):
    """What `HandOff.put` did with an item."""

    QUEUED = "queued"  # the sender is awake and will find it
    WAKE = "wake"  # queued, and the sender is idle: the caller must wake it
    FULL = "full"  # not queued: the bound was reached (and stayed so until the deadline)
    CLOSED = "closed"  # not queued: the producer is stopping


class HandOff(Generic[T]):
    """Items in admission order; `accepted` also keeps every unsettled one for the watchdog."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._queue: deque[T] = deque()
        #: every admitted item in admission order, until the owner pops it (after settling)
        self.accepted: deque[T] = deque()
        self._unsettled = 0
        self._room_waiters = 0
        self._sender_idle = False
        self._closed = False

    @property
    def unsettled(self) -> int:
        """Items admitted (queued, sent or parked elsewhere) whose outcome is not known yet."""
        return self._unsettled

    @property
    def queued(self) -> int:
        """Items admitted and not yet taken by the sender."""
        return len(self._queue)

    def put(self, item: T, *, deadline: float | None = None) -> Admission:
        """Queue `item` unless full; wait for room until `deadline` (`time.monotonic()`)."""
        with self._lock:
            if self._closed:
                return Admission.CLOSED
            if self._unsettled >= self.capacity and (
                deadline is None or not self._wait_for_room(deadline)
            ):
                return Admission.CLOSED if self._closed else Admission.FULL
            self._unsettled += 1
            self._queue.append(item)
            self.accepted.append(item)
            if self._sender_idle:
                self._sender_idle = False
                return Admission.WAKE
            return Admission.QUEUED

    def _wait_for_room(self, deadline: float) -> bool:
        self._room_waiters += 1
        try:
            while self._unsettled >= self.capacity and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._room.wait(remaining)
            return not self._closed
        finally:
            self._room_waiters -= 1

    def admit_overflow(self) -> bool:
        """Count one item that bypasses the queue (parked in the outbox), up to 2 x capacity."""
        with self._lock:
            if self._closed or self._unsettled >= 2 * self.capacity:
                return False
            self._unsettled += 1
            return True

    def take_all(self) -> list[T]:
        """Everything queued, oldest first; when nothing is, the sender is marked idle."""
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
            if not items:
                self._sender_idle = True
            return items

    def settle(self) -> int:
        """One admitted item has its outcome; returns how many are still unsettled."""
        with self._lock:
            self._unsettled -= 1
            if self._room_waiters:
                self._room.notify()
            return self._unsettled

    def close(self) -> None:
        """Admit nothing more; callers waiting for room return `CLOSED`."""
        with self._lock:
            self._closed = True
            self._room.notify_all()


__all__ = ["Admission", "HandOff"]
