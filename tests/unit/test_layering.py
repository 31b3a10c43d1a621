"""Package layering: data flows down the tree, and no module imports a layer above its own.

    cli, devtools                  commands and developer tools
    reindex                        rebuild into a new index while live indexing goes on
    app                            wiring, consumer loop, flow control, commits, health
    repair                         dlq retry / replay (reuse the pipeline)
    pipeline                       worker, decode, coalesce, hydrate, documents, offsets
    opensearch | dlq | producer    the sinks, and the producer side (siblings, independent)
    observability                  metrics, HTTP server, logging
    core                           settings, errors, models, event_dicts, backoff, kafka_clients

Every import counts, including ones inside functions. Siblings on one rank may not import
each other, so that e.g. the DLQ stores never grow a dependency on the OpenSearch sink.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import stream_indexer

PACKAGE_DIR = Path(stream_indexer.__file__).resolve().parent

RANKS = {
    "core": 0,
    "observability": 1,
    "opensearch": 2,
    "dlq": 2,
    "producer": 2,
    "pipeline": 3,
    "repair": 4,
    "app": 5,
    "reindex": 6,
    "devtools": 7,
    "cli": 8,
}
CORE_MODULES = {
    "settings",
    "errors",
    "models",
    "backoff",
    "kafka_clients",
    "lifecycle",
    "masking",
    "addresses",
    "kafka_security",
    "tls",
    "event_dicts",
    "cycle_collector",
    "aiokafka_fixes",
}
#: The package root re-exports the public API and `__main__` runs the CLI: both sit on top.
ENTRY_POINTS = {"stream_indexer", "stream_indexer.__main__"}


def layer_of(module: str) -> str:
    """`stream_indexer.pipeline.worker` -> `pipeline`; a core module -> `core`."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else ""
    if head in CORE_MODULES:
        return "core"
    if head not in RANKS:
        raise AssertionError(f"{module}: not in a known layer; add it to the layering test")
    return head


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every `stream_indexer.*` module `path` imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from stream_indexer.x import y` may name a submodule y
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("stream_indexer.")}


def existing(module: str) -> bool:
    relative = Path(*module.split(".")[1:])
    base = PACKAGE_DIR / relative
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


SOURCES = sorted(PACKAGE_DIR.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_module_imports_a_layer_above_or_beside_its_own(path: Path) -> None:
    importer = module_name(path)
    if importer in ENTRY_POINTS:
        return
    own = layer_of(importer)
    bad = []
    for imported in sorted(imported_modules(path)):
        if not existing(imported):
            continue  # `from pkg import name` where name is not a module
        target = layer_of(imported)
        if target == own:
            continue
        if RANKS[target] >= RANKS[own]:
            bad.append(f"{imported} ({target})")
    assert not bad, f"{importer} ({own}) imports upward or sideways: {', '.join(bad)}"


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a pipeline module importing the app layer is caught."""
    source = tmp_path / "worker.py"
    source.write_text("def f():\n    from stream_indexer.app.service import IndexerService\n")
    assert "stream_indexer.app.service" in imported_modules(source)
    assert RANKS[layer_of("stream_indexer.app.service")] > RANKS["pipeline"]


def test_every_module_is_in_a_layer() -> None:
    for path in SOURCES:
        name = module_name(path)
        if name not in ENTRY_POINTS:
            layer_of(name)
