"""`stream-indexer verify` on real PostgreSQL and OpenSearch: planted drift of every kind is
found (full scan and sample), `--repair` fixes it versioned, never over a newer version."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import socket
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from opensearchpy import AsyncOpenSearch
from ops.tools import missing
from support.pushgateway import INSTALL_HINT, Pushgateway, pushgateway_binary
from support.source_table import create_source_table, upsert_rows

from stream_indexer.cli import main
from stream_indexer.devtools.synthetic import listing_data
from stream_indexer.models import Listing
from stream_indexer.opensearch.sink import OpenSearchSink
from stream_indexer.pipeline.documents import versioned_write
from stream_indexer.repair.verify import Verifier, VerifyOptions
from stream_indexer.settings import Settings, load_settings

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OK_IDS = range(1, 11)
#: the planted findings (see `plant`)
EXPECTED_DRIFT = {
    "missing": [11, 12],
    "extra": [13],
    "version_behind": [15],
    "fields_different": [16],
}
EXPECTED_AHEAD = [17, 18]
EXPECTED_INVALID = [19]


def _listing(listing_id: int, **changes: Any) -> dict[str, Any]:
    data = listing_data(random.Random(listing_id), listing_id, AT)
    data.update(changes)
    return data


@pytest.fixture
def verify_env(
    monkeypatch: pytest.MonkeyPatch, opensearch_url: str, pg_dsn: str, unique_name: str
) -> Iterator[Settings]:
    """This test's settings, also as the environment `stream-indexer verify` reads."""
    env = {
        "STREAM_INDEXER_OPENSEARCH__HOSTS": opensearch_url,
        "STREAM_INDEXER_OPENSEARCH__INDEX": f"{unique_name}-listings",
        "STREAM_INDEXER_POSTGRES__DSN": pg_dsn,
        "STREAM_INDEXER_VERIFY__RECHECK_AFTER_S": "0",
        "STREAM_INDEXER_VERIFY__PAGE_SIZE": "4",  # several pages per side
        "STREAM_INDEXER_RETRY__MAX_ATTEMPTS": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield load_settings()


async def _put(
    client: AsyncOpenSearch, index: str, listing_id: int, version: int, data: dict[str, Any] | None
) -> None:
    """A document as the pipeline writes it (None: a tombstone), at `version`."""
    document = None if data is None else Listing.model_validate(data).to_document()
    write = versioned_write(listing_id, version, uuid.uuid4(), document, AT.isoformat())
    await client.index(
        index=index,
        id=str(listing_id),
        body=orjson.loads(orjson.dumps(write.document)),
        params={"version": version, "version_type": "external_gte"},
    )


async def plant(settings: Settings) -> None:
    """Rows 1..19 and their documents: 1..10 in step, 11..19 one finding each."""
    sink = OpenSearchSink(settings)
    await sink.start()  # creates the physical index and the filtered search alias
    index, client = sink.physical_index, sink.client
    conn = await asyncpg.connect(settings.postgres.dsn.get_secret_value())
    try:
        await create_source_table(conn)
        rows = [(_listing(i), 5) for i in [*OK_IDS, 11, 12, 15, 17, 18, 19]]
        rows.append((_listing(16, title="the source's title"), 5))
        await upsert_rows(conn, rows)
        await conn.execute("UPDATE listings SET title = '' WHERE id = 19")
        for i in OK_IDS:
            await _put(client, index, i, 5, _listing(i))
        await _put(client, index, 12, 3, None)  # re-created after a delete: missing
        await _put(client, index, 13, 4, _listing(13))  # row gone, doc live: extra
        await _put(client, index, 14, 4, None)  # row gone, tombstone: in step
        await _put(client, index, 15, 4, _listing(15))  # behind
        await _put(client, index, 16, 5, _listing(16, title="a lost update's title"))
        await _put(client, index, 17, 9, _listing(17))  # ahead (event before the row)
        await _put(client, index, 18, 8, None)  # ahead: deleted after the row was read
        await _put(client, index, 19, 5, _listing(19))
    finally:
        await conn.close()
        await sink.stop()


async def verify(*args: str) -> tuple[int, dict[str, Any]]:
    """`stream-indexer verify --json ARGS` in a thread (it runs its own event loop)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(main, ["verify", "--json", *args])
    return code, json.loads(out.getvalue())


def _drift(report: dict[str, Any]) -> dict[str, list[int]]:
    return {kind: sorted(t["examples"]) for kind, t in report["drift"].items()}


@pytest.mark.parametrize("scope", [["--full"], ["--sample", "100"]], ids=["full", "sample"])
async def test_finds_every_kind_of_drift_and_repair_fixes_it(
    verify_env: Settings, scope: list[str]
) -> None:
    await plant(verify_env)

    code, report = await verify(*scope)
    assert code == 1
    assert _drift(report) == EXPECTED_DRIFT
    assert report["drift_total"] == 5
    assert sorted(report["ahead"]["examples"]) == EXPECTED_AHEAD
    assert report["invalid_source_row"]["examples"] == EXPECTED_INVALID

    code, report = await verify(*scope, "--repair")
    assert code == 0, report
    assert _drift(report) == EXPECTED_DRIFT
    assert sorted(report["repair"]["repaired"]["examples"]) == [11, 12, 13, 15, 16]
    assert report["remaining"] == 0

    code, report = await verify(*scope)
    assert code == 0, report
    assert report["drift_total"] == 0
    assert sorted(report["ahead"]["examples"]) == EXPECTED_AHEAD  # never "repaired" backwards

    client = AsyncOpenSearch(hosts=verify_env.opensearch.hosts)
    try:
        alias = verify_env.opensearch.index
        await client.indices.refresh(index=alias)
        extra = await client.get(index=verify_env.physical_index, id="13")
        assert extra["_source"]["deleted"] is True and extra["_version"] == 4  # own version
        assert not (await client.search(index=alias, body={"query": {"ids": {"values": ["13"]}}}))[
            "hits"
        ]["hits"]
        fixed = await client.get(index=alias, id="16")
        assert fixed["_source"]["title"] == "the source's title" and fixed["_version"] == 5
        ahead = await client.get(index=alias, id="17")
        assert ahead["_version"] == 9
    finally:
        await client.close()


async def test_full_check_reports_counts_and_shape(verify_env: Settings) -> None:
    await plant(verify_env)
    code, report = await verify("--full")
    assert code == 1
    assert set(report) == {
        "mode",
        "sample",
        "checked",
        "drift",
        "drift_total",
        "ahead",
        "invalid_source_row",
        "settled",
        "repair",
        "remaining",
        "duration_s",
        "exit_code",
    }
    assert report["mode"] == "full" and report["sample"] is None and report["repair"] is None
    # 17 source rows (1..12, 15..19); 18 documents (1..10, 12..19)
    assert report["checked"] == {"source_rows": 17, "index_documents": 18}
    assert report["exit_code"] == 1 and report["remaining"] == 5
    for tally in report["drift"].values():
        assert set(tally) == {"count", "examples"}


async def test_repair_never_overwrites_a_newer_version_written_meanwhile(
    verify_env: Settings,
) -> None:
    await plant(verify_env)
    client = AsyncOpenSearch(hosts=verify_env.opensearch.hosts)
    index = verify_env.physical_index
    planted: list[Sequence[int]] = []

    async def newer_event_lands(ids: Sequence[int]) -> None:
        """Between the check and the repair: a v7 event for listing 15 (row v5, doc v4)."""
        planted.append(ids)
        await _put(client, index, 15, 7, _listing(15, title="written by a newer event"))

    try:
        verifier = Verifier(verify_env, before_repair=newer_event_lands)
        report = await verifier.run(VerifyOptions(mode="full", repair=True))
        assert planted and 15 in planted[0]
        assert report.repairs["newer_meanwhile"].examples == [15]
        assert 15 not in report.repairs["repaired"].examples
        assert report.exit_code == 0
        doc = await client.get(index=index, id="15")
        assert doc["_version"] == 7
        assert doc["_source"]["title"] == "written by a newer event"
    finally:
        await client.close()


async def test_a_missing_alias_is_bad_configuration_naming_the_setting(
    verify_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = await asyncpg.connect(verify_env.postgres.dsn.get_secret_value())
    try:
        await create_source_table(conn)
    finally:
        await conn.close()
    code = await asyncio.to_thread(main, ["verify", "--full"])
    assert code == 2
    assert "STREAM_INDEXER_OPENSEARCH__INDEX" in capsys.readouterr().err


def test_a_bad_setting_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAM_INDEXER_VERIFY__PUSHGATEWAY_URL", "pushgateway:9091")
    assert main(["verify"]) == 2
    assert "STREAM_INDEXER_VERIFY__PUSHGATEWAY_URL" in capsys.readouterr().err
    monkeypatch.delenv("STREAM_INDEXER_VERIFY__PUSHGATEWAY_URL")
    monkeypatch.setenv("STREAM_INDEXER_VERIFY__PAGE_SIZE", "0")
    assert main(["verify", "--full"]) == 2
    assert "STREAM_INDEXER_VERIFY__PAGE_SIZE" in capsys.readouterr().err


async def test_the_run_pushes_its_figures_to_the_pushgateway(
    verify_env: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    binary = pushgateway_binary()
    if binary is None:
        missing("prometheus-pushgateway", INSTALL_HINT)
    await plant(verify_env)
    with Pushgateway(tmp_path, binary) as gateway:
        monkeypatch.setenv("STREAM_INDEXER_VERIFY__PUSHGATEWAY_URL", gateway.url)
        code, _report = await verify("--full")
        assert code == 1
        text = gateway.metrics()
    index = verify_env.opensearch.index
    labels = f'index="{index}",instance="",job="stream-indexer-verify"'
    for kind, ids in EXPECTED_DRIFT.items():
        assert f'stream_indexer_drift_documents{{{labels},kind="{kind}"}} {len(ids)}' in text
    assert f"stream_indexer_drift_remaining_documents{{{labels}}} 5" in text
    assert f"stream_indexer_drift_ahead_documents{{{labels}}} 2" in text
    assert f'stream_indexer_drift_checked_documents{{{labels},side="source"}} 17' in text
    assert f"stream_indexer_verify_last_run_timestamp_seconds{{{labels}}}" in text


async def test_drift_that_settles_before_the_recheck_is_not_drift(verify_env: Settings) -> None:
    """A listing whose event lands between the first look and the recheck (live indexing)."""
    await plant(verify_env)
    client = AsyncOpenSearch(hosts=verify_env.opensearch.hosts)

    rechecked: list[int] = []

    async def event_lands(ids: Sequence[int]) -> None:
        rechecked.extend(ids)
        if 11 in ids:
            await _put(client, verify_env.physical_index, 11, 5, _listing(11))

    try:
        report = await Verifier(verify_env, before_recheck=event_lands).run(
            VerifyOptions(mode="full")
        )
    finally:
        await client.close()
    assert sorted(rechecked) == [11, 12, 13, 15, 16]
    assert report.settled == 1
    assert report.findings["missing"].examples == [12]
    assert report.drift == 4


async def test_a_listing_still_drifting_after_its_repair_keeps_the_run_failing(
    verify_env: Settings,
) -> None:
    """The source moves on while the repair writes the row it read: the look after the repair
    sees the listing behind again, and the run does not claim it clean."""
    await plant(verify_env)
    conn = await asyncpg.connect(verify_env.postgres.dsn.get_secret_value())

    async def source_moves_on(ids: Sequence[int]) -> None:
        if 16 in ids:
            await conn.execute("UPDATE listings SET title = 'v6', version = 6 WHERE id = 16")

    try:
        report = await Verifier(verify_env, before_repair=source_moves_on).run(
            VerifyOptions(mode="full", repair=True)
        )
    finally:
        await conn.close()
    assert 16 in report.repairs["repaired"].examples
    assert report.still_drifting.examples == [16]
    assert (report.remaining, report.exit_code) == (1, 1)


async def test_repair_writes_through_the_write_alias_and_needs_it(
    verify_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await plant(verify_env)
    client = AsyncOpenSearch(hosts=verify_env.opensearch.hosts)
    try:
        await client.indices.delete_alias(
            index=verify_env.physical_index, name=verify_env.write_alias
        )
        code, report = await verify("--full")  # reading needs no write alias
        assert code == 1 and report["drift_total"] == 5
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["verify", "--full", "--repair"])
        assert code == 2
        assert "STREAM_INDEXER_OPENSEARCH__WRITE_ALIAS" in capsys.readouterr().err
    finally:
        await client.close()


# --- the source going away mid-check -------------------------------------------------------

#: listings 20..40, in step on both sides: pages to read after the first drift is rechecked
MORE_IDS = range(20, 41)
BLIP_AT = 30

#: `listings_blip` is `listings` through a function that, once armed with an id (`blip_at`),
#: kills the reading session (pg_terminate_backend of itself) the first time it reads that
#: row: the connection is lost in the middle of a query, as in a restart or a failover. The
#: sequence is not rolled back with the failed query, so it fires once.
BLIP_DDL = """
CREATE SEQUENCE blip_fired;
CREATE TABLE blip_at (listing_id bigint);
CREATE FUNCTION blip(row_id bigint) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    target bigint;
BEGIN
    SELECT listing_id INTO target FROM blip_at;
    IF target IS NOT NULL AND row_id = target THEN
        IF nextval('blip_fired') = 1 THEN
            PERFORM pg_terminate_backend(pg_backend_pid());
            PERFORM pg_sleep(30);  -- interrupted at once by the termination
        END IF;
    END IF;
    RETURN true;
END $$;
CREATE VIEW listings_blip AS SELECT * FROM listings WHERE blip(id);
"""


async def test_a_source_connection_lost_mid_scan_is_retried_and_the_scan_resumes(
    verify_env: Settings,
) -> None:
    await plant(verify_env)
    client = AsyncOpenSearch(hosts=verify_env.opensearch.hosts)
    conn = await asyncpg.connect(verify_env.postgres.dsn.get_secret_value())
    try:
        await upsert_rows(conn, [(_listing(i), 5) for i in MORE_IDS])
        for i in MORE_IDS:
            await _put(client, verify_env.physical_index, i, 5, _listing(i))
        await conn.execute(BLIP_DDL)
        armed: list[Sequence[int]] = []

        async def arm(ids: Sequence[int]) -> None:
            """Mid-scan (the first drift is rechecked at listing 15): the session reading
            the page that holds listing 30 will be killed."""
            if not armed:
                armed.append(ids)
                await conn.execute("INSERT INTO blip_at VALUES ($1)", BLIP_AT)

        progress: list[int] = []
        source = verify_env.source.model_copy(update={"table": "listings_blip"})
        verifier = Verifier(
            verify_env.model_copy(update={"source": source}),
            before_recheck=arm,
            on_progress=lambda rows, _docs: progress.append(rows),
        )
        report = await verifier.run(VerifyOptions(mode="full"))

        assert armed and max(armed[0]) < BLIP_AT, "armed before the scan reached listing 30"
        assert await conn.fetchval("SELECT last_value FROM blip_fired") == 2, (
            "the session was killed once, and the read was tried again"
        )
        assert verifier._source.retries == 1
        # resumed after the last compared id: every row compared once, not the start again
        rows = len([*OK_IDS, 11, 12, 15, 16, 17, 18, 19, *MORE_IDS])
        assert report.checked_rows == rows and sum(progress) == rows
        assert _drift(report.to_json()) == EXPECTED_DRIFT
        assert report.exit_code == 1
    finally:
        await conn.close()
        await client.close()


async def test_a_source_that_stays_away_fails_the_run_naming_the_setting(
    verify_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await plant(verify_env)
    with socket.socket() as probe:  # a port nothing listens on: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(
        "STREAM_INDEXER_SOURCE__DSN", f"postgresql://postgres:s3cret@127.0.0.1:{port}/postgres"
    )
    monkeypatch.setenv("STREAM_INDEXER_VERIFY__SOURCE_RETRY_S", "1")
    monkeypatch.setenv("STREAM_INDEXER_RETRY__INITIAL_BACKOFF_MS", "50")
    code = await asyncio.to_thread(main, ["verify", "--full"])
    err = capsys.readouterr().err
    assert code == 1
    (line,) = [ln for ln in err.splitlines() if ln.startswith("stream-indexer verify:")]
    assert "VERIFY__SOURCE_RETRY_S (1 s)" in line and "the source row count" in line
    assert "retrying in" in err, "it was waited for before giving up"
    assert "s3cret" not in err


async def test_a_query_the_source_refuses_fails_at_once(
    verify_env: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await plant(verify_env)
    monkeypatch.setenv("STREAM_INDEXER_SOURCE__TABLE", "no_such_table")
    # were it retried, the run would outlast the test's timeout
    monkeypatch.setenv("STREAM_INDEXER_VERIFY__SOURCE_RETRY_S", "3600")
    code = await asyncio.to_thread(main, ["verify", "--full"])
    err = capsys.readouterr().err
    assert code == 1
    assert '"no_such_table" does not exist' in err
    assert "retrying in" not in err
