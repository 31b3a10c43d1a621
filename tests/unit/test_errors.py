"""The error tree: one module holds every error class, all rooted in StreamIndexerError."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import stream_indexer
from stream_indexer import errors

PACKAGE_DIR = Path(stream_indexer.__file__).resolve().parent
TREE = [
    obj
    for obj in vars(errors).values()
    if inspect.isclass(obj) and obj.__module__ == errors.__name__
]


def test_no_module_outside_errors_defines_an_exception_class() -> None:
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.name == "errors.py" and path.parent == PACKAGE_DIR:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [ast.unparse(base).split(".")[-1] for base in node.bases]
            if any(base.endswith(("Error", "Exception", "Failed")) for base in bases):
                offenders.append(f"{path.relative_to(PACKAGE_DIR)}:{node.name}")
    assert not offenders, f"error classes outside errors.py: {offenders}"


@pytest.mark.parametrize("cls", TREE, ids=lambda c: c.__name__)
def test_every_error_is_rooted_and_drawn_in_the_docstring(cls: type[BaseException]) -> None:
    assert issubclass(cls, errors.StreamIndexerError)
    assert cls.__name__ in (errors.__doc__ or "")
    assert cls.__name__ in errors.__all__


def test_retriable_follows_the_transient_branch() -> None:
    for cls in TREE:
        assert cls.retriable == issubclass(cls, errors.TransientError), cls.__name__
    assert errors.ProducerBackpressureError.error_class == "producer_backpressure"
    assert errors.InvalidEventError([("price", "bad")]).error_class == "schema_invalid"


def test_old_import_locations_still_work() -> None:
    from stream_indexer.app.migrate import MigrationError
    from stream_indexer.app.startup import StartupAbortedError
    from stream_indexer.cli.dlq_run import OperationFailed
    from stream_indexer.devtools.devstack._proc import ChildExitedError
    from stream_indexer.producer import (
        InvalidEventError,
        ProducerBackpressureError,
        ProducerClosedError,
        ProducerDeliveryError,
    )
    from stream_indexer.repair.replay import ReplayError

    assert (MigrationError, StartupAbortedError, OperationFailed, ReplayError) == (
        errors.MigrationError,
        errors.StartupAbortedError,
        errors.OperationFailed,
        errors.ReplayError,
    )
    assert (InvalidEventError, ProducerBackpressureError) == (
        errors.InvalidEventError,
        errors.ProducerBackpressureError,
    )
    assert (ProducerClosedError, ProducerDeliveryError) == (
        errors.ProducerClosedError,
        errors.ProducerDeliveryError,
    )
    assert issubclass(ChildExitedError, RuntimeError)  # devstack callers still catch it so
