"""What to do when a test's tool is missing: skip on a developer's machine, fail in CI.

CI (`CI=true`) installs every tool these tests use (`.ci/run` and the dev extras), so a missing
one there is a broken install step, never a reason to run fewer tests.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(what: str, install: str) -> NoReturn:
    """Skip (developer machine) or fail (CI) because `what` is not installed.

    Also usable at import time (parametrizing on the tool's data): the whole module is skipped,
    or is a collection error in CI.
    """
    message = f"{what} is not installed ({install})"
    if in_ci():
        pytest.fail(f"{message}; CI must run every ops test", pytrace=False)
    pytest.skip(message, allow_module_level=True)
