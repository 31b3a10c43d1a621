"""A real Prometheus server (Debian's `prometheus` binary) for tests: scrape, rules, HTTP API.

    async with PrometheusServer(tmp_path, targets=["127.0.0.1:9108"], rule_files=[rules]) as prom:
        value = await prom.wait_for('opensearch_indexing_success_total', lambda r: bool(r))

Scrapes and evaluates every second. Runs on a free loopback port with its TSDB in the given
directory, and is stopped (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import yaml

JOB = "stream-indexer"


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusError(Exception):
    """Prometheus did not start, or its API answered with an error."""


class PrometheusServer:
    """One Prometheus process scraping `targets` as job `stream-indexer` with `rule_files`."""

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        rule_files: Sequence[Path] = (),
        interval_s: int = 1,
        binary: str | None = None,
    ) -> None:
        self._workdir = workdir
        self._targets = list(targets)
        self._rule_files = [str(Path(p).resolve()) for p in rule_files]
        self._interval = f"{interval_s}s"
        self._binary = binary or prometheus_binary()
        self._proc: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 60.0) -> None:
        if self._binary is None:
            raise PrometheusError("the prometheus binary is not installed")
        config = {
            "global": {"scrape_interval": self._interval, "evaluation_interval": self._interval},
            "rule_files": self._rule_files,
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": self._targets}]},
            ],
        }
        config_file = self._workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.port = _free_port()
        self._log = (self._workdir / "prometheus.log").open("wb")
        self._proc = await asyncio.create_subprocess_exec(
            self._binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self._workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._session = aiohttp.ClientSession()
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.returncode is not None:
                raise PrometheusError(f"prometheus exited: {self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with self._session.get(f"{self.url}/-/ready") as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus not ready in {timeout_s}s: {self.log_tail()}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def log_tail(self, lines: int = 20) -> str:
        path = self._workdir / "prometheus.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, raises PrometheusError on an error status."""
        assert self._session is not None, "not started"
        async with self._session.get(f"{self.url}/api/v1/{path}", params=params) as resp:
            body = await resp.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (or scalar wrapped in a list)."""
        data = await self.api("query", query=expr)
        result = data["result"]
        return result if isinstance(result, list) else [{"value": result}]

    async def evaluated_rules(self, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """All loaded rules once each has been evaluated at least once (health not unknown)."""
        deadline = time.monotonic() + timeout_s
        while True:
            groups = (await self.api("rules"))["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            if rules and all(rule["health"] != "unknown" for rule in rules):
                return rules
            if time.monotonic() > deadline:
                raise TimeoutError(f"rules not evaluated in {timeout_s}s: {rules}")
            await asyncio.sleep(0.2)

    async def wait_for_alert(self, name: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """The first active (pending or firing) alert called `name`."""
        deadline = time.monotonic() + timeout_s
        while True:
            for alert in (await self.api("alerts"))["alerts"]:
                if alert["labels"].get("alertname") == name:
                    found: dict[str, Any] = alert
                    return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"alert {name} never became active")
            await asyncio.sleep(0.2)

    async def wait_for(
        self,
        expr: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout_s: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Query `expr` until `predicate(result)` holds; the deadline only bounds a failure."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = await self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr!r} never satisfied the predicate; last: {result}")
            await asyncio.sleep(0.2)
