"""The deployment files under deploy/: Helm chart, compose file, Dockerfiles, dashboard, key script.

The Helm chart is rendered with Helm's own engine (``helm-python-sdk`` binds Helm's Go SDK, so no
``helm`` binary and no cluster are needed) and every rendered object is checked against the
Kubernetes OpenAPI schemas shipped in ``kubernetes-validate``, in strict mode (unknown fields fail),
for the oldest Kubernetes the chart supports and the newest the package knows. KEDA's
ScaledObject is not a built-in kind: it is checked against a minimal schema written here from
KEDA's CRD. Settings that the chart, the compose file and the ConfigMap carry are loaded through
``schema.settings`` itself, so a misspelt key or ``CONDENSE_*`` variable fails here.

Nothing here builds an image or starts a container: the Dockerfiles are checked statically.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import importlib
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from schema.settings import Settings, load_settings
from tests.fixtures.services import require_service

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "condense"
COMPOSE = DEPLOY / "compose.yaml"
DASHBOARD = DEPLOY / "grafana" / "condense.json"
DOCKERFILES = (DEPLOY / "docker" / "Dockerfile.cpu", DEPLOY / "docker" / "Dockerfile.cuda")

# Environment variables a condense container may carry beyond CONDENSE_<SECTION>__<KEY>.
NON_SETTINGS_ENV = {"BOOTSTRAP_API_KEYS", "HEALTHCHECK_URL"}

# The metrics the code exposes: name -> (type, labels).
METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "condense_http_requests_total": ("counter", frozenset({"route", "method", "status"})),
    "condense_http_request_duration_seconds": ("histogram", frozenset({"route", "method"})),
    "condense_jobs_total": ("counter", frozenset({"status", "route"})),
    "condense_submissions_total": ("counter", frozenset({"route"})),
    "condense_kafka_consumer_lag": ("gauge", frozenset({"topic", "partition"})),
    "condense_batch_documents": ("histogram", frozenset()),
    "condense_batch_tokens": ("histogram", frozenset()),
    "condense_inference_seconds": ("histogram", frozenset({"path"})),
    "condense_queue_wait_seconds": ("histogram", frozenset()),
    "condense_notifications_total": ("counter", frozenset({"channel", "outcome"})),
    "condense_job_failures_total": ("counter", frozenset({"code", "variant"})),
    "condense_job_latency_seconds": ("histogram", frozenset({"variant", "route", "status"})),
    "condense_engine_tokens_per_second": ("histogram", frozenset({"variant", "path"})),
    "condense_summary_words": ("histogram", frozenset({"variant"})),
    "condense_outbox_pending": ("gauge", frozenset()),
    "condense_drift_psi": ("gauge", frozenset({"model", "statistic"})),
    "condense_drift_ks_statistic": ("gauge", frozenset({"model", "statistic"})),
    "condense_drift_ks_pvalue": ("gauge", frozenset({"model", "statistic"})),
    "condense_drift_moved": ("gauge", frozenset({"model", "statistic"})),
    "condense_drift_window_jobs": ("gauge", frozenset({"model", "window"})),
}
# Labels Prometheus itself attaches to every scraped series.
TARGET_LABELS = frozenset({"job", "instance", "component"})


# --------------------------------------------------------------------------------------------------
# helpers


def _need(module: str) -> ModuleType:
    """Import a dev dependency; skip without it, except in CI where it must be installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        require_service(module, "not installed (it comes with the dev dependencies: pip install -e '.[dev]')")


def _settings_path(name: str) -> tuple[str, ...] | None:
    """The settings field a CONDENSE_<SECTION>__<KEY> variable sets, or None if it sets none."""
    if not name.startswith("CONDENSE_"):
        return None
    parts = tuple(part.lower() for part in name.removeprefix("CONDENSE_").split("__"))
    model: type[BaseModel] = Settings
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if index == len(parts) - 1:
            return parts
        if not is_model:
            return None
        model = annotation  # type: ignore[assignment]
    return None


