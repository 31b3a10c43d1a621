"""The lifecycle protocol: start and stop run once, a failed start may be retried, stop
after a failed start still releases, `async with` does both."""

from __future__ import annotations

import pytest

from stream_indexer.lifecycle import Lifecycle, Phase


class Component(Lifecycle):
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.starts = 0
        self.stops = 0

    async def _start(self) -> None:
        self.starts += 1
        if self.failures:
            self.failures -= 1
            raise OSError("not yet")

    async def _stop(self) -> None:
        self.stops += 1


async def test_start_and_stop_run_once() -> None:
    component = Component()
    await component.start()
    await component.start()
    assert component.running and component.starts == 1
    await component.stop()
    await component.stop()
    assert component.phase is Phase.STOPPED and component.stops == 1


async def test_a_failed_start_can_be_retried() -> None:
    component = Component(failures=2)
    for _ in range(2):
        with pytest.raises(OSError):
            await component.start()
        assert component.phase is Phase.NEW
    await component.start()
    assert component.running and component.starts == 3


async def test_stop_after_a_failed_start_still_releases() -> None:
    component = Component(failures=1)
    with pytest.raises(OSError):
        await component.start()
    await component.stop()
    assert component.stops == 1


async def test_no_start_after_stop() -> None:
    component = Component()
    await component.stop()
    await component.start()
    assert component.starts == 0 and not component.running


async def test_async_with_starts_and_stops() -> None:
    async with Component() as component:
        assert component.running
    assert component.stops == 1
