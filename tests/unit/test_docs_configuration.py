"""docs/configuration.md documents every setting the service reads (and no removed one)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from stream_indexer.settings import ENV_PREFIX, Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _env_names(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            yield f"{prefix}{name.upper()}"


def test_every_setting_is_documented_and_every_documented_one_exists() -> None:
    settings = set(_env_names(Settings, ENV_PREFIX))
    documented = set(re.findall(r"`(STREAM_INDEXER_[A-Z_]+)`", DOC.read_text()))
    documented.discard("STREAM_INDEXER_SECRETS_DIR")
    assert settings - documented == set(), "settings missing from docs/configuration.md"
    assert documented - settings == set(), "docs/configuration.md names unknown settings"