def _assert_env_names(names: list[str], where: str) -> None:
    for name in names:
        if name == "CONDENSE_CONFIG" or name in NON_SETTINGS_ENV:
            continue
        assert _settings_path(name) is not None, f"{where}: {name} names no settings field"


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def _interpolate(value: Any) -> str:
    """Compose's ${VAR:-default} with an empty environment: the default, or ''."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", str(value))


def _load_script() -> ModuleType:
    path = DEPLOY / "scripts" / "bootstrap_keys.py"
    spec = importlib.util.spec_from_file_location("deploy_bootstrap_keys", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------------
# Helm chart

SECRETS = {
    "databaseUrl": "postgresql://condense:pw@postgres:5432/condense",
    "celeryBrokerUrl": "redis://:pw@redis:6379/0",
}
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {"secrets": SECRETS},
    "fixed-replicas": {
        "secrets": {
            **SECRETS,
            "smtp": {"username": "mailer", "password": "s3cret"},
            "webhookSecrets": [
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "whsec_old0000000000000000000000000",
            ],
            "bootstrapApiKeys": [{"tenant": "acme", "key": "cnd_" + "k" * 40}],
        },
        "gateway": {"autoscaling": {"enabled": False}},
        "relay": {"pdb": {"enabled": True}},
        "notifier": {"pdb": {"enabled": True}},
        "worker": {
            "keda": {"enabled": False},
            "gpu": {"enabled": False},
            "image": {"repository": "condense", "tag": "0.1.0"},
            "modelCache": {"existingClaim": "condense-models"},
        },
        "env": {"CONDENSE_SUMMARIZER__NUM_THREADS": 4, "CONDENSE_LOGGING__LEVEL": "DEBUG"},
        "imagePullSecrets": [{"name": "registry"}],
    },
    "existing-secret": {
        "secrets": {"existingSecret": "condense-credentials"},
        "serviceAccount": {"create": False, "name": "condense"},
        "worker": {"keda": {"authenticationRef": "kafka-sasl"}},
    },
}

HOOK = "helm.sh/hook"
WORKLOAD_KINDS = {"Deployment", "Job"}

# KEDA's ScaledObject (keda.sh/v1alpha1), the fields this chart may use, from KEDA's CRD; the
# kafka trigger's metadata keys from KEDA's Kafka scaler documentation.
KAFKA_TRIGGER_KEYS = [
    "bootstrapServers",
    "bootstrapServersFromEnv",
    "consumerGroup",
    "consumerGroupFromEnv",
    "topic",
    "topicFromEnv",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "excludePersistentLag",
    "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag",
    "partitionLimitation",
    "version",
    "sasl",
    "tls",
    "unsafeSsl",
]
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": {"type": "object"},
                "fallback": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"const": "kafka"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                            },
                            "metadata": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["bootstrapServers", "consumerGroup", "lagThreshold"],
                                "properties": {
                                    **{key: {"type": "string"} for key in KAFKA_TRIGGER_KEYS},
                                    "offsetResetPolicy": {"enum": ["earliest", "latest"]},
                                    "allowIdleConsumers": {"enum": ["true", "false"]},
                                    "lagThreshold": {"type": "string", "pattern": "^[0-9]+$"},
                                    "activationLagThreshold": {"type": "string", "pattern": "^[0-9]+$"},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def _render(values: dict[str, Any], release: str = "demo") -> list[dict[str, Any]]:
    helm = _need("helm_python")
    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values, name=release, namespace="condense", is_install=True)
    objects: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                document.setdefault("metadata", {}).setdefault("annotations", {})
                objects.append(document)
    return objects


@pytest.fixture(scope="module")
def manifests() -> dict[str, list[dict[str, Any]]]:
    return {variant: _render(values) for variant, values in VARIANTS.items()}


@pytest.fixture(scope="module")
def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def _find(objects: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"expected one {kind} named *{suffix}, found {len(found)}"
    return found[0]


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(obj)
    return spec.get("initContainers", []) + spec["containers"]


def _kube_versions() -> tuple[str, ...]:
    kv = _need("kubernetes_validate")
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    floor = re.search(r">=\s*(\d+\.\d+)\.\d+", chart["kubeVersion"])
    assert floor, "Chart.yaml kubeVersion must name a lower bound"
    return (f"{floor.group(1)}.0", kv.latest_version())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_chart_lints_clean(variant: str) -> None:
    helm = _need("helm_python")
    report = helm.lint(str(CHART), VARIANTS[variant], strict=True)
    assert report["errors"] == []
    # severity 1 is informational (e.g. "icon is recommended"); warnings and errors fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_manifests_match_kubernetes_schemas(manifests: dict[str, list[dict[str, Any]]], variant: str) -> None:
    kv = _need("kubernetes_validate")
    jsonschema = _need("jsonschema")
    versions = _kube_versions()
    for obj in manifests[variant]:
        where = f"{obj['kind']}/{obj['metadata'].get('name')}"
        checks = (
            [("KEDA", lambda o: jsonschema.validate(o, SCALED_OBJECT_SCHEMA))]
            if obj["apiVersion"].startswith("keda.sh/")
            else [(f"Kubernetes {v}", lambda o, v=v: kv.validate(o, v, strict=True)) for v in versions]
        )
        for schema_name, check in checks:
            try:
                check(obj)
            except jsonschema.ValidationError as exc:
                at = ".".join(str(part) for part in exc.absolute_path)
                pytest.fail(f"{variant}: {where} is invalid for {schema_name} at {at}: {exc.message}")


def test_chart_renders_every_component(manifests: dict[str, list[dict[str, Any]]]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in manifests["defaults"])
    assert kinds == sorted(
        [
            ("ConfigMap", "demo-condense-config"),
            ("ConfigMap", "demo-condense-migrate"),
            ("Deployment", "demo-condense-gateway"),
            ("Deployment", "demo-condense-notifier"),
            ("Deployment", "demo-condense-relay"),
            ("Deployment", "demo-condense-worker"),
            ("HorizontalPodAutoscaler", "demo-condense-gateway"),
            ("Job", "demo-condense-migrate"),
            ("PodDisruptionBudget", "demo-condense-gateway"),
            ("PodDisruptionBudget", "demo-condense-worker"),
            ("ScaledObject", "demo-condense-worker"),
            ("Secret", "demo-condense-migrate"),
            ("Secret", "demo-condense-secrets"),
            ("Service", "demo-condense-gateway"),
            ("ServiceAccount", "demo-condense"),
        ]
    )
    other = {(o["kind"], o["metadata"]["name"]) for o in manifests["existing-secret"]}
    assert ("Secret", "demo-condense-secrets") not in other
    assert ("ServiceAccount", "demo-condense") not in other


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pods_run_hardened(manifests: dict[str, list[dict[str, Any]]], variant: str) -> None:
    for obj in manifests[variant]:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        pod = _pod_spec(obj)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        for container in _containers(obj):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"], f"{obj['metadata']['name']}: no resource requests"
            assert ":" in container["image"] and not container["image"].endswith(":latest")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_pods_get_no_service_link_variables(manifests: dict[str, list[dict[str, Any]]], variant: str) -> None:
    workloads = [o for o in manifests[variant] if o["kind"] in WORKLOAD_KINDS]
    assert len(workloads) == 5
    for obj in workloads:
        assert _pod_spec(obj)["enableServiceLinks"] is False, obj["metadata"]["name"]


def _service_link_env(service: dict[str, Any], cluster_ip: str) -> dict[str, str]:
    """The variables kubelet gives a pod for ``service`` (pkg/kubelet/envvars, Docker-link style)."""
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    ports = service["spec"]["ports"]
    env = {f"{prefix}_SERVICE_HOST": cluster_ip, f"{prefix}_SERVICE_PORT": str(ports[0]["port"])}
    host = f"[{cluster_ip}]" if ":" in cluster_ip else cluster_ip  # Go's net.JoinHostPort
    for index, port in enumerate(ports):
        proto = port.get("protocol", "TCP")
        url = f"{proto.lower()}://{host}:{port['port']}"
        if "name" in port:
            env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
        if index == 0:
            env[f"{prefix}_PORT"] = url
        base = f"{prefix}_PORT_{port['port']}_{proto}"
        env |= {
            base: url,
            f"{base}_PROTO": proto.lower(),
            f"{base}_PORT": str(port["port"]),
            f"{base}_ADDR": cluster_ip,
        }
    return env


@pytest.mark.parametrize("cluster_ip", ["10.96.4.12", "fd00:10:96::4c"])
def test_settings_survive_the_service_links_of_a_release_named_condense(cluster_ip: str) -> None:
    # `helm install condense ...` names the gateway Service condense-gateway: should a pod get its
    # links anyway (an older chart, a pod spec patched by hand), every command must still start.
    objects = _render(VARIANTS["defaults"], release="condense")
    service = _find(objects, "Service", "-gateway")
    assert service["metadata"]["name"] == "condense-gateway"
    links = _service_link_env(service, cluster_ip)
    assert "CONDENSE_GATEWAY_SERVICE_HOST" in links
    assert "CONDENSE_GATEWAY_PORT_8000_TCP_ADDR" in links
    environ = {**links, "CONDENSE_GATEWAY__PORT": "8001"}

    settings = load_settings(None, environ)

    assert settings.gateway.port == 8001
    assert settings == Settings(gateway={"port": 8001})


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_probes_and_ports_follow_the_settings(
    manifests: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    objects = manifests[variant]
    settings = Settings(**_configmap_settings(objects, "-config"))
    expected_ports = {
        "gateway": settings.gateway.port,
        "relay": settings.relay.metrics_port,
        "worker": settings.worker.metrics_port,
        "notifier": settings.notifier.metrics_port,
    }
    for component, port in expected_ports.items():
        deployment = _find(objects, "Deployment", f"-{component}")
        (container,) = _containers(deployment)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert list(ports.values()) == [port]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports
        if component != "gateway":
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/port"] == str(port), component


def test_gateway_service_and_hpa(manifests: dict[str, list[dict[str, Any]]]) -> None:
    objects = manifests["defaults"]
    deployment = _find(objects, "Deployment", "-gateway")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = _find(objects, "Service", "-gateway")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (container,) = _containers(deployment)
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    hpa = _find(objects, "HorizontalPodAutoscaler", "-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    fixed = _find(manifests["fixed-replicas"], "Deployment", "-gateway")
    assert fixed["spec"]["replicas"] == 2
    assert not [o for o in manifests["fixed-replicas"] if o["kind"] == "HorizontalPodAutoscaler"]


def test_worker_requests_gpus_and_scales_on_kafka_lag(
    manifests: dict[str, list[dict[str, Any]]], chart_values: dict[str, Any]
) -> None:
    objects = manifests["defaults"]
    worker = _find(objects, "Deployment", "-worker")
    (container,) = _containers(worker)
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    pod = _pod_spec(worker)
    assert pod["nodeSelector"] == chart_values["worker"]["nodeSelector"]
    assert pod["tolerations"] == chart_values["worker"]["tolerations"]
    assert pod["terminationGracePeriodSeconds"] >= 90, "a stopping worker needs time to finish its batch"
    assert "replicas" not in worker["spec"], "KEDA owns the replica count"

    scaled = _find(objects, "ScaledObject", "-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] == 0
    kafka = Settings(**_configmap_settings(objects, "-config")).kafka
    triggers = scaled["spec"]["triggers"]
    assert {t["metadata"]["topic"] for t in triggers} == {kafka.topic, kafka.bulk_topic}
    for trigger in triggers:
        assert trigger["metadata"]["consumerGroup"] == kafka.consumer_group
        assert trigger["metadata"]["bootstrapServers"] == kafka.bootstrap_servers
    assert kafka.partitions >= scaled["spec"]["maxReplicaCount"], "workers beyond the partition count idle"
    with_auth = _find(manifests["existing-secret"], "ScaledObject", "-worker")
    assert {t["authenticationRef"]["name"] for t in with_auth["spec"]["triggers"]} == {"kafka-sasl"}

    fixed = _find(manifests["fixed-replicas"], "Deployment", "-worker")
    (cpu_container,) = _containers(fixed)
    assert "nvidia.com/gpu" not in cpu_container["resources"]["requests"]
    assert fixed["spec"]["replicas"] == 1
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "condense-models"}} in _pod_spec(fixed)[
        "volumes"
    ]
    assert not [o for o in manifests["fixed-replicas"] if o["kind"] == "ScaledObject"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_migration_job_is_a_pre_upgrade_hook(
    manifests: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    objects = manifests[variant]
    job = _find(objects, "Job", "-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations[HOOK] == "pre-install,pre-upgrade"
    (container,) = _containers(job)
    assert "condense db upgrade" in " ".join(container.get("command", []) + container.get("args", []))
    # What the hook mounts and reads must exist before it: hook objects of a lower weight, or the
    # user's own Secret.
    weight = int(annotations["helm.sh/hook-weight"])
    earlier = {
        (o["kind"], o["metadata"]["name"])
        for o in objects
        if HOOK in o["metadata"]["annotations"]
        and "pre-install" in o["metadata"]["annotations"][HOOK]
        and int(o["metadata"]["annotations"].get("helm.sh/hook-weight", "0")) < weight
    }
    existing = VARIANTS[variant]["secrets"].get("existingSecret")
    for kind, name in _references(job):
        assert (kind, name) in earlier or (kind == "Secret" and name == existing), (kind, name)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_workloads_reference_rendered_objects(
    manifests: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    objects = manifests[variant]
    regular = {
        (o["kind"], o["metadata"]["name"]) for o in objects if HOOK not in o["metadata"]["annotations"]
    }
    existing = VARIANTS[variant]["secrets"].get("existingSecret")
    claims = {VARIANTS[variant].get("worker", {}).get("modelCache", {}).get("existingClaim")}
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        for kind, name in _references(obj):
            if kind == "Secret" and name == existing:
                continue
            if kind == "PersistentVolumeClaim" and name in claims:
                continue
            assert (kind, name) in regular, f"{obj['metadata']['name']} refers to missing {kind} {name}"
        account = _pod_spec(obj)["serviceAccountName"]
        if VARIANTS[variant].get("serviceAccount", {}).get("create", True):
            assert ("ServiceAccount", account) in regular


def _references(obj: dict[str, Any]) -> set[tuple[str, str]]:
    refs: set[tuple[str, str]] = set()
    for volume in _pod_spec(obj).get("volumes", []):
        if "configMap" in volume:
            refs.add(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume:
            refs.add(("Secret", volume["secret"]["secretName"]))
        if "persistentVolumeClaim" in volume:
            refs.add(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
    for container in _containers(obj):
        for env in container.get("env", []):
            source = env.get("valueFrom", {})
            if "secretKeyRef" in source:
                refs.add(("Secret", source["secretKeyRef"]["name"]))
            if "configMapKeyRef" in source:
                refs.add(("ConfigMap", source["configMapKeyRef"]["name"]))
        mounted = {m["name"] for m in container.get("volumeMounts", [])}
        declared = {v["name"] for v in _pod_spec(obj).get("volumes", [])}
        assert mounted <= declared, f"{obj['metadata']['name']} mounts undeclared volumes"
    return refs


def test_pod_disruption_budgets_select_pods(manifests: dict[str, list[dict[str, Any]]]) -> None:
    objects = manifests["fixed-replicas"]
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert len(budgets) == 4
    pods = [o["spec"]["template"]["metadata"]["labels"] for o in objects if o["kind"] == "Deployment"]
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"]
        assert sum(selector.items() <= labels.items() for labels in pods) == 1, budget["metadata"]["name"]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_container_env_names_are_settings(manifests: dict[str, list[dict[str, Any]]], variant: str) -> None:
    for obj in manifests[variant]:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        for container in _containers(obj):
            names = [env["name"] for env in container.get("env", [])]
            assert len(names) == len(set(names)), f"{obj['metadata']['name']}: duplicate env names"
            _assert_env_names(names, f"{variant} {obj['metadata']['name']}")


def _configmap_settings(objects: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    configmap = _find(objects, "ConfigMap", suffix)
    return yaml.safe_load(configmap["data"]["condense.yaml"])


def _container_environ(container: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, str]:
    """The container's variables, secrets resolved from the rendered Secrets (or stand-ins for a
    Secret the chart does not create)."""
    secrets = {
        o["metadata"]["name"]: {key: base64.b64decode(value).decode() for key, value in o["data"].items()}
        for o in objects
        if o["kind"] == "Secret"
    }
    stand_ins = {"database-url": SECRETS["databaseUrl"], "celery-broker-url": SECRETS["celeryBrokerUrl"]}
    environ: dict[str, str] = {}
    for env in container.get("env", []):
        if "value" in env:
            environ[env["name"]] = env["value"]
            continue
        ref = env["valueFrom"]["secretKeyRef"]
        data = secrets.get(ref["name"], stand_ins)
        if ref["key"] in data:
            environ[env["name"]] = data[ref["key"]]
        else:
            assert ref.get("optional"), f"{env['name']}: key {ref['key']} missing from Secret {ref['name']}"
    return environ


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_configmap_settings_load(
    manifests: dict[str, list[dict[str, Any]]], variant: str, tmp_path: Path
) -> None:
    objects = manifests[variant]
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    checked = 0
    for obj in objects:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        (container,) = _containers(obj)
        environ = _container_environ(container, objects)
        config_path = environ.pop("CONDENSE_CONFIG")
        (mount,) = [m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/")]
        (volume,) = [v for v in _pod_spec(obj)["volumes"] if v["name"] == mount["name"]]
        data = configmaps[volume["configMap"]["name"]]["data"]
        path = tmp_path / f"{obj['metadata']['name']}.yaml"
        path.write_text(data[config_path.removeprefix(mount["mountPath"] + "/")])
        settings = load_settings(path, environ)
        checked += 1
        assert settings.gateway.host == "0.0.0.0"
        assert settings.logging.format == "json"
        assert settings.summarizer.cache_dir.startswith(settings.data_dir)
        assert settings.database.url == SECRETS["databaseUrl"]
        if obj["kind"] == "Deployment":
            assert settings.celery.broker_url == SECRETS["celeryBrokerUrl"]
        expected_secrets = VARIANTS[variant]["secrets"].get("webhookSecrets", [])
        if obj["kind"] == "Deployment":
            assert [s.get_secret_value() for s in settings.notifier.webhook_secrets] == expected_secrets
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        if component in {"relay", "worker", "notifier"}:
            # Probes and Prometheus come to the pod's IP, never its loopback.
            assert getattr(settings, component).metrics_host == "0.0.0.0", obj["metadata"]["name"]
    assert checked == 5


def test_values_env_is_checked(manifests: dict[str, list[dict[str, Any]]]) -> None:
    (gateway,) = _containers(_find(manifests["fixed-replicas"], "Deployment", "-gateway"))
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    assert env["CONDENSE_SUMMARIZER__NUM_THREADS"] == "4"
    # The check above would catch a misspelt variable:
    assert _settings_path("CONDENSE_SUMMARIZER__NUM_THREAD") is None
    assert _settings_path("CONDENSE_GATEWAY__MICRO_BATCH__MAX_WAIT_MS") == (
        "gateway",
        "micro_batch",
        "max_wait_ms",
    )
    assert _settings_path("CONDENSE_GATEWAY__PORT__X") is None
    assert _settings_path("CONDENSE_DATA_DIR") == ("data_dir",)


def test_chart_secret_holds_only_given_values(manifests: dict[str, list[dict[str, Any]]]) -> None:
    plain = _find(manifests["defaults"], "Secret", "-secrets")
    assert set(plain["data"]) == {"database-url", "celery-broker-url"}
    full = _find(manifests["fixed-replicas"], "Secret", "-secrets")
    data = {key: base64.b64decode(value).decode() for key, value in full["data"].items()}
    assert data["database-url"] == SECRETS["databaseUrl"]
    assert data["smtp-username"] == "mailer"
    script = _load_script()
    assert script.parse_pairs(data["bootstrap-api-keys"]) == [("acme", "cnd_" + "k" * 40)]
    hook = _find(manifests["fixed-replicas"], "Secret", "-migrate")
    assert hook["data"] == full["data"]


def test_chart_refuses_missing_credentials() -> None:
    helm = _need("helm_python")
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError, match="databaseUrl"):
        chart.render({}, name="demo", namespace="condense", is_install=True)


# --------------------------------------------------------------------------------------------------
# compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _condense_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if _interpolate(service["image"]).split(":")[0] in {"condense", "condense-cuda"}
    }


def test_compose_services_refer_to_each_other(compose: dict[str, Any]) -> None:
    services = compose["services"]
    named_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        image = _interpolate(service["image"])
        repository, _, tag = image.rpartition(":")
        assert repository and re.search(r"\d", tag) and tag != "latest", (
            f"{name}: image {image} is not pinned"
        )
        depends = service.get("depends_on", {})
        if isinstance(depends, list):
            depends = {dep: {"condition": "service_started"} for dep in depends}
        for dep, spec in depends.items():
            assert dep in services and dep != name, f"{name} depends on unknown service {dep}"
            assert spec["condition"] in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if spec["condition"] == "service_healthy":
                assert not services[dep].get("healthcheck", {}).get("disable"), f"{dep} has no healthcheck"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in named_volumes, f"{name}: volume {source} is not declared"
        if "build" in service:
            assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    for name in _condense_services(compose):
        if name == "migrate":
            continue
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    assert services["migrate"]["restart"] == "no"
    assert "condense db upgrade" in " ".join(services["migrate"]["command"])


def test_compose_settings_are_real_fields(compose: dict[str, Any], tmp_path: Path) -> None:
    services = compose["services"]
    condense = _condense_services(compose)
    assert set(condense) == {"migrate", "gateway", "relay", "worker", "notifier"}
    for name, service in condense.items():
        environ = {key: _interpolate(value) for key, value in service["environment"].items()}
        _assert_env_names(list(environ), f"compose service {name}")
        config = environ.pop("CONDENSE_CONFIG")
        (mount,) = [v for v in service["volumes"] if v.split(":")[1] == config]
        settings = load_settings(DEPLOY / mount.split(":")[0], environ)
        assert settings.database.url.startswith("postgresql://")
        assert settings.database.url.split("@")[1].split(":")[0] in services
        assert settings.kafka.bootstrap_servers.split(":")[0] in services
        assert settings.celery.broker_url.split("//")[1].split(":")[0] in services
        if name != "migrate":
            port = {
                "gateway": settings.gateway.port,
                "relay": settings.relay.metrics_port,
                "worker": settings.worker.metrics_port,
                "notifier": settings.notifier.metrics_port,
            }[name]
            assert environ["HEALTHCHECK_URL"] == f"http://127.0.0.1:{port}/healthz"
        if name in {"relay", "worker", "notifier"}:
            # Prometheus scrapes across the compose network.
            assert getattr(settings, name).metrics_host == "0.0.0.0", name
    gateway = condense["gateway"]
    assert gateway["environment"]["CONDENSE_GATEWAY__HOST"] == "0.0.0.0"
    assert gateway["ports"] == [f"{gateway['environment']['CONDENSE_GATEWAY__PORT']}:8000"]
    pairs = _load_script().parse_pairs(_interpolate(condense["migrate"]["environment"]["BOOTSTRAP_API_KEYS"]))
    assert len(pairs) == 1


def test_compose_kafka_is_single_node_kraft(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_prometheus_scrapes_the_components(compose: dict[str, Any]) -> None:
    services = compose["services"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    settings = load_settings(DEPLOY / "condense.compose.yaml", {})
    ports = {
        "gateway": settings.gateway.port,
        "relay": settings.relay.metrics_port,
        "worker": settings.worker.metrics_port,
        "notifier": settings.notifier.metrics_port,
    }
    scraped: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.partition(":")
                if host != "localhost":
                    scraped[host] = int(port)
        for dns in job.get("dns_sd_configs", []):
            for host in dns["names"]:
                scraped[host] = int(dns["port"])
    assert scraped == ports
    assert set(scraped) <= set(services)
    mounts = services["prometheus"]["volumes"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_grafana_provisioning_loads_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    (datasource,) = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus"
    assert datasource["url"].split("//")[1].split(":")[0] in compose["services"]
    (provider,) = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/condense.yaml").read_text())[
        "providers"
    ]
    dashboard_target = mounts["./grafana/condense.json"]
    assert Path(dashboard_target).parent == Path(provider["options"]["path"])


# --------------------------------------------------------------------------------------------------
# dashboard

_METRIC = re.compile(r"\bcondense_[a-z0-9_]+\b")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"\{([^}]*)\}")


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _base_metric(token: str) -> str:
    if token in METRICS:
        return token
    for suffix in ("_bucket", "_sum", "_count"):
        base = token.removesuffix(suffix)
        if base != token and METRICS.get(base, ("",))[0] == "histogram":
            return base
    raise AssertionError(f"unknown metric {token}")


def test_dashboard_uses_only_exposed_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    uid = f"${{{variable['name']}}}"
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert target["datasource"]["uid"] == uid
            metrics = {_base_metric(token) for token in _METRIC.findall(expr)}
            assert metrics, f"{panel['title']}: {expr} uses no condense metric"
            used |= metrics
            labels = set(TARGET_LABELS).union(*(METRICS[m][1] for m in metrics))
            if any(METRICS[m][0] == "histogram" for m in metrics):
                labels.add("le")
            grouped = {x.strip() for g in _GROUPING.findall(expr) for x in g.split(",") if x.strip()}
            matched = {
                part.split("=")[0].rstrip("!~").strip()
                for group in _MATCHER.findall(expr)
                for part in group.split(",")
                if part.strip()
            }
            assert grouped | matched <= labels, f"{panel['title']}: unknown labels in {expr}"
            assert "[$__rate_interval]" in expr or "rate(" not in expr
    assert used == set(METRICS), f"metrics without a panel: {set(METRICS) - used}"


def test_dashboard_has_the_operational_panels() -> None:
    titles = " | ".join(p["title"].lower() for p in _panels(json.loads(DASHBOARD.read_text())))
    for words in (
        "submit rate",
        "latency p50 / p95 / p99",
        "consumer lag per partition",
        "jobs succeeded",
        "failures",
        "batch size",
        "inference time",
        "queue wait",
        "deliveries by outcome",
        "outbox",
        "variants: job latency",
        "variants: engine tokens/s",
        "variants: summary length",
        "drift psi",
    ):
        assert words in titles, words


def test_prometheus_loads_the_drift_alert_rules(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert "/etc/prometheus/rules/*.yml" in config["rule_files"]
    assert "./prometheus/rules:/etc/prometheus/rules:ro" in compose["services"]["prometheus"]["volumes"]
    (group,) = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "condense-drift.yml").read_text())["groups"]
    rules = {rule["alert"]: rule for rule in group["rules"]}
    assert 'condense_drift_psi{statistic="language"}' in rules["CondenseInputLanguageDrift"]["expr"]
    for rule in rules.values():
        metrics = {_base_metric(token) for token in _METRIC.findall(rule["expr"])}
        assert metrics == {"condense_drift_psi"}, rule["alert"]
        assert rule["labels"]["severity"] and rule["annotations"]["summary"]


# --------------------------------------------------------------------------------------------------
# Dockerfiles


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").removeprefix("**/")
        if fnmatch.fnmatch(path, pattern) or any(
            fnmatch.fnmatch("/".join(path.split("/")[: i + 1]), pattern) for i in range(path.count("/") + 1)
        ):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = _dockerignore()
    for path in (".venv", ".git", "var", "tests", ".mypy_cache", "deploy/compose.yaml"):
        assert _ignored(path, patterns), path
    for path in ("pyproject.toml", "constraints.txt", "schema", "deploy/scripts/bootstrap_keys.py"):
        assert not _ignored(path, patterns), path


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multi_stage_pinned_and_non_root(dockerfile: Path) -> None:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    args = dict(
        line.removeprefix("ARG ").split("=", 1) for line in lines if line.startswith("ARG ") and "=" in line
    )
    stages = [line.split() for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2 and [s[-1] for s in stages] == ["builder", "runtime"]
    for stage in stages:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage[1])
        _, _, tag = image.rpartition(":")
        assert re.match(r"\d+\.\d+", tag), f"{dockerfile.name}: {image} is not pinned to a version"
    runtime = lines[next(i for i, line in enumerate(lines) if line.endswith("AS runtime")) :]
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert 'ENTRYPOINT ["condense"]' in runtime
    assert 'VOLUME ["/var/lib/condense"]' in runtime
    assert any(line.startswith("HEALTHCHECK ") for line in runtime)
    env = " ".join(line for line in runtime if line.startswith("ENV "))
    assert "CONDENSE_DATA_DIR=/var/lib/condense" in env
    assert "CONDENSE_SUMMARIZER__CACHE_DIR=/var/lib/condense/" in env
    _assert_env_names(re.findall(r"\b(CONDENSE_\w+)=", env), dockerfile.name)
    patterns = _dockerignore()
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"{dockerfile.name}: {source} does not exist"
                assert not _ignored(source, patterns), f"{dockerfile.name}: {source} is in .dockerignore"


# --------------------------------------------------------------------------------------------------
# the bootstrap-key script


def test_bootstrap_keys_parse() -> None:
    script = _load_script()
    key = "cnd_" + "a" * 40
    assert script.parse_pairs(f"\n# comment\nacme:{key}\n beta : {key}x \n") == [
        ("acme", key),
        ("beta", key + "x"),
    ]
    with pytest.raises(ValueError, match="line 1: expected"):
        script.parse_pairs("no-separator")
    with pytest.raises(ValueError, match="shorter than") as caught:
        script.parse_pairs("acme:short")
    assert "short" not in str(caught.value).replace("shorter", "")


def test_bootstrap_keys_insert_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import select

    from schema.db import make_engine
    from schema.models import ApiKey, Base
    from schema.settings import DatabaseSettings

    url = f"sqlite:///{tmp_path / 'keys.db'}"
    engine = make_engine(DatabaseSettings(url=url))
    Base.metadata.create_all(engine)
    key = "cnd_" + "b" * 40
    monkeypatch.setenv("CONDENSE_DATABASE__URL", url)
    monkeypatch.delenv("CONDENSE_CONFIG", raising=False)
    monkeypatch.setenv("BOOTSTRAP_API_KEYS", f"acme:{key}")
    script = _load_script()
    assert script.main([]) == 0
    assert script.main([]) == 0
    with engine.connect() as conn:
        rows = conn.execute(select(ApiKey.tenant, ApiKey.key_hash, ApiKey.prefix)).all()
    engine.dispose()
    assert rows == [("acme", hashlib.sha256(key.encode()).hexdigest(), key[:12])]
    monkeypatch.setenv("BOOTSTRAP_API_KEYS", "acme:tooshort")
    assert script.main([]) == 2
