"""Published contract files: renders schemas/*.json from the models and the mapping.

    python -m stream_indexer.devtools.schema_export           # rewrite the files
    python -m stream_indexer.devtools.schema_export --check   # exit 1 when a file is stale

The pydantic models and `stream_indexer.opensearch.mapping` are the source of truth; the files in
`schemas/` are what producers and operators read, so CI fails when they drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stream_indexer.models import event_json_schema
from stream_indexer.opensearch.mapping import alias_filter, index_body
from stream_indexer.settings import OpenSearchSettings

EVENT_SCHEMA_FILE = "listing_event.v1.json"
INDEX_DEFINITION_FILE = "listings_index.json"

#: The repository's schemas/ folder (this module lives in <repo>/stream_indexer/devtools/).
DEFAULT_SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_event_schema() -> str:
    """schemas/listing_event.v1.json: the JSON Schema of one event."""
    return _dump(event_json_schema())


def render_index_definition() -> str:
    """schemas/listings_index.json: a complete `PUT /<index>_v1` body, alias included."""
    alias = OpenSearchSettings.model_fields["index"].default
    body = index_body()
    body["aliases"] = {alias: {"filter": alias_filter()}}
    return _dump(body)


RENDERERS: dict[str, Callable[[], str]] = {
    EVENT_SCHEMA_FILE: render_event_schema,
    INDEX_DEFINITION_FILE: render_index_definition,
}


def stale_files(schemas_dir: Path) -> list[Path]:
    """The files in `schemas_dir` whose content differs from a fresh render (or is missing)."""
    stale = []
    for name, render in RENDERERS.items():
        path = schemas_dir / name
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != render():
            stale.append(path)
    return stale


def write_files(schemas_dir: Path) -> list[Path]:
    """Render every file into `schemas_dir`; returns the paths written."""
    schemas_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, render in RENDERERS.items():
        path = schemas_dir / name
        path.write_text(render(), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m stream_indexer.devtools.schema_export",
        description="Render schemas/*.json from the event models and the index mapping.",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a file on disk is out of date"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_SCHEMAS_DIR,
        help="schemas folder (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.dir)
        for path in stale:
            print(
                f"{path} is out of date; run `python -m stream_indexer.devtools.schema_export`",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for path in write_files(args.dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
