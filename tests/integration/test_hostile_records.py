"""Hostile records through the real stack in one run: every partition reaches its end, each
poison record is dead-lettered exactly once in the table and on the DLQ topic, valid ones are
indexed exactly, and `dlq replay` restores a degraded letter's original bytes from the table.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from opensearchpy import AsyncOpenSearch
from prometheus_client import CollectorRegistry
from support.pipeline import (
    dlq_rows,
    prepare_pipeline,
    read_alias,
    read_topic,
    service_caught_up,
    settings_env,
    wait_for,
)
from support.stack_fixtures import SettingsFactory, TopicFactory

from stream_indexer.app.service import IndexerService
from stream_indexer.cli import main
from stream_indexer.dlq.degrade import VALUE_SHA256, VALUE_TRUNCATED
from stream_indexer.observability.metrics import Metrics
from stream_indexer.settings import Settings

NOW = "2024-06-01T12:00:00+00:00"
MIB = 1024 * 1024
Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Hostile:
    """One record to produce and what must become of it."""

    name: str
    key: bytes | None
    value: bytes | None
    poison: bool
    headers: tuple[tuple[str, bytes], ...] = ()
    #: for valid records: the listing id and version the index must show
    listing_id: int | None = None
    version: int | None = None


def event(listing_id: int, version: int = 1, **data: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "action": "index",
        "listing_id": listing_id,
        "version": version,
        "occurred_at": NOW,
        "data": {
            "id": listing_id,
            "title": f"Listing {listing_id}",
            "price": 10.0,
            "status": "active",
            "updated_at": NOW,
            **data,
        },
    }


def dumps(document: Any) -> bytes:
    return json.dumps(document).encode()


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def valid(name: str, listing_id: int, value: bytes, **extra: Any) -> Hostile:
    return Hostile(name, b"%d" % listing_id, value, False, listing_id=listing_id, **extra)


def poison(name: str, key: bytes | None, value: bytes | None, **extra: Any) -> Hostile:
    return Hostile(name, key, value, True, **extra)


def hostile_records() -> list[Hostile]:
    junk = (("junk", os.urandom(64)), ("", b"\x00\xff\xfe"), ("x-dlq-error-class", b"forged"))
    big = event(1001)
    big["padding"] = "x" * (2 * MIB)
    nan = dumps(event(1005)).replace(b'"version": 1', b'"version": NaN')
    duplicate = dumps(event(1010, version=1)).replace(
        b'"version": 1', b'"version": 1, "version": 2'
    )
    surrogate = dumps(event(1012)).replace(b"Listing 1012", b"bad \\ud800 title")
    extra = event(1020, legacy_score=0.5)
    extra["unknown_top_level"] = {"a": [1, 2]}
    sql = "Robert'); DROP TABLE opensearch_indexing_dlq; --"
    return [
        poison("2 MB value", b"1001", dumps(big)),
        poison("1 MB single-token title", b"1002", dumps(event(1002, title="a" * MIB))),
        poison("nesting 200", b"1003", dumps({**event(1003), "deep": nested(200)})),
        poison("nesting 100,000", b"1004", b"[" * 100_000 + b"]" * 100_000),
        poison("NaN, no key", None, nan),
        poison(
            "Infinity", b"1006", dumps(event(1006)).replace(b'"price": 10.0', b'"price": Infinity')
        ),
        poison("version above 2^63", b"1007", dumps(event(1007, version=2**63 + 5))),
        poison("listing_id above 2^63", None, dumps(event(2**64))),
        poison("negative version", b"1009", dumps(event(1009, version=-1))),
        valid("duplicate keys", 1010, duplicate, version=2),
        poison(
            "invalid UTF-8", b"1011", b'{"action": "index", "listing_id": 1011, "t": "\xff\xfe"}'
        ),
        poison("lone surrogate escape", b"1012", surrogate),
        valid(
            "NUL in a valid record", 1013, dumps(event(1013, title="nul \x00 inside")), version=1
        ),
        poison("NUL in a poison record", b"1014", dumps(event(1014, version=-1, title="n\x00l"))),
        Hostile("null key", None, dumps(event(1015)), False, listing_id=1015, version=1),
        poison("key not matching listing_id", b"1016", dumps(event(99016))),
        poison("empty value with header junk", b"1017", b"", headers=junk),
        poison("tombstone", b"1023", None),
        valid("binary header junk", 1018, dumps(event(1018)), headers=junk, version=1),
        poison("JSON array", b"1019", b'[{"action": "index", "listing_id": 1019}]'),
        valid("unknown extra fields", 1020, dumps(extra), version=1),
        valid("SQL-looking title", 1021, dumps(event(1021, title=sql)), version=1),
        poison("SQL-looking value", b"1022", sql.encode()),
    ]


async def produce(bootstrap: str, topic: str, records: list[Hostile]) -> list[tuple[int, int]]:
    """Produce each record to partition index % 2; return (partition, offset) per record."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=False, max_request_size=8 * MIB
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                key=record.key,
                value=record.value,
                headers=list(record.headers),
                partition=i % 2,
            )
            for i, record in enumerate(records)
        ]
        metas = [await future for future in futures]
    finally:
        await producer.stop()
    return [(meta.partition, meta.offset) for meta in metas]


def header(headers: Any, name: str) -> bytes | None:
    found = None
    for key, value in headers or ():
        if key == name:
            found = value
    return found


@pytest.fixture
async def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    for name in list(os.environ):
        if name.startswith("STREAM_INDEXER_"):
            monkeypatch.delenv(name)
    for name, value in settings_env(settings).items():
        if name.startswith("STREAM_INDEXER_"):
            monkeypatch.setenv(name, value)
    yield


