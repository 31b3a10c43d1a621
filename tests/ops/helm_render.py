"""Render the chart with whatever Helm this machine has: the `helm` binary or `helm_python`.

`helm_python` (PyPI `helm-python-sdk`) embeds Helm's Go SDK, so chart tests can run without
a helm binary. Neither is a project dependency; tests skip when both are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from .facts import CHART


class RenderError(Exception):
    """Helm refused the values (a `fail`, a schema violation or a template error)."""


def _helm_python() -> Any:
    try:
        import helm_python  # type: ignore[import-not-found]
    except ImportError:
        return None
    return helm_python


def available() -> str | None:
    if shutil.which("helm"):
        return "helm"
    if _helm_python() is not None:
        return "helm_python"
    return None


def require() -> str:
    tool = available()
    if tool is None:
        pytest.skip("neither the helm binary nor helm_python (pip install helm-python-sdk)")
    return tool


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """All manifests (hooks included) the chart renders for `values`, as parsed YAML."""
    tool = require()
    texts: list[str] = []
    if tool == "helm":
        with tempfile.TemporaryDirectory() as tmp:
            values_file = Path(tmp) / "values.json"
            values_file.write_text(json.dumps(values or {}))
            cmd = ["helm", "template", "demo", str(CHART), "-n", "search", "-f", str(values_file)]
            result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise RenderError(result.stderr)
        texts = [result.stdout]
    else:
        helm = _helm_python()
        with helm.Chart.load(str(CHART)) as chart:
            try:
                chart.validate_schema(chart.merge_values(values or {}))
                out = chart.render(values or {}, name="demo", namespace="search")
            except helm.HelmError as exc:
                raise RenderError(str(exc)) from None
        texts = [text for path, text in sorted(out.items()) if not path.endswith("NOTES.txt")]
    return [doc for text in texts for doc in yaml.safe_load_all(text) if doc]


def lint() -> tuple[bool, str]:
    """(passed, output) of `helm lint` on the chart."""
    tool = require()
    if tool == "helm":
        result = subprocess.run(
            ["helm", "lint", str(CHART)], capture_output=True, text=True, check=False, timeout=120
        )
        return result.returncode == 0, result.stdout + result.stderr
    report = _helm_python().lint(str(CHART))
    return not report["errors"], json.dumps(report)
