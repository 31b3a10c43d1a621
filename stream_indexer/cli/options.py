"""CLI flags shared by commands that load settings: each flag overrides one setting."""

from __future__ import annotations

import argparse
from typing import Any

from stream_indexer.settings import Settings, load_settings

#: flag -> dotted setting; flags override environment variables
SETTING_FLAGS: dict[str, str] = {
    "--bootstrap-servers": "kafka.bootstrap_servers",
    "--topic": "kafka.topic",
    "--group-id": "kafka.group_id",
    "--dlq-topic": "dlq.topic",
    "--opensearch-hosts": "opensearch.hosts",
    "--index": "opensearch.index",
    "--postgres-dsn": "postgres.dsn",
    "--metrics-port": "metrics.port",
    "--log-level": "log.level",
    "--log-format": "log.format",
}


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (override STREAM_INDEXER_* variables)")
    for flag, dotted in SETTING_FLAGS.items():
        env = "STREAM_INDEXER_" + dotted.upper().replace(".", "__")
        group.add_argument(flag, dest=_dest(flag), default=None, help=f"overrides {env}")


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {
        dotted: getattr(args, _dest(flag), None) for flag, dotted in SETTING_FLAGS.items()
    }
    overrides.update(extra)
    return load_settings(overrides)


def _dest(flag: str) -> str:
    return "setting_" + flag.lstrip("-").replace("-", "_")
