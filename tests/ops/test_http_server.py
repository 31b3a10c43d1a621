"""ObservabilityServer on a real aiohttp socket (port 0) with a scripted probe."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from stream_indexer.observability.http_server import ObservabilityServer
from stream_indexer.observability.metrics import Metrics


@dataclass
class FakeProbe:
    live: tuple[bool, str] = (True, "consume loop made progress 0.1s ago")
    ready: tuple[bool, str] = (True, "4 partitions assigned, circuit closed")
    raise_on_ready: bool = False

    def liveness(self) -> tuple[bool, str]:
        return self.live

    def readiness(self) -> tuple[bool, str]:
        if self.raise_on_ready:
            raise RuntimeError("probe bug")
        return self.ready


def _metrics() -> Metrics:
    metrics = Metrics(CollectorRegistry())
    metrics.success.inc(3)
    metrics.failure.labels(error_class="schema_invalid").inc()
    metrics.consumer_lag.labels(topic="listings.changes", partition="0").set(42)
    metrics.freshness.observe(0.3)
    metrics.bulk_duration.observe(0.02)
    metrics.dlq_writes.labels(store="postgres", error_class="schema_invalid").inc()
    metrics.circuit_state.set(0)
    metrics.build_info.info({"version": "0.1.0"})
    return metrics


async def _get(port: int, path: str, accept: str | None = None) -> tuple[int, str, str]:
    headers = {"Accept": accept} if accept else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as resp,
    ):
        return resp.status, resp.headers["Content-Type"], await resp.text()


async def test_metrics_exposes_registry_in_prometheus_text_format() -> None:
    async with ObservabilityServer("127.0.0.1", 0, _metrics().registry, FakeProbe()) as server:
        status, ctype, body = await _get(server.port, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    assert "opensearch_indexing_success_total 3.0" in body
    assert 'stream_indexer_consumer_lag{partition="0",topic="listings.changes"} 42.0' in body


async def test_metrics_negotiates_openmetrics_for_prometheus() -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    async with ObservabilityServer("127.0.0.1", 0, _metrics().registry, FakeProbe()) as server:
        status, ctype, body = await _get(server.port, "/metrics", accept)
    assert status == 200
    assert ctype.startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")


async def test_healthz_and_readyz_report_the_probe() -> None:
    probe = FakeProbe()
    async with ObservabilityServer("127.0.0.1", 0, CollectorRegistry(), probe) as server:
        status, ctype, body = await _get(server.port, "/healthz")
        assert (status, ctype) == (200, "application/json; charset=utf-8")
        assert '"status": "ok"' in body and "made progress" in body

        probe.live = (False, "lag 120 and no commit for 300s")
        status, _, body = await _get(server.port, "/healthz")
        assert status == 503 and "no commit for 300s" in body

        status, _, body = await _get(server.port, "/readyz")
        assert status == 200 and "circuit closed" in body

        probe.ready = (False, "sink circuit open")
        status, _, body = await _get(server.port, "/readyz")
        assert status == 503 and '"status": "fail"' in body and "circuit open" in body


async def test_probe_that_raises_reads_as_failing() -> None:
    probe = FakeProbe(raise_on_ready=True)
    async with ObservabilityServer("127.0.0.1", 0, CollectorRegistry(), probe) as server:
        status, _, body = await _get(server.port, "/readyz")
    assert status == 503
    assert "RuntimeError: probe bug" in body


async def test_unknown_path_is_404() -> None:
    async with ObservabilityServer("127.0.0.1", 0, CollectorRegistry(), FakeProbe()) as server:
        status, _, _ = await _get(server.port, "/")
    assert status == 404


async def test_stop_is_idempotent_and_closes_the_port() -> None:
    server = ObservabilityServer("127.0.0.1", 0, CollectorRegistry(), FakeProbe())
    with pytest.raises(RuntimeError):
        _ = server.port
    await server.start()
    await server.start()  # second start is a no-op
    port = server.port
    assert port > 0
    await server.stop()
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await _get(port, "/healthz")


async def test_busy_port_raises_oserror() -> None:
    async with ObservabilityServer("127.0.0.1", 0, CollectorRegistry(), FakeProbe()) as first:
        second = ObservabilityServer("127.0.0.1", first.port, CollectorRegistry(), FakeProbe())
        with pytest.raises(OSError):
            await second.start()
        await second.stop()


async def test_promtool_check_metrics_accepts_a_real_scrape(promtool: str) -> None:
    async with ObservabilityServer("127.0.0.1", 0, _metrics().registry, FakeProbe()) as server:
        status, _, body = await _get(server.port, "/metrics")
    assert status == 200
    proc = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(body.encode())
    assert proc.returncode == 0, out.decode()


async def test_probe_bodies_never_carry_a_secret() -> None:
    """A probe detail may quote a driver error; the body masks it as logs do."""
    from stream_indexer.masking import remember

    remember(["probe-s3cret"])
    probe = FakeProbe(
        live=(False, "sink down: postgresql://u:pw@db/app"),
        ready=(False, "sasl login failed for probe-s3cret"),
    )
    async with ObservabilityServer("127.0.0.1", 0, _metrics().registry, probe) as server:
        for path in ("/healthz", "/readyz"):
            status, _type, body = await _get(server.port, path)
            assert status == 503
            assert "probe-s3cret" not in body and ":pw@" not in body
