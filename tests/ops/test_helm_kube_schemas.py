"""Every manifest the chart renders, for the defaults and each optional feature switched on,
is valid for the chart's minimum and latest supported Kubernetes versions.

Core kinds are validated against the strict Kubernetes API schemas of each version
(`kubernetes-validate`). The custom resources (KEDA ScaledObject, Prometheus Operator
ServiceMonitor and PrometheusRule) are not in those schemas: they get a minimal shape check
written in `kube_schemas.CRD_SHAPES` (apiVersion, kind, a real ObjectMeta, required fields, value
types, no unknown fields where the chart writes them), not the CRDs' full schemas.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import yaml

from . import helm_render, kube_schemas
from .facts import CHART

TLS_ON = {
    "tls": {"secretName": "indexer-tls"},
    "config": {
        "kafka": {
            "bootstrap_servers": "kafka:9093",
            "security_protocol": "SSL",
            "ssl_cafile": "/etc/stream-indexer/tls/ca.crt",
        },
        "opensearch": {
            "hosts": "https://opensearch:9200",
            "ca_certs": "/etc/stream-indexer/tls/ca.crt",
        },
    },
}

# name -> (values, kinds that must be rendered with them)
FEATURES: dict[str, tuple[dict[str, Any], set[str]]] = {
    "defaults": (
        {},
        {
            "Deployment",
            "ConfigMap",
            "Secret",
            "Job",
            "Service",
            "ServiceAccount",
            "PodDisruptionBudget",
            "NetworkPolicy",
        },
    ),
    "keda-kafka": (
        {
            "keda": {
                "enabled": True,
                "kafkaMetadata": {"tls": "enable", "sasl": "scram_sha512"},
                "authenticationRef": "kafka-credentials",
            }
        },
        {"ScaledObject"},
    ),
    "keda-prometheus": ({"keda": {"enabled": True, "trigger": "prometheus"}}, {"ScaledObject"}),
    "service-monitor": (
        {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}},
        {"ServiceMonitor"},
    ),
    "prometheus-rule": (
        {"metrics": {"prometheusRule": {"enabled": True, "runbookBaseUrl": "https://x/docs"}}},
        {"PrometheusRule"},
    ),
    "hpa": ({"autoscaling": {"enabled": True}}, {"HorizontalPodAutoscaler"}),
    "verify-cronjob": (
        {
            "verify": {
                "cronjob": {
                    "enabled": True,
                    "timeZone": "Europe/Berlin",
                    "args": ["--full", "--repair"],
                    "pushgatewayUrl": "http://pushgateway:9091",
                }
            },
            "extraEnv": [{"name": "TZ", "value": "UTC"}],
            "tls": {"secretName": "indexer-tls"},
        },
        {"CronJob"},
    ),
    "reindex-job": (
        {
            "reindex": {
                "job": {
                    "enabled": True,
                    "maxRate": 500,
                    "graceS": 30,
                    "mapping": {"mappings": {"properties": {"id": {"type": "long"}}}},
                }
            },
            "metrics": {"serviceMonitor": {"enabled": True}},
            "extraEnv": [{"name": "TZ", "value": "UTC"}],
            "tls": {"secretName": "indexer-tls"},
        },
        {"Job", "ConfigMap", "PodMonitor"},
    ),
    "network-policy": (
        {
            "networkPolicy": {
                "metricsFrom": [
                    {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}},
                    {"podSelector": {"matchLabels": {"app": "prometheus"}}},
                ],
                "egress": [
                    {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 9093}]},
                ],
            }
        },
        {"NetworkPolicy"},
    ),
    "certificates": (TLS_ON, {"Deployment", "Job"}),
    "pod-scheduling-and-extras": (
        {
            "podAntiAffinity": "hard",
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "stream-indexer"}},
                }
            ],
            "tolerations": [{"key": "search", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"pool": "search"},
            "priorityClassName": "high",
            "imagePullSecrets": [{"name": "registry"}],
            "extraEnv": [{"name": "TZ", "value": "UTC"}],
            "podAnnotations": {"a": "b"},
            "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:x"}},
            "service": {"annotations": {"x": "y"}},
        },
        {"Deployment", "Job", "ServiceAccount", "Service"},
    ),
    "optional-objects-off": (
        {
            "existingSecret": "indexer-creds",
            "migrations": {"enabled": False},
            "podDisruptionBudget": {"enabled": False},
            "networkPolicy": {"enabled": False},
            "serviceAccount": {"create": False},
            "metrics": {"grafanaDashboard": {"enabled": False}},
        },
        {"Deployment", "ConfigMap", "Service"},
    ),
}

VERSIONS = kube_schemas.supported_versions()


def _errors(docs: list[dict[str, Any]], version: str) -> list[str]:
    errors = []
    for doc in docs:
        try:
            kube_schemas.validate(doc, version)
        except kube_schemas.InvalidManifest as exc:
            errors.append(str(exc))
    return errors


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"k8s-{v}")
@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_rendered_manifests_are_valid_kubernetes_objects(feature: str, version: str) -> None:
    values, kinds = FEATURES[feature]
    docs = helm_render.render(values)
    rendered = {doc["kind"] for doc in docs}
    assert kinds <= rendered, f"{feature} did not render {kinds - rendered}"
    assert not _errors(docs, version)


def test_supported_versions_are_declared_and_have_schemas() -> None:
    minimum, latest = VERSIONS
    shipped = kube_schemas.shipped_versions()
    assert minimum in shipped, f"kubernetes-validate has no schemas for the minimum {minimum}"
    assert tuple(map(int, minimum.split("."))) < tuple(map(int, latest.split(".")))
    readme = (CHART / "README.md").read_text()
    declared = re.search(r"Kubernetes (\d+\.\d+) to (\d+\.\d+)", readme)
    assert declared, "the chart README states the supported Kubernetes versions"
    assert declared.groups() == (minimum, latest), "README vs Chart.yaml/kubernetes-validate"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={minimum}.0-0"


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"k8s-{v}")
def test_helm_lint_strict_for_each_supported_version(version: str) -> None:
    ok, report = helm_render.lint(kube_version=version)
    assert ok, report


# --- the checks can fail ---------------------------------------------------------------------


def _one(kind: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    (doc,) = [d for d in helm_render.render(values) if d["kind"] == kind]
    return doc


def test_a_field_too_new_for_the_version_is_refused() -> None:
    """Part of why the minimum is 1.27: 1.25 has no unhealthyPodEvictionPolicy (1.26 has it as
    an alpha field, off unless a feature gate is set, so the API server drops it)."""
    pdb = _one("PodDisruptionBudget")
    kube_schemas.validate(pdb, "1.27")
    with pytest.raises(kube_schemas.InvalidManifest, match="unhealthyPodEvictionPolicy"):
        kube_schemas.validate(pdb, "1.25")


@pytest.mark.parametrize(
    ("kind", "values", "break_it", "message"),
    [
        ("Deployment", {}, lambda d: d["spec"].update(replicas="two"), "'two' is not of type"),
        (
            "Deployment",
            {},
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(volumeMount=[]),
            "volumeMount",
        ),
        ("Service", {}, lambda d: d["metadata"]["labels"].update(port=9108), "9108"),
        (
            "ScaledObject",
            {"keda": {"enabled": True}},
            lambda d: d["spec"]["triggers"][0]["metadata"].update(lagThreshold=5000),
            "5000 is not of type 'string'",
        ),
        (
            "ScaledObject",
            {"keda": {"enabled": True}},
            lambda d: d["spec"].pop("scaleTargetRef"),
            "'scaleTargetRef' is a required property",
        ),
        (
            "ServiceMonitor",
            {"metrics": {"serviceMonitor": {"enabled": True}}},
            lambda d: d["spec"]["endpoints"][0].update(interval="15 seconds"),
            "does not match",
        ),
        (
            "ServiceMonitor",
            {"metrics": {"serviceMonitor": {"enabled": True}}},
            lambda d: d["metadata"].update(labelz={}),
            "labelz",
        ),
        (
            "PodMonitor",
            {
                "reindex": {"job": {"enabled": True}},
                "metrics": {"serviceMonitor": {"enabled": True}},
            },
            lambda d: d["spec"].update(endpoints=d["spec"].pop("podMetricsEndpoints")),
            "'podMetricsEndpoints' is a required property",
        ),
        (
            "PrometheusRule",
            {"metrics": {"prometheusRule": {"enabled": True}}},
            lambda d: d["spec"]["groups"][0]["rules"][0].update(record="x", alert="y"),
            "is valid under each of",
        ),
    ],
)
def test_broken_manifests_are_refused(
    kind: str, values: dict[str, Any], break_it: Any, message: str
) -> None:
    doc = copy.deepcopy(_one(kind, values))
    kube_schemas.validate(doc, VERSIONS[1])
    break_it(doc)
    with pytest.raises(kube_schemas.InvalidManifest, match=re.escape(message)):
        kube_schemas.validate(doc, VERSIONS[1])


def test_a_kind_without_schema_or_shape_is_refused() -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(kube_schemas.InvalidManifest, match="no CRD shape"):
        kube_schemas.validate(doc, VERSIONS[0])
