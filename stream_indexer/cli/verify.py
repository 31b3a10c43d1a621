"""`stream-indexer verify`: compare the index with the source table, optionally repair it.

Exit codes: 0 no drift (or, with `--repair`, every drifted listing repaired), 1 drift found
(or left after the repair), or the check could not run (a store unreachable: one line on
stderr), 2 bad configuration (`cli.main`). A summary goes to stdout (`--json` for scripts);
progress goes to stderr: a bar on a terminal, otherwise one structured log line every few
seconds. The run's gauges are pushed to `VERIFY__PUSHGATEWAY_URL` when it is set.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry

from stream_indexer.cli.dlq_args import positive_int
from stream_indexer.cli.dlq_run import FAILURES, emit_json
from stream_indexer.cli.options import add_setting_flags, settings_from_args
from stream_indexer.masking import mask_text
from stream_indexer.observability.logging_setup import configure_logging
from stream_indexer.observability.metrics import VERIFY_METRIC_PREFIXES, Metrics
from stream_indexer.observability.pushgateway import push
from stream_indexer.repair.progress import Progress
from stream_indexer.repair.verify import MAX_SAMPLE, Verifier, VerifyOptions
from stream_indexer.repair.verify_report import VerifyReport
from stream_indexer.settings import Settings

log = logging.getLogger("stream_indexer.verify")

PUSH_JOB = "stream-indexer-verify"
#: seconds between progress log lines when stderr is not a terminal
LOG_EVERY_S = 5.0


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "verify",
        help="compare the index with the source table (drift check), optionally repair it",
        description=(
            "Compare the OpenSearch index with the source table: listings missing from the "
            "index, extra documents, documents behind their row's version, fields that "
            "differ. Exit 0: no drift; 1: drift found (with --repair: drift left); "
            "2: bad configuration."
        ),
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--sample",
        type=_sample_size,
        metavar="N",
        help=f"check N random source rows and N random live documents (default: "
        f"STREAM_INDEXER_VERIFY__SAMPLE, 1000; at most {MAX_SAMPLE})",
    )
    scope.add_argument(
        "--full", action="store_true", help="check every source row and every document"
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="rewrite drifted listings from the source (versioned: never over a newer one)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_setting_flags(parser)
    parser.set_defaults(handler=handle)


def _sample_size(text: str) -> int:
    value = positive_int(text)
    if value > MAX_SAMPLE:
        raise argparse.ArgumentTypeError(f"at most {MAX_SAMPLE}")
    return value


def handle(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    configure_logging(settings.log.level, settings.log.format)
    options = VerifyOptions(
        mode="full" if args.full else "sample",
        sample=args.sample or settings.verify.sample,
        repair=args.repair,
    )
    progress = VerifyProgress()
    verifier = Verifier(settings, on_start=progress.start, on_progress=progress.update)
    try:
        report = asyncio.run(verifier.run(options))
    except FAILURES as exc:
        text = mask_text(" ".join(str(exc).split())) or type(exc).__name__
        print(f"stream-indexer verify: {type(exc).__name__}: {text}", file=sys.stderr)
        return 1
    finally:
        progress.close()
    publish(settings, report)
    if args.json:
        emit_json(report.to_json())
    else:
        for line in report.lines():
            print(line)
    return report.exit_code


def publish(settings: Settings, report: VerifyReport) -> Metrics:
    """The run's gauges, pushed to the Pushgateway when one is configured."""
    metrics = Metrics(CollectorRegistry())
    report.export(metrics)
    url = settings.verify.pushgateway_url
    if url is not None:
        try:
            push(
                url,
                PUSH_JOB,
                metrics.registry,
                prefixes=VERIFY_METRIC_PREFIXES,
                grouping_key={"index": settings.opensearch.index},
                timeout_s=settings.verify.pushgateway_timeout_s,
            )
        except OSError as exc:
            # the drift verdict stands; a missing push shows as verify not having run
            log.warning("could not push the verify metrics to the Pushgateway: %s", exc)
    return metrics


class VerifyProgress:
    """A bar on a terminal; otherwise a log line every `LOG_EVERY_S` seconds."""

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._total = 0
        self.rows = 0
        self.docs = 0
        self._started = time.monotonic()
        self._logged_at = self._started

    def start(self, total: int) -> None:
        self._total = total
        self._bar = Progress(total, "verify")

    def update(self, rows: int, docs: int) -> None:
        self.rows += rows
        self.docs += docs
        if self._bar is not None and self._bar.enabled:
            self._bar.update(rows)
            return
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            elapsed = now - self._started
            rate = self.rows / elapsed if elapsed > 0 else 0.0
            eta = (self._total - self.rows) / rate if rate > 0 and self._total else None
            log.info(
                "verify progress: %d/%d source rows, %d index documents",
                self.rows,
                self._total,
                self.docs,
                extra={
                    "source_rows": self.rows,
                    "source_rows_total": self._total,
                    "index_documents": self.docs,
                    "rows_per_s": round(rate, 1),
                    "eta_s": None if eta is None else round(max(eta, 0.0), 1),
                },
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


__all__ = ["PUSH_JOB", "VerifyProgress", "handle", "publish", "register"]
