"""Render and lint the chart with `helm_python` (PyPI `helm-python-sdk`, a dev dependency).

`helm_python` embeds Helm's Go SDK, so chart tests need no helm binary and render the same on
every machine. Without it (a virtualenv made without the dev extras) the tests skip, and fail
in CI (`CI=true`): see `tools.missing`.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from .facts import CHART
from .tools import missing


class RenderError(Exception):
    """Helm refused the values (a `fail`, a schema violation or a template error)."""


def _helm() -> Any:
    try:
        import helm_python
    except ImportError:
        missing("helm_python", "pip install -e '.[dev]' brings helm-python-sdk")
    return helm_python


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """All manifests (hooks included) the chart renders for `values`, as parsed YAML."""
    helm = _helm()
    with helm.Chart.load(str(CHART)) as chart:
        try:
            chart.validate_schema(chart.merge_values(values or {}))
            out = chart.render(values or {}, name="demo", namespace="search")
        except helm.HelmError as exc:
            raise RenderError(str(exc)) from None
    texts = [text for path, text in sorted(out.items()) if not path.endswith("NOTES.txt")]
    return [doc for text in texts for doc in yaml.safe_load_all(text) if doc]


def lint(kube_version: str | None = None) -> tuple[bool, str]:
    """(passed, report) of `helm lint --strict [--kube-version v<kube_version>]` on the chart.

    Strict: a warning (e.g. a deprecated API for `kube_version`) fails like an error.
    """
    helm = _helm()
    options: dict[str, Any] = {"strict": True}
    if kube_version is not None:
        options["kube_version"] = f"v{kube_version}.0"
    report: dict[str, Any] = helm.lint(str(CHART), **options)
    warnings = [m for m in report["messages"] if m["severity"] >= 2]
    return not report["errors"] and not warnings, json.dumps(report)
