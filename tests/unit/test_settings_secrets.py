"""Secrets can come from files (a mounted Kubernetes Secret), nested fields included."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_indexer.settings import load_settings, masked_dump


def test_secret_files_set_nested_fields_and_stay_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "postgres__dsn").write_text("postgresql://indexer:s3cret@db:5432/app")
    (tmp_path / "opensearch__password").write_text("os-pass")
    monkeypatch.setenv("STREAM_INDEXER_SECRETS_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.postgres.dsn.get_secret_value() == "postgresql://indexer:s3cret@db:5432/app"
    assert settings.opensearch.password is not None
    assert settings.opensearch.password.get_secret_value() == "os-pass"
    shown = str(masked_dump(settings))
    assert "s3cret" not in shown and "os-pass" not in shown


def test_environment_beats_secret_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "postgres__dsn").write_text("postgresql://from-file/db")
    monkeypatch.setenv("STREAM_INDEXER_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("STREAM_INDEXER_POSTGRES__DSN", "postgresql://from-env/db")
    assert load_settings().postgres.dsn.get_secret_value() == "postgresql://from-env/db"
