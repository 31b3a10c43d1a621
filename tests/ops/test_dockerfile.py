"""Dockerfile (read as text: no Docker engine here): multi-stage, pinned, non-root, healthy."""

from __future__ import annotations

import re

from stream_indexer.cli import build_parser
from stream_indexer.settings import MetricsSettings

from .facts import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")


def _instructions(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.+)$", joined, re.M)]


def test_multi_stage_on_a_pinned_slim_python_base() -> None:
    (arg,) = [a for a in _instructions("ARG") if a.startswith("PYTHON_IMAGE=")]
    image = arg.split("=", 1)[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image
    stages = _instructions("FROM")
    assert len(stages) >= 2
    assert all(s.startswith("${PYTHON_IMAGE}") for s in stages)
    assert any("--from=build" in c for c in _instructions("COPY"))


def test_runs_as_non_root_with_migrations_copied() -> None:
    (user,) = _instructions("USER")
    assert user.split(":")[0] not in {"0", "root"}
    copies = _instructions("COPY")
    assert "migrations /app/migrations" in copies


def test_build_stage_has_every_file_packaging_needs() -> None:
    """setup.py maps migrations/ into the package: a build without them ships no SQL."""
    copied = " ".join(_instructions("COPY"))
    for needed in ("pyproject.toml", "setup.py", "migrations", "stream_indexer"):
        if (REPO / needed).exists():
            assert needed in copied, needed


def test_healthcheck_hits_healthz_on_the_default_metrics_port() -> None:
    (check,) = _instructions("HEALTHCHECK")
    assert "urllib.request" in check and "/healthz" in check
    assert f"'{MetricsSettings().port}'" in check
    assert "STREAM_INDEXER_METRICS__PORT" in check
    assert str(MetricsSettings().port) in _instructions("EXPOSE")[0]


def test_entrypoint_is_the_cli_and_cmd_is_run() -> None:
    assert _instructions("ENTRYPOINT") == ['["stream-indexer"]']
    assert _instructions("CMD")[-1] == '["run"]'
    assert callable(build_parser().parse_args(["run"]).handler)


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests", "helm"} <= set(ignored)
    assert "migrations" not in ignored and "stream_indexer" not in ignored
