"""Core: the one lifecycle every long-lived component follows (start, stop, `async with`).

`start()` runs the component's `_start()` until it succeeds once, `stop()` runs its
`_stop()` once, and both are idempotent: a second `start()` of a running component, or any
call after `stop()`, does nothing. A `start()` that raised may be called again (start-up
waits for an unreachable dependency by retrying it), and `stop()` after such a failure
still runs `_stop()`, which must therefore cope with whatever was not started. Each
component keeps its own stop deadline inside `_stop()` (aiokafka's consumer and arq's
worker shutdown bound their stop the same way).
"""

from __future__ import annotations

import enum
from typing import Self


class Phase(enum.Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"


class Lifecycle:
    """Base for components with resources to acquire and release."""

    _phase: Phase = Phase.NEW

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def running(self) -> bool:
        return self._phase is Phase.RUNNING

    async def start(self) -> None:
        """Acquire the component's resources; a no-op once running or after stop."""
        if self._phase is not Phase.NEW:
            return
        self._phase = Phase.STARTING
        try:
            await self._start()
        except BaseException:
            if self._phase is Phase.STARTING:
                self._phase = Phase.NEW  # may be tried again
            raise
        if self._phase is Phase.STARTING:  # not stopped meanwhile
            self._phase = Phase.RUNNING

    async def stop(self) -> None:
        """Release what was acquired, within the component's own deadline; once only."""
        if self._phase is Phase.STOPPED:
            return
        self._phase = Phase.STOPPED
        await self._stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _start(self) -> None:
        """Override: acquire resources."""

    async def _stop(self) -> None:
        """Override: release resources; must tolerate a partial or missing start."""


__all__ = ["Lifecycle", "Phase"]
