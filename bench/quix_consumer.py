"""Benchmark baseline: Quix Streams with its Elasticsearch sink, default options.

Run by bench/external_baselines.py with the interpreter of its own virtualenv (quixstreams is
no dependency of the project), never imported by the project. The dataframe turns each
event into the document the other consumers send (the listing's mapped fields plus version,
event_id and indexed_at; a tombstone document for a delete) and drops records that are not
an event object; `ElasticsearchSink` (defaults: the record key as `_id`, 500 documents per
`_bulk`, no external versioning) writes them, and Quix commits at its checkpoints (every 5 s
by default). Prints `{"first_fetch": true}` at the first record and its counters as one JSON
line once SIGTERM has stopped the application.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from quixstreams import Application
from quixstreams.sinks.community.elasticsearch import ElasticsearchSink

COUNTERS = {"docs_sent": 0, "bulk_requests": 0, "skipped": 0}
CHUNK = 500  # the sink's default batch_size: one `_bulk` per chunk


class CountingSink(ElasticsearchSink):  # type: ignore[misc]
    """The default sink, counting what it sends."""

    def write(self, batch: Any) -> None:
        super().write(batch)
        COUNTERS["docs_sent"] += batch.size
        COUNTERS["bulk_requests"] += -(-batch.size // CHUNK)


def documents(fields: list[str]) -> Any:
    fetched = False

    def to_document(value: bytes) -> dict[str, Any] | None:
        nonlocal fetched
        if not fetched:
            fetched = True
            print('{"first_fetch": true}', flush=True)
        try:
            event = json.loads(value)
        except ValueError:
            event = None
        if (
            not isinstance(event, dict)
            or event.get("action") not in ("index", "delete")
            or event.get("version") is None
        ):
            COUNTERS["skipped"] += 1
            return None
        data = event.get("data")
        if event["action"] == "delete" or not isinstance(data, dict):
            doc: dict[str, Any] = {"id": event.get("listing_id"), "deleted": True}
        else:
            doc = {f: data[f] for f in fields if data.get(f) is not None}
        doc["version"] = event["version"]
        doc["event_id"] = event.get("event_id")
        doc["indexed_at"] = datetime.now(UTC).isoformat()
        return doc

    return to_document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quix_consumer.py")
    for name in ("bootstrap", "topic", "group-id", "url", "index", "mapping", "state-dir"):
        parser.add_argument(f"--{name}", required=True)
    a = parser.parse_args(argv)
    with open(a.mapping) as f:
        mapping = json.load(f)
    app = Application(
        broker_address=a.bootstrap,
        consumer_group=a.group_id,
        auto_offset_reset="earliest",
        state_dir=a.state_dir,
        consumer_extra_config={"session.timeout.ms": 6000},
        loglevel="WARNING",
    )
    topic = app.topic(a.topic, value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(topic)
    sdf = sdf.apply(documents(list(mapping["mappings"]["properties"])))
    sdf = sdf.filter(lambda doc: doc is not None)
    sdf.sink(CountingSink(url=a.url, index=a.index, mapping=mapping))
    app.run()  # returns once SIGTERM has stopped it (Quix handles the signal)
    print(json.dumps(COUNTERS), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
