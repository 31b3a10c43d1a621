"""What docs/operations.md promises about STREAM_INDEXER_SECRETS_DIR file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_indexer.settings import Settings


def test_a_file_named_after_the_field_path_sets_the_secret(tmp_path: Path) -> None:
    dsn = "postgresql://indexer:s3cret@pg:5432/listings"
    (tmp_path / "postgres__dsn").write_text(f"{dsn}\n")
    (tmp_path / "opensearch__password").write_text("hunter2")
    settings = Settings(_secrets_dir=tmp_path)
    assert settings.postgres.dsn.get_secret_value() == dsn
    assert settings.opensearch.password is not None
    assert settings.opensearch.password.get_secret_value() == "hunter2"
    assert "s3cret" not in repr(settings) and "hunter2" not in repr(settings)


def test_environment_wins_over_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "postgres__dsn").write_text("postgresql://a@file/db")
    monkeypatch.setenv("STREAM_INDEXER_POSTGRES__POOL_MAX_SIZE", "8")
    settings = Settings(_secrets_dir=tmp_path)
    assert settings.postgres.pool_max_size == 8
    assert settings.postgres.dsn.get_secret_value() == "postgresql://a@file/db"
    monkeypatch.setenv("STREAM_INDEXER_POSTGRES__DSN", "postgresql://b@env/db")
    settings = Settings(_secrets_dir=tmp_path)
    assert settings.postgres.dsn.get_secret_value() == "postgresql://b@env/db"
