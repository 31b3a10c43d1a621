"""Service health: the liveness and readiness decisions behind `/healthz` and `/readyz`.

Liveness answers "would a restart help?": no when the fetch loop died, never fetches, or
the partitions are behind with no commit for `METRICS__STALL_TIMEOUT_S` while nothing
outside the process explains it. An outage (the sink circuit open, a DLQ store holding
letters) is not a reason to restart: it is reported by readiness instead, with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from stream_indexer.opensearch.circuit import CircuitState

Verdict = tuple[bool, str]


class Health:
    """The clocks the decisions read, and the decisions; the service feeds the clocks."""

    def __init__(
        self,
        *,
        stall_timeout_s: float,
        max_fetch_idle_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stall_timeout_s = stall_timeout_s
        self._max_fetch_idle_s = max_fetch_idle_s
        self._clock = clock
        now = clock()
        self.last_fetch = now
        self.last_commit = now
        #: last time no assigned partition had lag (the stall detector's other clock)
        self.caught_up_at = now

    def fetched(self) -> None:
        self.last_fetch = self._clock()

    def committed(self) -> None:
        self.last_commit = self._clock()

    def caught_up(self) -> None:
        self.caught_up_at = self._clock()

    def liveness(self, *, fetch_loop_exited: bool, outage: bool) -> Verdict:
        """Alive while the fetch loop turns and, when behind, commits keep coming."""
        if fetch_loop_exited:
            return False, "fetch loop exited"
        now = self._clock()
        idle = now - self.last_fetch
        if idle > self._max_fetch_idle_s:
            return False, f"no fetch for {idle:.0f} s"
        stalled = now - max(self.last_commit, self.caught_up_at)
        if stalled > self._stall_timeout_s and not outage:
            return False, f"stalled: behind and no commit for {stalled:.0f} s"
        return True, "consuming"

    def readiness(
        self,
        *,
        stopping: bool,
        circuit: CircuitState,
        partitions: int,
        held_letters: str | None = None,
    ) -> Verdict:
        """Ready unless stopping or an outage holds the pipeline; the reason in the detail."""
        if stopping:
            return False, "stopping"
        if circuit is not CircuitState.CLOSED:
            return False, f"sink circuit {circuit.name.lower()}"
        if held_letters is not None:
            return False, held_letters
        if not partitions:
            return True, "waiting for partition assignment"
        return True, f"{partitions} partitions assigned"


__all__ = ["Health", "Verdict"]
