"""Rendered manifests checked against Kubernetes API schemas (`kubernetes-validate`, a dev
dependency), for the chart's minimum and latest supported Kubernetes versions.

Core kinds (Deployment, Job, Service, HPA, NetworkPolicy, ...) are validated against the
strict schemas kubernetes-validate ships for that version: wrong types, missing required
fields and unknown fields (a typo, or a field the version does not have yet) all fail.

Custom resources (KEDA ScaledObject, Prometheus Operator ServiceMonitor, PodMonitor and
PrometheusRule) are not in those schemas. `CRD_SHAPES` is a minimal shape written here from the
CRDs' documented fields, only the part the chart writes: apiVersion and kind, `metadata` as a
real ObjectMeta, the required fields, value types (KEDA trigger metadata values are strings),
Prometheus durations, and no unknown field in the objects the chart fills (a CRD with a
structural schema would silently prune one). It is not the full CRD schema: a field the chart
starts writing must be added here after checking the CRD's documentation.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

import yaml

from .facts import CHART
from .tools import missing

if TYPE_CHECKING:
    import referencing

DEFS = "/api/_definitions.json#/$defs/"
OBJECT_META = {"$ref": DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
LABEL_SELECTOR = {"$ref": DEFS + "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# Prometheus Operator's Duration pattern (monitoring.coreos.com/v1).
DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
    r"(([0-9]+)ms)?)$",
}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _object(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": OBJECT_META,
            "spec": spec,
        },
        ["apiVersion", "kind", "metadata", "spec"],
    )


SCALED_OBJECT = _resource(
    "keda.sh/v1alpha1",
    "ScaledObject",
    _object(
        {
            "scaleTargetRef": _object(
                {
                    "name": {"type": "string", "minLength": 1},
                    "kind": {"type": "string"},
                    "apiVersion": {"type": "string"},
                },
                ["name"],
            ),
            "minReplicaCount": {"type": "integer", "minimum": 0},
            "maxReplicaCount": {"type": "integer", "minimum": 1},
            "idleReplicaCount": {"type": "integer", "minimum": 0},
            "pollingInterval": {"type": "integer", "minimum": 1},
            "cooldownPeriod": {"type": "integer", "minimum": 0},
            "advanced": _object(
                {
                    "horizontalPodAutoscalerConfig": _object(
                        {
                            "name": {"type": "string"},
                            "behavior": {
                                "$ref": DEFS
                                + "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"
                            },
                        },
                        [],
                    ),
                    "restoreToOriginalReplicaCount": {"type": "boolean"},
                },
                [],
            ),
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": _object(
                    {
                        "type": {"type": "string", "minLength": 1},
                        "name": {"type": "string"},
                        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        # KEDA's trigger metadata is map[string]string: numbers must be quoted.
                        "metadata": STRING_MAP,
                        "authenticationRef": _object(
                            {
                                "name": {"type": "string", "minLength": 1},
                                "kind": {"type": "string"},
                            },
                            ["name"],
                        ),
                    },
                    ["type", "metadata"],
                ),
            },
        },
        ["scaleTargetRef", "triggers"],
    ),
)

SERVICE_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "ServiceMonitor",
    _object(
        {
            "jobLabel": {"type": "string"},
            "selector": LABEL_SELECTOR,
            "namespaceSelector": _object(
                {
                    "any": {"type": "boolean"},
                    "matchNames": {"type": "array", "items": {"type": "string"}},
                },
                [],
            ),
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "items": _object(
                    {
                        "port": {"type": "string", "minLength": 1},
                        "path": {"type": "string", "pattern": "^/"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": DURATION,
                        "scrapeTimeout": DURATION,
                    },
                    ["port"],
                ),
            },
        },
        ["selector", "endpoints"],
    ),
)

POD_MONITOR = _resource(
    "monitoring.coreos.com/v1",
    "PodMonitor",
    _object(
        {
            "jobLabel": {"type": "string"},
            "selector": LABEL_SELECTOR,
            "namespaceSelector": SERVICE_MONITOR["properties"]["spec"]["properties"][
                "namespaceSelector"
            ],
            "podMetricsEndpoints": SERVICE_MONITOR["properties"]["spec"]["properties"]["endpoints"],
        },
        ["selector", "podMetricsEndpoints"],
    ),
)

_RULE_FIELDS = {
    "alert": {"type": "string", "minLength": 1},
    "record": {"type": "string", "minLength": 1},
    "expr": {"type": ["string", "integer"]},
    "for": DURATION,
    "keep_firing_for": DURATION,
    "labels": STRING_MAP,
    "annotations": STRING_MAP,
}

PROMETHEUS_RULE = _resource(
    "monitoring.coreos.com/v1",
    "PrometheusRule",
    _object(
        {
            "groups": {
                "type": "array",
                "minItems": 1,
                "items": _object(
                    {
                        "name": {"type": "string", "minLength": 1},
                        "interval": DURATION,
                        "rules": {
                            "type": "array",
                            "items": {
                                **_object(_RULE_FIELDS, ["expr"]),
                                # exactly one of alert and record
                                "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                            },
                        },
                    },
                    ["name", "rules"],
                ),
            }
        },
        ["groups"],
    ),
)

CRD_SHAPES: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMETHEUS_RULE,
}


class InvalidManifest(Exception):
    """A rendered manifest the API server (or the CRD's schema) would refuse."""


def _kv() -> Any:
    try:
        import kubernetes_validate
        import kubernetes_validate.utils
    except ImportError:
        missing("kubernetes_validate", "pip install -e '.[dev]' brings kubernetes-validate")
    return kubernetes_validate


def shipped_versions() -> list[str]:
    """Kubernetes minor versions ("1.27") kubernetes-validate has schemas for, oldest first."""
    minors = {_minor(v) for v in _kv().utils.all_versions()}
    return sorted(minors, key=lambda v: tuple(map(int, v.split("."))))


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def chart_minimum() -> str:
    """The lower bound of Chart.yaml `kubeVersion` (">=1.27.0-0" -> "1.27")."""
    kube_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=\s*(\d+\.\d+)\.0(?:-0)?", kube_version.strip())
    assert match, f"kubeVersion {kube_version!r} is not '>=X.Y.0-0'"
    return match.group(1)


def supported_versions() -> tuple[str, str]:
    """(minimum, latest): Chart.yaml's lower bound and the newest schema version shipped."""
    return chart_minimum(), shipped_versions()[-1]


@functools.cache
def _registry(version: str) -> referencing.Registry[Any]:
    """The core definitions of `version`, so CRD shapes can reference ObjectMeta and co."""
    import referencing

    utils = _kv().utils
    (full,) = {v for v in utils.all_versions() if _minor(v) == version}
    defs = utils.schema_contents(
        f"kubernetes-json-schema/v{full}-local-strict/_definitions.json", version
    )
    registry: referencing.Registry[Any] = referencing.Resource.from_contents(defs) @ (
        referencing.Registry()
    )
    return registry


def validate(doc: dict[str, Any], version: str) -> None:
    """Raise InvalidManifest unless `doc` is valid for Kubernetes `version` ("1.27")."""
    kv = _kv()
    import jsonschema  # kubernetes-validate's own dependency

    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    name = f"{key[1]}/{doc.get('metadata', {}).get('name')}"
    shape = CRD_SHAPES.get(key)
    if shape is not None:
        schema = {"$id": "https://kubernetes.io/api/crd-shape", **shape}
        validator = jsonschema.Draft202012Validator(schema, registry=_registry(version))
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        if errors:
            raise InvalidManifest(
                f"{name} (CRD shape, {version}): "
                + "; ".join(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
            )
        return
    try:
        checked = kv.validate(doc, version, strict=True)
    except kv.utils.SchemaNotFoundError as exc:
        raise InvalidManifest(f"{name}: {exc.message} (and no CRD shape here)") from None
    except kv.utils.ValidationError as exc:
        path = ".".join(map(str, exc.path))
        raise InvalidManifest(f"{name} ({exc.version}): {path}: {exc.message}") from None
    # kubernetes-validate falls back to an older schema when it lacks the version asked for.
    assert checked == version, f"{name} was validated against {checked}, not {version}"
