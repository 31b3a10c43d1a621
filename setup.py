"""Packaging glue pyproject.toml cannot express: ship the top-level `migrations/` directory
inside the package as `stream_indexer.migrations`, next to auto-discovered subpackages."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["stream_indexer*"]), "stream_indexer.migrations"],
    package_dir={"stream_indexer.migrations": "migrations"},
)
