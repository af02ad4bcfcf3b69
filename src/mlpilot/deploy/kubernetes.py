"""Kubernetes manifests for a deployment's model servers, validated against the official schemas.

``render_kubernetes`` returns plain dicts: a ConfigMap with the serving document (what the pods serve until
they reach the control plane), a Deployment of stateless model-server replicas that follow the control plane
(readiness and liveness probes on the v2 health routes, resource requests and limits, Prometheus scraping), a
Service, a HorizontalPodAutoscaler and a PodDisruptionBudget. Every replica routes by the same deterministic
hashing, so replicas agree on traffic splits without sharing state.

The pods keep nothing: their prediction log goes to shared object storage (``predictions_url``, rendered as
``MLPILOT_PREDICTIONS_URL``), where the control plane's label feed and monitoring read it, and an endpoint with a
feature service reads a shared online store (``features_online_url``: Redis). Credentials never appear in the
manifests: they come from the Secret named by ``env_secret`` (its keys become environment variables)::

    >>> options = KubernetesOptions(image="registry.example.com/mlpilot:0.1",
    ...                             predictions_url="s3://ml-artifacts/mlpilot/predictions")
    >>> docs = render_kubernetes(info, options)  # doctest: +SKIP
    >>> validate_manifests(docs)  # doctest: +SKIP
    >>> write_manifests(docs, "k8s/churn")  # doctest: +SKIP

Validation uses ``kubernetes-validate`` (``pip install 'mlpilot[k8s]'``), which ships the schemas: no cluster
and no network needed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlpilot.deploy.endpoint import serving_document
from mlpilot.deploy.entities import DeploymentInfo
from mlpilot.errors import InvalidInputError, MissingDependencyError

__all__ = ["KubernetesOptions", "render_kubernetes", "validate_manifests", "write_manifests"]

_CONFIG_DIR = "/etc/mlpilot"
_CONFIG_FILE = "serving.json"
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://.")


def _shared_url(value: str, field: str, *, schemes: tuple[str, ...] | None = None, example: str) -> str:
    """``value`` if it names storage every pod and the control plane reach, without a password in it."""
    match = _SCHEME.match(value)
    if match is None or match.group(1) == "file" or (schemes is not None and match.group(1) not in schemes):
        raise InvalidInputError(
            f"{field}: {value!r} is not shared storage: a path (or file://) inside a pod vanishes with it; expected "
            f"a URL such as {example}",
            field=field,
        )
    try:
        password = urlsplit(value).password
    except ValueError as exc:
        raise InvalidInputError(f"{field}: not a valid URL: {exc}", field=field) from exc
    if password:
        # Manifests end up in git and in `kubectl describe`: a password belongs in a Secret.
        raise InvalidInputError(
            f"{field}: the URL holds a password: put it in the Secret named by env_secret instead "
            f"(as MLPILOT_{field.upper()})",
            field=field,
        )
    return value


@dataclass(frozen=True)
class KubernetesOptions:
    """Everything about the cluster that the deployment itself does not say."""

    image: str = "ghcr.io/mlpilot/mlpilot:latest"
    namespace: str | None = None
    #: where the pods reach ``mlpilot server`` (inside the cluster)
    control_plane_url: str = "http://mlpilot-server:5080"
    #: a Secret holding the pods' API token under the key ``token`` (None: no token)
    token_secret: str | None = "mlpilot-token"  # noqa: S105 - the Secret's name, not a secret
    replicas: int = 2
    min_replicas: int = 2
    max_replicas: int = 10
    target_cpu_percent: int = 70
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory_request: str = "1Gi"
    memory_limit: str = "2Gi"
    port: int = 8080
    kubernetes_version: str = "1.30"
    extra_labels: dict[str, str] = field(default_factory=dict)
    #: shared storage for the prediction log, where the control plane reads it (its MLPILOT_PREDICTIONS_URL,
    #: else its MLPILOT_ARTIFACT_URL + ``/predictions``), e.g. ``s3://ml-artifacts/mlpilot/predictions``
    predictions_url: str | None = None
    #: the shared online store of endpoints with a feature service (``redis://…``; with a password: env_secret)
    features_online_url: str | None = None
    #: a Secret whose keys become the pods' environment: storage credentials (``AWS_ACCESS_KEY_ID``…), and
    #: ``MLPILOT_FEATURES_ONLINE_URL`` when it holds a password
    env_secret: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise InvalidInputError(
                f"replicas: expected 1 <= min ({self.min_replicas}) <= max ({self.max_replicas})", field="replicas"
            )
        if not 1 <= self.port <= 65535:
            raise InvalidInputError(f"port: expected 1-65535, got {self.port}", field="port")
        if not 1 <= self.target_cpu_percent <= 100:
            raise InvalidInputError("target_cpu_percent: expected 1-100", field="target_cpu_percent")
        if self.predictions_url is not None:
            _shared_url(self.predictions_url, "predictions_url", example="s3://ml-artifacts/mlpilot/predictions")
        if self.features_online_url is not None:
            _shared_url(
                self.features_online_url,
                "features_online_url",
                schemes=("redis", "rediss"),
                example="redis://redis.ml.svc:6379/0",
            )


def _meta(name: str, labels: dict[str, str], options: KubernetesOptions) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if options.namespace:
        meta["namespace"] = options.namespace
    return meta


def render_kubernetes(info: DeploymentInfo, options: KubernetesOptions | None = None) -> list[dict[str, Any]]:
    """The manifests of ``info``'s model-server group, in apply order.

    Raises :class:`~mlpilot.errors.InvalidInputError` when ``options`` lack what the pods need: a shared
    ``predictions_url``, and for an endpoint with a feature service a shared online store
    (``features_online_url`` or ``env_secret``)."""
    options = options or KubernetesOptions()
    if options.predictions_url is None:
        raise InvalidInputError(
            "predictions_url: name the shared storage the pods write the prediction log to, where the control "
            "plane's label feed and monitoring read it (e.g. s3://ml-artifacts/mlpilot/predictions)",
            field="predictions_url",
        )
    if info.spec.features is not None and options.features_online_url is None and options.env_secret is None:
        raise InvalidInputError(
            f"features_online_url: deployment {info.name!r} looks its inputs up from feature service "
            f"{info.spec.features.service!r}: name the shared online store (redis://…), or a Secret (env_secret) "
            "holding MLPILOT_FEATURES_ONLINE_URL",
            field="features_online_url",
        )
    name = f"{info.name}-serve"
    selector = {"app.kubernetes.io/name": "mlpilot-serve", "app.kubernetes.io/instance": info.name}
    labels = {
        **selector,
        "app.kubernetes.io/part-of": "mlpilot",
        "app.kubernetes.io/component": "model-server",
        **options.extra_labels,
    }
    document = json.dumps(serving_document(info).model_dump(mode="json"), indent=2, sort_keys=True)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(f"{name}-config", labels, options),
        "data": {_CONFIG_FILE: document},
    }
    env: list[dict[str, Any]] = [
        {"name": "MLPILOT_HOME", "value": "/tmp/mlpilot"},  # noqa: S108 - the pod's emptyDir, for scratch only
        {"name": "MLPILOT_PREDICTIONS_URL", "value": options.predictions_url},
    ]
    if options.features_online_url is not None:
        env.append({"name": "MLPILOT_FEATURES_ONLINE_URL", "value": options.features_online_url})
    if options.token_secret:
        env.append(
            {"name": "MLPILOT_TOKEN", "valueFrom": {"secretKeyRef": {"name": options.token_secret, "key": "token"}}}
        )
    probe: dict[str, Any] = {
        "httpGet": {"path": "/v2/health/ready", "port": "http"},
        "periodSeconds": 2,
        "timeoutSeconds": 2,
    }
    container: dict[str, Any] = {
        "name": "model-server",
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "deploy",
            "serve",
            info.name,
            "--control-plane",
            options.control_plane_url,
            "--initial-config",
            f"{_CONFIG_DIR}/{_CONFIG_FILE}",
            "--host",
            "0.0.0.0",  # noqa: S104 - a pod listens on its own network namespace
            "--port",
            str(options.port),
        ],
        "ports": [{"name": "http", "containerPort": options.port, "protocol": "TCP"}],
        # Explicit `env` entries win over `envFrom` keys of the same name.
        **({"envFrom": [{"secretRef": {"name": options.env_secret}}]} if options.env_secret else {}),
        "env": env,
        # Models load before the first readiness: give start-up its own, longer budget.
        "startupProbe": {**probe, "failureThreshold": 150},
        "readinessProbe": {**probe, "failureThreshold": 3},
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": options.cpu_request, "memory": options.memory_request},
            "limits": {"cpu": options.cpu_limit, "memory": options.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "serving-config", "mountPath": _CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir private to the pod
        ],
    }
    checksum = hashlib.sha256(document.encode()).hexdigest()
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, labels, options),
        "spec": {
            "replicas": options.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            # Never below the wanted capacity during a rollout of the pods themselves.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(options.port),
                        "prometheus.io/path": "/metrics",
                        "mlpilot.dev/serving-config-sha256": checksum,
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": 40,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
                    "containers": [container],
                    "volumes": [
                        {"name": "serving-config", "configMap": {"name": f"{name}-config"}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector},
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, labels, options),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(name, labels, options),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": options.min_replicas,
            "maxReplicas": options.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": options.target_cpu_percent},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, labels, options),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}},
    }
    return [config_map, deployment, service, hpa, pdb]


def validate_manifests(docs: list[dict[str, Any]], kubernetes_version: str = "1.30") -> None:
    """Validate every manifest against the official schema of ``kubernetes_version`` (strict: unknown fields
    are errors); raises :class:`InvalidInputError` naming the object and the field."""
    try:
        import kubernetes_validate
    except ImportError as exc:
        raise MissingDependencyError("kubernetes-validate", "k8s") from exc
    for doc in docs:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            raise InvalidInputError(f"{what}: {path}: {exc.message}", field=path or what) from exc
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.utils.VersionNotSupportedError) as exc:
            raise InvalidInputError(f"{what}: {exc.message}", field="kubernetes_version") from exc


def write_manifests(docs: list[dict[str, Any]], folder: str | Path) -> list[Path]:
    """Write one YAML file per manifest (``configmap.yaml``, ``deployment.yaml``...) into ``folder``."""
    try:
        import yaml
    except ImportError as exc:
        raise MissingDependencyError("pyyaml", "k8s") from exc
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for doc in docs:
        path = out / f"{str(doc['kind']).lower()}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths
