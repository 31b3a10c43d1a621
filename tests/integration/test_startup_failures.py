"""`stream-indexer run` as a process that cannot start: one line naming the fix, exit 3."""

from __future__ import annotations

import asyncio
import sys

import pytest
from support.pipeline import prepare_pipeline, settings_env
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.app.startup_errors import EXIT_STARTUP_FAILED

IDEMPOTENCE = "STREAM_INDEXER_KAFKA__ENABLE_IDEMPOTENCE"


async def _run_indexer(env: dict[str, str], within_s: float) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "stream_indexer",
        "run",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within_s)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("log_level", ["INFO", "DEBUG"])
async def test_a_broker_refusing_the_idempotent_producer_is_one_line_and_exit_3(
    pg_dsn: str,
    topic_factory: TopicFactory,
    settings_for: SettingsFactory,
    log_level: str,
) -> None:
    """tansu answers aiokafka's InitProducerId with UnknownError, as a cluster without the
    IDEMPOTENT_WRITE ACL answers with an authorization error."""
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=1)
    settings = settings_for(topic, **{"kafka.enable_idempotence": True, "log.level": log_level})
    code, out, err = await _run_indexer(settings_env(settings), within_s=60)
    assert code == EXIT_STARTUP_FAILED, err
    naming = [line for line in err.splitlines() if IDEMPOTENCE in line]
    assert len(naming) == 1, err
    assert f"{IDEMPOTENCE}=false" in naming[0] and "IDEMPOTENT_WRITE" in naming[0]
    assert "Traceback" not in out
    assert ("Traceback" in err) is (log_level == "DEBUG"), err
