"""What the deployment files must agree with, derived from the code (never hard-coded twice)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from stream_indexer.observability.metrics import Metrics
from stream_indexer.observability.reindex_metrics import ReindexMetrics
from stream_indexer.settings import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "stream-indexer"
RULES_FILE = CHART / "files" / "prometheus-rules.yml"
DASHBOARD_FILE = CHART / "files" / "grafana-dashboard.json"
RULES_TEST_FILE = Path(__file__).parent / "promtool" / "rules_test.yml"
COMPOSE_FILE = REPO / "docker-compose.yml"
RUNBOOK = REPO / "docs" / "runbook.md"


METRIC_TOKEN = re.compile(r"\b(?:stream_indexer|opensearch_indexing)_[a-zA-Z0-9_]*[a-zA-Z0-9]")


def setting_env_names() -> frozenset[str]:
    """Every environment variable the Settings model reads (plus the secrets-dir switch)."""
    names = {f"{ENV_PREFIX}SECRETS_DIR"}
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.update(
                f"{ENV_PREFIX}{name.upper()}__{sub.upper()}" for sub in annotation.model_fields
            )
        else:
            names.add(f"{ENV_PREFIX}{name.upper()}")
    return frozenset(names)


def exported_metric_names() -> frozenset[str]:
    """Series names a scrape of `Metrics` can contain (counter `_total`, histogram parts, ...)."""
    names: set[str] = set()
    registry = Metrics(CollectorRegistry()).registry
    ReindexMetrics(registry)  # served next to them by a running reindex
    for family in registry.collect():
        base = family.name
        if family.type == "counter":
            names.update({f"{base}_total", f"{base}_created"})
        elif family.type == "histogram":
            names.update({f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"})
        elif family.type == "info":
            names.add(f"{base}_info")
        else:
            names.add(base)
    return frozenset(names)


def metric_tokens(expr: str) -> set[str]:
    """`stream_indexer_*` / `opensearch_indexing_*` names in a PromQL expression.

    Recording-rule names (`stream_indexer:...`) contain a colon and are not matched.
    """
    return {m.group(0) for m in METRIC_TOKEN.finditer(expr) if expr[m.end() : m.end() + 1] != ":"}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook_anchors() -> set[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.M)}


def env_from_mapping(env: Any) -> dict[str, str]:
    """A compose `environment:` (mapping or list of KEY=VALUE) as a dict."""
    if isinstance(env, dict):
        return {str(k): "" if v is None else str(v) for k, v in env.items()}
    result: dict[str, str] = {}
    for item in env or []:
        key, _, value = str(item).partition("=")
        result[key] = value
    return result
