"""The committed schemas/ files match what the models and the mapping render."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_indexer.devtools import schema_export
from stream_indexer.models import Listing, event_json_schema
from stream_indexer.opensearch.mapping import alias_filter, index_body

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
REGENERATE = "run `python -m stream_indexer.devtools.schema_export` and commit schemas/"


def test_event_schema_file_is_up_to_date() -> None:
    on_disk = (SCHEMAS / schema_export.EVENT_SCHEMA_FILE).read_text(encoding="utf-8")
    assert on_disk == schema_export.render_event_schema(), REGENERATE


def test_index_definition_file_is_up_to_date() -> None:
    on_disk = (SCHEMAS / schema_export.INDEX_DEFINITION_FILE).read_text(encoding="utf-8")
    assert on_disk == schema_export.render_index_definition(), REGENERATE


def test_rendered_files_are_pretty_sorted_json_with_a_trailing_newline() -> None:
    for render in (schema_export.render_event_schema, schema_export.render_index_definition):
        text = render()
        assert text.endswith("}\n")
        document = json.loads(text)
        assert text == json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_event_schema_is_the_models_schema() -> None:
    assert json.loads(schema_export.render_event_schema()) == event_json_schema()


def test_index_definition_is_the_mapping_plus_the_filtered_alias() -> None:
    definition = json.loads(schema_export.render_index_definition())
    assert definition["mappings"] == index_body()["mappings"]
    (alias,) = definition["aliases"].values()
    assert alias == {"filter": alias_filter()}


def test_every_listing_field_is_mapped() -> None:
    properties = index_body()["mappings"]["properties"]
    assert set(Listing.model_fields) <= set(properties)
    assert index_body()["mappings"]["dynamic"] == "strict"


def test_check_passes_on_fresh_files_and_names_a_stale_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert schema_export.main(["--dir", str(tmp_path)]) == 0
    assert schema_export.main(["--check", "--dir", str(tmp_path)]) == 0

    stale = tmp_path / schema_export.INDEX_DEFINITION_FILE
    stale.write_text(stale.read_text(encoding="utf-8").replace("strict", "true"), encoding="utf-8")
    capsys.readouterr()
    assert schema_export.main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert schema_export.INDEX_DEFINITION_FILE in err
    assert schema_export.EVENT_SCHEMA_FILE not in err


def test_check_reports_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert schema_export.main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert schema_export.EVENT_SCHEMA_FILE in err
    assert schema_export.INDEX_DEFINITION_FILE in err
