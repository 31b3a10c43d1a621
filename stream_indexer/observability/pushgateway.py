"""Observability: push a short-lived job's metrics to a Prometheus Pushgateway.

A job such as `stream-indexer verify` ends before any scrape could reach it, so it pushes
its gauges instead (`VERIFY__PUSHGATEWAY_URL`). Only the families the job owns are pushed:
the pipeline's own metrics, all zero in a job, would otherwise show up under the job's
name next to the indexer's. A push replaces the job's earlier push (HTTP PUT per grouping
key), which is what a gauge of "the last run" wants. User info in the URL becomes basic auth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import basic_auth_handler, default_handler, push_to_gateway
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class _Only(Collector):
    """The families of `registry` whose names start with one of `prefixes`."""

    def __init__(self, registry: CollectorRegistry, prefixes: tuple[str, ...]) -> None:
        self._registry = registry
        self._prefixes = prefixes

    def collect(self) -> Iterable[Metric]:
        return [f for f in self._registry.collect() if f.name.startswith(self._prefixes)]


def push(
    url: str,
    job: str,
    registry: CollectorRegistry,
    *,
    prefixes: tuple[str, ...],
    grouping_key: Mapping[str, str] | None = None,
    timeout_s: float = 10.0,
) -> None:
    """PUT the matching families of `registry` to the Pushgateway at `url` (raises OSError
    subclasses when it cannot be reached or refuses)."""
    selected = CollectorRegistry(auto_describe=False)
    selected.register(_Only(registry, prefixes))
    address, handler = _address_and_handler(url)
    push_to_gateway(
        address,
        job=job,
        registry=selected,
        grouping_key=dict(grouping_key or {}),
        timeout=timeout_s,
        handler=handler,
    )


def _address_and_handler(url: str) -> tuple[str, Callable[..., Any]]:
    parts = urlsplit(url)
    if parts.username is None:
        return url, default_handler
    user, password = unquote(parts.username), unquote(parts.password or "")
    netloc = parts.netloc.rpartition("@")[2]
    address = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def handler(
        url: str, method: str, timeout: float | None, headers: list[Any], data: bytes
    ) -> Callable[[], None]:
        return basic_auth_handler(url, method, timeout, headers, data, user, password)

    return address, handler


__all__ = ["push"]
