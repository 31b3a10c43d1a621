"""docker-compose.yml: real settings, pinned images, existing files, the chart's rules/dashboard."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from stream_indexer.cli import build_parser
from stream_indexer.settings import MetricsSettings, Settings, load_settings

from .facts import (
    COMPOSE_FILE,
    DASHBOARD_FILE,
    REPO,
    RULES_FILE,
    env_from_mapping,
    setting_env_names,
)


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return doc


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _indexer_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in _services().items() if "build" in svc}


def _duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text))


def test_every_stream_indexer_env_var_is_a_real_setting() -> None:
    known = setting_env_names()
    for name, svc in _services().items():
        env = env_from_mapping(svc.get("environment"))
        unknown = {k for k in env if k.startswith("STREAM_INDEXER_")} - known
        assert not unknown, f"{name}: {unknown} are not settings"


def test_indexer_environment_loads_as_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = env_from_mapping(_services()["indexer"]["environment"])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.opensearch.hosts == ["http://opensearch:9200"]
    assert settings.kafka.bootstrap_servers == "kafka:9092"


def test_images_are_pinned() -> None:
    for name, svc in _services().items():
        image = svc["image"]
        if "build" in svc:
            assert image == "stream-indexer:local", name
            continue
        repo, _, tag = image.rpartition(":")
        assert repo and tag and "/" not in tag, f"{name}: {image} has no explicit tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"


def test_kafka_is_the_official_kraft_image() -> None:
    kafka = _services()["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]


def test_commands_are_valid_cli_invocations() -> None:
    parser = build_parser()
    commands = {name: svc["command"] for name, svc in _indexer_services().items()}
    assert commands["indexer"] == ["run"]
    assert commands["migrate"][:2] == ["migrate", "up"]
    assert commands["loadgen"][0] == "loadgen"
    for name, argv in commands.items():
        args = parser.parse_args(argv)
        assert callable(args.handler), name


def test_two_indexer_replicas_with_a_grace_period_above_the_shutdown_deadline() -> None:
    indexer = _services()["indexer"]
    assert indexer["deploy"]["replicas"] == 2
    env = env_from_mapping(indexer["environment"])
    deadline = float(env.get("STREAM_INDEXER_SHUTDOWN_TIMEOUT_S", Settings().shutdown_timeout_s))
    assert _duration_s(indexer["stop_grace_period"]) > deadline
    deps = indexer["depends_on"]
    assert deps["migrate"]["condition"] == "service_completed_successfully"


def test_prometheus_scrapes_the_metrics_port_as_job_stream_indexer() -> None:
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "stream-indexer"]
    port = MetricsSettings().port
    env = env_from_mapping(_services()["indexer"]["environment"])
    assert int(env["STREAM_INDEXER_METRICS__PORT"]) == port
    assert job["dns_sd_configs"][0]["port"] == port
    assert job["dns_sd_configs"][0]["names"] == ["indexer"]
    assert 'job="stream-indexer"' in RULES_FILE.read_text()


def test_mounted_files_exist_and_are_the_charts_rules_and_dashboard() -> None:
    mounted = {}
    for name, svc in _services().items():
        for volume in svc.get("volumes", []):
            source, _, target = str(volume).partition(":")
            if source.startswith("./"):
                path = (REPO / source).resolve()
                assert path.exists(), f"{name} mounts missing {source}"
                mounted[target.removesuffix(":ro")] = path
    assert mounted["/etc/prometheus/rules/stream-indexer.yml"] == RULES_FILE.resolve()
    assert mounted["/var/lib/grafana/dashboards/stream-indexer.json"] == DASHBOARD_FILE.resolve()
    provisioning = REPO / "deploy/grafana/provisioning/dashboards/stream-indexer.yml"
    provider = yaml.safe_load(provisioning.read_text())["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_docker_compose_config_when_docker_compose_is_installed() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
