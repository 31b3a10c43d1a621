"""helm/stream-indexer: values and templates checked as text, then rendered by helm_python.

Schema validation of every rendered manifest is in test_helm_kube_schemas.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from stream_indexer.cli import build_parser
from stream_indexer.cli.reindex import EXIT_BUSY, read_mapping
from stream_indexer.settings import MetricsSettings, Settings, load_settings

from . import helm_render
from .facts import CHART, DASHBOARD_FILE, REPO, RULES_FILE, setting_env_names

TEMPLATES = CHART / "templates"
ENV_TOKEN = re.compile(r"\bSTREAM_INDEXER_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_%])")


def _values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def _template(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def _config_env(config: dict[str, Any]) -> dict[str, str]:
    """What templates/_helpers.tpl `stream-indexer.configData` makes of `config`."""
    env: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            for field, field_value in value.items():
                if field_value is not None:
                    env[f"STREAM_INDEXER_{key.upper()}__{field.upper()}"] = _env_str(field_value)
        elif value is not None:
            env[f"STREAM_INDEXER_{key.upper()}"] = _env_str(value)
    return env


def _env_str(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# --- values.yaml and templates as text (always run) ------------------------------------------


def test_values_config_and_secret_env_are_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = _values()
    env = _config_env(values["config"]) | values["secretEnv"]
    unknown = set(env) - setting_env_names()
    assert not unknown, f"not settings: {unknown}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.kafka.topic == values["config"]["kafka"]["topic"]


def test_values_match_service_defaults() -> None:
    values = _values()
    assert values["config"]["metrics"]["port"] == MetricsSettings().port
    assert values["config"]["shutdown_timeout_s"] == Settings().shutdown_timeout_s
    assert values["terminationGraceMarginSeconds"] > 0
    assert values["replicaCount"] <= values["topicPartitions"]
    assert values["autoscaling"]["maxReplicas"] <= values["topicPartitions"]
    assert values["keda"]["maxReplicaCount"] <= values["topicPartitions"]
    assert values["image"]["tag"] != "latest"


def test_every_env_name_in_templates_and_docs_is_a_setting() -> None:
    known = setting_env_names()
    sources = [*TEMPLATES.iterdir(), CHART / "README.md", REPO / "docs" / "operations.md"]
    for path in sources:
        unknown = set(ENV_TOKEN.findall(path.read_text(encoding="utf-8"))) - known
        assert not unknown, f"{path.relative_to(REPO)} names {unknown}"


def test_the_chart_has_every_required_template() -> None:
    kinds = " ".join(_template(p.name) for p in TEMPLATES.glob("*.yaml"))
    for kind in (
        "Deployment",
        "ConfigMap",
        "Secret",
        "Job",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ScaledObject",
        "NetworkPolicy",
        "ServiceAccount",
        "CronJob",
        "PodMonitor",
    ):
        assert f"kind: {kind}\n" in kinds, kind
    assert (TEMPLATES / "NOTES.txt").is_file()
    assert (CHART / "README.md").is_file()
    json.loads((CHART / "values.schema.json").read_text())


def test_probes_use_the_service_endpoints_on_the_metrics_port() -> None:
    deployment = _template("deployment.yaml")
    assert re.search(r"livenessProbe:\s+httpGet:\s+path: /healthz\s+port: metrics", deployment)
    assert re.search(r"readinessProbe:\s+httpGet:\s+path: /readyz\s+port: metrics", deployment)
    assert "containerPort: {{ $port }}" in deployment
    assert "terminationGracePeriodSeconds: {{ add $shutdown" in deployment
    assert "podAntiAffinity" in deployment


def test_files_the_templates_read_exist_and_are_the_shared_ones() -> None:
    referenced = set()
    for path in TEMPLATES.iterdir():
        referenced |= set(re.findall(r'\.Files\.Get "([^"]+)"', path.read_text()))
    assert referenced == {"files/prometheus-rules.yml", "files/grafana-dashboard.json"}
    for name in referenced:
        assert (CHART / name).is_file()


def test_migrations_job_is_a_pre_install_and_pre_upgrade_hook() -> None:
    job = _template("migrations-job.yaml")
    assert job.count("helm.sh/hook: pre-install,pre-upgrade") == 2  # hook Secret and Job
    assert 'args: ["migrate", "up", "--path", "/app/migrations"]' in job
    args = build_parser().parse_args(["migrate", "up", "--path", "/app/migrations"])
    assert callable(args.handler)


def test_partition_bound_is_enforced_with_fail() -> None:
    helpers = _template("_helpers.tpl")
    for value in ("replicaCount", "autoscaling.maxReplicas", "keda.maxReplicaCount"):
        assert re.search(rf"fail \(printf \"{re.escape(value)} \(%d\) is above", helpers), value
    for name in ("hpa.yaml", "scaledobject.yaml", "deployment.yaml"):
        assert 'include "stream-indexer.validate"' in _template(name)


# --- rendered by Helm (helm_python; skipped without it, failing in CI) -----------------------

ALL_ON = {
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    },
    "keda": {"enabled": True},
}


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def test_rendered_env_is_all_real_settings_and_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    kinds = _by_kind(helm_render.render())
    (config,) = [c for c in kinds["ConfigMap"] if c["metadata"]["name"].endswith("-config")]
    secrets = [s for s in kinds["Secret"] if not s["metadata"].get("annotations")]
    (job,) = kinds["Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    job_env = {e["name"]: e["value"] for e in container["env"]}
    env = config["data"] | secrets[0]["stringData"]
    assert job_env == config["data"]
    assert set(env) <= setting_env_names()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert load_settings().metrics.port == _values()["config"]["metrics"]["port"]


def test_rendered_deployment_probes_grace_and_spread() -> None:
    kinds = _by_kind(helm_render.render({"replicaCount": 3}))
    (deployment,) = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 3
    assert container["ports"] == [
        {"name": "metrics", "containerPort": MetricsSettings().port, "protocol": "TCP"}
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert pod["terminationGracePeriodSeconds"] > Settings().shutdown_timeout_s
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert "podAntiAffinity" in pod["affinity"]
    (job,) = kinds["Job"]
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= job_labels.items(), "migration pods would join the Service"


def test_rendered_monitoring_objects_use_the_shared_files() -> None:
    kinds = _by_kind(helm_render.render(ALL_ON))
    (rule,) = kinds["PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(RULES_FILE.read_text())
    (monitor,) = kinds["ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    (dashboard,) = [c for c in kinds["ConfigMap"] if c["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["stream-indexer.json"]) == json.loads(
        DASHBOARD_FILE.read_text()
    )
    (scaled,) = kinds["ScaledObject"]
    assert scaled["spec"]["maxReplicaCount"] <= _values()["topicPartitions"]
    assert "replicas" not in kinds["Deployment"][0]["spec"]
    assert "HorizontalPodAutoscaler" not in kinds


def test_runbook_base_url_prefixes_every_runbook_link() -> None:
    values = {"metrics": {"prometheusRule": {"enabled": True, "runbookBaseUrl": "https://x/docs/"}}}
    (rule,) = _by_kind(helm_render.render(values))["PrometheusRule"]
    urls = [
        r["annotations"]["runbook_url"]
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if "alert" in r
    ]
    assert urls and all(u.startswith("https://x/docs/runbook.md#") for u in urls)


def test_existing_secret_replaces_the_charts_secret() -> None:
    kinds = _by_kind(helm_render.render({"existingSecret": "indexer-creds"}))
    assert "Secret" not in kinds
    (deployment,) = kinds["Deployment"]
    env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert {"secretRef": {"name": "indexer-creds"}} in env_from


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 7}, "replicaCount (7) is above topicPartitions (6)"),
        ({"autoscaling": {"enabled": True, "maxReplicas": 9}}, "maxReplicas (9) is above"),
        ({"keda": {"enabled": True, "maxReplicaCount": 12}}, "maxReplicaCount (12) is above"),
        ({"keda": {"enabled": True}, "autoscaling": {"enabled": True}}, "not both"),
        ({"image": {"tag": "latest"}}, "tag"),
        ({"secretEnv": {"POSTGRES_DSN": "x"}}, "POSTGRES_DSN"),
    ],
)
def test_invalid_values_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_render.RenderError, match=re.escape(message)):
        helm_render.render(values)


def test_verify_cronjob_is_off_by_default_and_runs_verify_with_its_args() -> None:
    assert "CronJob" not in _by_kind(helm_render.render())
    values = {
        "verify": {
            "cronjob": {
                "enabled": True,
                "schedule": "*/30 * * * *",
                "args": ["--full", "--repair"],
                "pushgatewayUrl": "http://pushgateway.monitoring:9091",
            }
        }
    }
    kinds = _by_kind(helm_render.render(values))
    (cron,) = kinds["CronJob"]
    assert cron["spec"]["schedule"] == "*/30 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["verify", "--full", "--repair"]
    args = build_parser().parse_args(container["args"])
    assert args.full and args.repair and callable(args.handler)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"STREAM_INDEXER_VERIFY__PUSHGATEWAY_URL": "http://pushgateway.monitoring:9091"}
    assert set(env) <= setting_env_names()
    (deployment,) = kinds["Deployment"]
    assert (
        container["envFrom"] == deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    )
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = job["template"]["metadata"]["labels"]
    assert not selector.items() <= labels.items(), "verify pods would join the Service"
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_default_verify_args_parse_as_a_sample() -> None:
    args = build_parser().parse_args(["verify", *_values()["verify"]["cronjob"]["args"]])
    assert args.sample == 1000 and not args.full and not args.repair


def test_hpa_renders_within_the_partition_bound() -> None:
    kinds = _by_kind(helm_render.render({"autoscaling": {"enabled": True, "maxReplicas": 6}}))
    (hpa,) = kinds["HorizontalPodAutoscaler"]
    assert hpa["spec"]["maxReplicas"] == 6


def _pod_specs(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {kind: kinds[kind][0]["spec"]["template"]["spec"] for kind in ("Deployment", "Job")}


def test_no_tls_secret_mounts_nothing() -> None:
    for pod in _pod_specs(_by_kind(helm_render.render())).values():
        assert all("secret" not in volume for volume in pod.get("volumes", []))
        mounts = pod["containers"][0].get("volumeMounts", [])
        assert all(mount["name"] != "tls" for mount in mounts)


def test_tls_secret_is_mounted_read_only_where_the_settings_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = "/var/run/indexer-tls/ca.crt"
    values = {
        "tls": {"secretName": "indexer-tls", "mountPath": "/var/run/indexer-tls"},
        "config": {
            "kafka": {
                "bootstrap_servers": "kafka:9093",
                "security_protocol": "SSL",
                "ssl_cafile": ca,
            },
            "opensearch": {"hosts": "https://opensearch:9200", "ca_certs": ca},
        },
        "secretEnv": {
            "STREAM_INDEXER_POSTGRES__DSN": "postgresql://indexer:pw@pg:5432/indexer"
            f"?sslmode=verify-full&sslrootcert={ca}"
        },
    }
    kinds = _by_kind(helm_render.render(values))
    for kind, pod in _pod_specs(kinds).items():
        volumes = [v for v in pod["volumes"] if v["name"] == "tls"]
        assert volumes == [
            {"name": "tls", "secret": {"secretName": "indexer-tls", "defaultMode": 0o440}}
        ], kind
        (container,) = pod["containers"]
        mounts = [m for m in container["volumeMounts"] if m["name"] == "tls"]
        assert mounts == [{"name": "tls", "mountPath": "/var/run/indexer-tls", "readOnly": True}]
    (config,) = [c for c in kinds["ConfigMap"] if c["metadata"]["name"].endswith("-config")]
    for key, value in config["data"].items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.kafka.ssl_cafile == ca
    assert settings.opensearch.ca_certs == ca


@pytest.mark.parametrize(
    "tls",
    [{"mountPath": "relative/tls"}, {"defaultMode": 1000}, {"secretname": "typo"}],
)
def test_invalid_tls_values_are_refused(tls: dict[str, Any]) -> None:
    with pytest.raises(helm_render.RenderError):
        helm_render.render({"tls": {"secretName": "indexer-tls"} | tls})


# --- the reindex Job ------------------------------------------------------------------------

NEW_MAPPING = {
    "settings": {"number_of_shards": 1},
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "id": {"type": "long"},
            "version": {"type": "long"},
            "deleted": {"type": "boolean"},
            "title": {"type": "text", "analyzer": "english"},
        },
    },
}


def _reindex(values: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return _by_kind(helm_render.render({"reindex": {"job": {"enabled": True} | values}}))


def _reindex_job(kinds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (job,) = [j for j in kinds["Job"] if j["metadata"]["name"].endswith("-reindex")]
    return job


def _mounted_mapping(kinds: dict[str, list[dict[str, Any]]], pod: dict[str, Any], path: str) -> str:
    """The text the container reads at `path`: the ConfigMap key its volume mounts there."""
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    name = volume["configMap"]["name"]
    (config,) = [c for c in kinds["ConfigMap"] if c["metadata"]["name"] == name]
    text: str = config["data"][path.removeprefix(mount["mountPath"] + "/")]
    return text


def test_reindex_job_is_off_by_default() -> None:
    kinds = _by_kind(helm_render.render(ALL_ON))
    assert [j["metadata"]["name"] for j in kinds["Job"]] == ["demo-stream-indexer-migrate"]
    assert "PodMonitor" not in kinds


def test_reindex_job_runs_reindex_run_with_its_values(tmp_path: Any) -> None:
    kinds = _reindex({"maxRate": 800, "graceS": 45.5, "source": "topic", "mapping": NEW_MAPPING})
    job = _reindex_job(kinds)
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["activeDeadlineSeconds"] == 86400
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.reindex_action) == ("reindex", "run")
    assert (args.source, args.max_rate, args.grace_s) == ("topic", 800.0, 45.5)
    assert callable(args.handler)
    # the --mapping file is the ConfigMap the chart made, and the command accepts it
    path = tmp_path / "mapping.json"
    path.write_text(_mounted_mapping(kinds, pod, args.mapping))
    assert read_mapping(str(path)) == NEW_MAPPING
    # the same settings as the pods, none of their selector labels, the metrics port named
    (deployment,) = kinds["Deployment"]
    indexer = deployment["spec"]["template"]["spec"]
    assert container["envFrom"] == indexer["containers"][0]["envFrom"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= labels.items(), "reindex pods would join the Service"
    assert container["ports"] == [
        {"name": "metrics", "containerPort": MetricsSettings().port, "protocol": "TCP"}
    ]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > Settings().shutdown_timeout_s


def test_reindex_job_fails_at_once_on_bad_configuration_and_a_busy_lock() -> None:
    job = _reindex_job(_reindex({}))
    rules = job["spec"]["podFailurePolicy"]["rules"]
    (fail,) = [r for r in rules if r["action"] == "FailJob"]
    assert fail["onExitCodes"]["operator"] == "In"
    assert sorted(fail["onExitCodes"]["values"]) == [2, EXIT_BUSY]
    assert fail["onExitCodes"]["containerName"] == "reindex"
    (ignore,) = [r for r in rules if r["action"] == "Ignore"]
    assert ignore["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]


def test_reindex_job_defaults_pass_no_flags_the_settings_own() -> None:
    kinds = _reindex({})
    (container,) = _reindex_job(kinds)["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["reindex", "run", "--source", "postgres"]
    assert not any(c["metadata"]["name"].endswith("-reindex-mapping") for c in kinds["ConfigMap"])
    args = build_parser().parse_args(container["args"])
    assert args.max_rate is None and args.grace_s is None and args.mapping is None


def test_reindex_job_mapping_as_json_text_or_from_an_existing_config_map(tmp_path: Any) -> None:
    text = json.dumps(NEW_MAPPING)  # what --set-file reindex.job.mapping=body.json gives
    kinds = _reindex({"mapping": text})
    pod = _reindex_job(kinds)["spec"]["template"]["spec"]
    args = build_parser().parse_args(pod["containers"][0]["args"])
    path = tmp_path / "mapping.json"
    path.write_text(_mounted_mapping(kinds, pod, args.mapping))
    assert read_mapping(str(path)) == NEW_MAPPING

    kinds = _reindex({"mappingConfigMap": "listings-v2", "mappingKey": "body.json"})
    pod = _reindex_job(kinds)["spec"]["template"]["spec"]
    args = build_parser().parse_args(pod["containers"][0]["args"])
    assert args.mapping.endswith("/body.json")
    assert {"name": "mapping", "configMap": {"name": "listings-v2"}} in pod["volumes"]
    assert not any(c["metadata"]["name"].endswith("-reindex-mapping") for c in kinds["ConfigMap"])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mapping": NEW_MAPPING, "mappingConfigMap": "x"}, "not both"),
        ({"source": "kafka"}, "source"),
        ({"maxRate": -1}, "maxRate"),
        ({"mappingKey": "../x"}, "mappingKey"),
    ],
)
def test_invalid_reindex_job_values_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_render.RenderError, match=re.escape(message)):
        _reindex(values)


def test_reindex_metrics_are_scraped_by_a_pod_monitor_with_the_service_monitor() -> None:
    assert "PodMonitor" not in _reindex({})
    kinds = _by_kind(
        helm_render.render(
            {
                "reindex": {"job": {"enabled": True}},
                "metrics": {"serviceMonitor": {"enabled": True}},
            }
        )
    )
    (monitor,) = kinds["PodMonitor"]
    pod = _reindex_job(kinds)["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == pod["spec"]["containers"][0]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # its own job label: the catch-up group's pipeline series stay apart from the pods'
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "stream-indexer-reindex"
    (service,) = kinds["Service"]
    assert not service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