@pytest.fixture
async def settings(
    pg_dsn: str, topic_factory: TopicFactory, settings_for: SettingsFactory
) -> Settings:
    topic = await prepare_pipeline(topic_factory, pg_dsn, partitions=2)
    return settings_for(topic, **{"retry.initial_backoff_ms": 50, "retry.max_backoff_ms": 500})


@pytest.mark.timeout(300)
async def test_hostile_records_never_block_and_are_dead_lettered_exactly_once(
    settings: Settings,
    cli_env: None,
    opensearch_url: str,
    pg_dsn: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bootstrap = settings.kafka.bootstrap_servers
    topic = settings.kafka.topic
    records = hostile_records()
    positions = await produce(bootstrap, topic, records)
    ends: dict[int, int] = {}
    for partition, offset in positions:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    poison_at = {pos: r for pos, r in zip(positions, records, strict=True) if r.poison}
    valid_ones = [r for r in records if not r.poison]
    metrics = Metrics(CollectorRegistry())

    async with IndexerService(settings, metrics) as service:
        await wait_for(lambda: service_caught_up(service, ends), within_s=120, what="catch-up")
        assert service.liveness()[0] and service.readiness()[0], "the service stays up"

        rows = await dlq_rows(pg_dsn)
        by_source = Counter((row["partition"], row["offset"]) for row in rows)
        assert set(by_source) == set(poison_at), "every poison record has a row, nothing else"
        assert all(n == 1 for n in by_source.values()), f"duplicated rows: {by_source}"

        dead = await read_topic(bootstrap, settings.dlq_topic, expected=len(poison_at))
        on_topic = Counter(
            (
                int(header(r.headers, "x-dlq-original-partition") or -1),
                int(header(r.headers, "x-dlq-original-offset") or -1),
            )
            for r in dead
        )
        assert set(on_topic) == set(poison_at)
        assert sum(on_topic.values()) == len(poison_at), f"duplicates on the topic: {on_topic}"

        # what could be read of an unparseable record is kept (NaN: action and listing id)
        nan_row = next(
            row
            for row in rows
            if poison_at[(row["partition"], row["offset"])].name == "NaN, no key"
        )
        assert (nan_row["listing_id"], nan_row["action"]) == (1005, "index")

        # the 2 MB letter: whole in the table, degraded on the topic
        big_pos = next(pos for pos, r in poison_at.items() if r.name == "2 MB value")
        big = poison_at[big_pos]
        assert big.value is not None
        big_row = next(row for row in rows if (row["partition"], row["offset"]) == big_pos)
        assert bytes(big_row["value"]) == big.value and not big_row["value_truncated"]
        [big_dead] = [
            r
            for r in dead
            if int(header(r.headers, "x-dlq-original-offset") or -1) == big_pos[1]
            and int(header(r.headers, "x-dlq-original-partition") or -1) == big_pos[0]
        ]
        assert big_dead.value == b""
        assert header(big_dead.headers, VALUE_TRUNCATED) == str(len(big.value)).encode()
        assert header(big_dead.headers, VALUE_SHA256) == big_row["value_sha256"].encode()
        # original headers come back untouched on the DLQ topic (a forged x-dlq-* is replaced)
        junk_pos = next(pos for pos, r in poison_at.items() if r.name.startswith("empty value"))
        [junk_dead] = [
            r
            for r in dead
            if int(header(r.headers, "x-dlq-original-offset") or -1) == junk_pos[1]
            and int(header(r.headers, "x-dlq-original-partition") or -1) == junk_pos[0]
        ]
        assert header(junk_dead.headers, "junk") == poison_at[junk_pos].headers[0][1]
        assert header(junk_dead.headers, "x-dlq-error-class") == b"undecodable"

        documents = await read_alias(opensearch_url, settings.opensearch.index)
        assert set(documents) == {r.listing_id for r in valid_ones}
        for record in valid_ones:
            assert record.listing_id is not None
            document = documents[record.listing_id]
            assert document["version"] == record.version, record.name
            assert "legacy_score" not in document and "unknown_top_level" not in document
        assert documents[1013]["title"] == "nul \x00 inside"
        assert documents[1021]["title"].startswith("Robert'); DROP TABLE")
        client = AsyncOpenSearch(hosts=[opensearch_url])
        try:
            assert await client.ping(), "the sink stays up"
        finally:
            await client.close()

        # replay of the degraded letter publishes the original bytes, fetched from the table
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["dlq", "replay", "--listing-id", "1001", "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        report = json.loads(out)
        assert (report["replayed"], report["value_unavailable"]) == (1, 0), report
        source = await read_topic(bootstrap, topic, expected=len(records) + 1)
        [replayed] = [r for r in source if header(r.headers, "x-replay-count") == b"1"]
        assert (replayed.key, replayed.value) == (big.key, big.value)
        assert replayed.partition == big_pos[0]

        # ... and the indexer dead-letters it again without stalling
        ends[big_pos[0]] = replayed.offset + 1
        await wait_for(
            lambda: service_caught_up(service, ends), within_s=60, what="replay catch-up"
        )
    degraded = metrics.registry.get_sample_value(
        "stream_indexer_dlq_degraded_letters_total", {"store": "kafka"}
    )
    print(
        f"hostile records: {len(records)}, poison {len(poison_at)}, valid {len(valid_ones)}, "
        f"DLQ topic records {sum(on_topic.values())}, table rows {len(rows)}, "
        f"degraded on the topic {degraded}"
    )
