"""A version's container and pod fields as rendered (issue 22): passed to the Deployment as
Kubernetes names them, each manifest valid under kubernetes-validate strict, and the deploy's
wait for the pods set from the probes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlserve.spec import POD_FIELDS, Spec, load_spec
from tests.k8s_helpers import (
    kind,
    make_spec,
    of_kind,
    render_recorded,
    spec_dict,
    validate_manifest,
)
from tests.render_memo import render

REPO = Path(__file__).resolve().parent.parent
VLLM = REPO / "specs" / "vllm-gpu.yaml"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"


def _everything() -> dict[str, Any]:
    """A gateway-api spec whose canary sets every container and pod field."""
    doc = spec_dict("gateway-api", rich=True)
    doc["versions"][1].update(
        command=["python3", "-m", "vllm.entrypoints.openai.api_server"],
        args=["--model", "m", "--port=9002"],
        env={
            "PLAIN": "1",
            "HF_TOKEN": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
            "CONFIG": {"configMapKeyRef": {"name": "cfg", "key": "c", "optional": True}},
            "POD_IP": {"fieldRef": {"fieldPath": "status.podIP"}},
            "GPUS": {"resourceFieldRef": {"resource": "limits.nvidia.com/gpu"}},
        },
        envFrom=[{"secretRef": {"name": "keys"}}, {"configMapRef": {"name": "c"}, "prefix": "X_"}],
        volumes=[
            {"name": "shm", "mountPath": "/dev/shm", "emptyDir": {"medium": "Memory"}},
            {
                "name": "cache",
                "mountPath": "/models",
                "subPath": "llama",
                "persistentVolumeClaim": {"claimName": "model-cache", "readOnly": True},
            },
            {
                "name": "cfg",
                "mountPath": "/etc/vllm",
                "readOnly": True,
                "configMap": {"name": "vllm", "items": [{"key": "a", "path": "a.json"}]},
            },
            {
                "name": "tls",
                "mountPath": "/tls",
                "secret": {"secretName": "tls", "defaultMode": 256},
            },
        ],
        nodeSelector={"nvidia.com/gpu.present": "true"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        affinity={
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "x"}},
                        },
                    }
                ]
            }
        },
        topologySpreadConstraints=[
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
        priorityClassName="inference",
        runtimeClassName="nvidia",
        serviceAccountName="vllm",
        imagePullSecrets=[{"name": "regcred"}],
        podAnnotations={"prometheus.io/scrape": "true"},
        probes={
            "startup": {"initialDelaySeconds": 15, "periodSeconds": 10, "failureThreshold": 90},
            "readiness": {"timeoutSeconds": 4},
            "liveness": {"failureThreshold": 5},
        },
    )
    return doc


def _pod(resources: list[Any], name: str) -> dict[str, Any]:
    [dep] = [r for r in of_kind(resources, "Deployment") if r.name == name]
    pod: dict[str, Any] = dep.inputs["spec"]["template"]
    return pod


def test_every_field_reaches_the_pod_as_kubernetes_names_it_and_passes_strict() -> None:
    spec = Spec.from_dict(_everything())
    resources = render(spec)
    for r in resources:
        validate_manifest(r.inputs)
    template = _pod(resources, "fraud-detector-v2")
    pod, [container] = template["spec"], template["spec"]["containers"]
    v2 = _everything()["versions"][1]
    assert template["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    for key in POD_FIELDS:
        assert pod[key] == v2[key], key
    assert pod["volumes"] == [{"name": v["name"], **{k: v[k] for k in v if k.endswith(
        ("Dir", "Claim", "Map", "secret"))}} for v in v2["volumes"]]  # fmt: skip
    assert container["volumeMounts"] == [
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "cache", "mountPath": "/models", "subPath": "llama"},
        {"name": "cfg", "mountPath": "/etc/vllm", "readOnly": True},
        {"name": "tls", "mountPath": "/tls"},
    ]
    assert container["command"] == v2["command"]
    assert container["args"] == v2["args"]
    assert container["envFrom"] == v2["envFrom"]
    assert container["env"] == [
        {"name": "CONFIG", "valueFrom": v2["env"]["CONFIG"]},
        {"name": "GPUS", "valueFrom": v2["env"]["GPUS"]},
        {"name": "HF_TOKEN", "valueFrom": v2["env"]["HF_TOKEN"]},
        {"name": "PLAIN", "value": "1"},
        {"name": "POD_IP", "valueFrom": v2["env"]["POD_IP"]},
    ]
    assert container["startupProbe"] == {
        "httpGet": {"path": "/healthz", "port": "http"},
        "initialDelaySeconds": 15,
        "periodSeconds": 10,
        "failureThreshold": 90,
        "timeoutSeconds": 2,
    }
    assert container["readinessProbe"]["timeoutSeconds"] == 4
    assert container["livenessProbe"]["failureThreshold"] == 5


def test_what_mlserve_sets_stays_as_it_was_beside_the_new_fields() -> None:
    template = _pod(render(Spec.from_dict(_everything())), "fraud-detector-v2")
    [container] = template["spec"]["containers"]
    assert container["name"] == "model"
    assert container["ports"] == [{"name": "http", "containerPort": 9002, "protocol": "TCP"}]
    assert template["metadata"]["labels"]["app.kubernetes.io/version"] == "v2"


def test_a_version_without_the_new_fields_renders_as_before() -> None:
    [v1] = [r for r in of_kind(render(make_spec("istio", rich=True)), "Deployment")][:1]
    pod = v1.inputs["spec"]["template"]
    assert set(pod["spec"]) == {"containers"}
    assert "annotations" not in pod["metadata"]
    assert "progressDeadlineSeconds" not in v1.inputs["spec"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "initialDelaySeconds" not in pod["spec"]["containers"][0][probe]


# --- the wait for Ready follows the probes ---------------------------------------------------


def _timeouts(spec: Spec) -> dict[tuple[str, str], tuple[str, str]]:
    _, monitor = render_recorded(spec)
    return monitor.timeouts


def test_the_vllm_example_deploy_waits_as_long_as_its_startup_probe_allows() -> None:
    spec = load_spec(VLLM)
    timeouts = _timeouts(spec)
    # 120 startup probes 10 s apart, then a readiness period: 1205 s a pod; plus the 10 minutes
    # pulumi-kubernetes allows by default for scheduling and pulling the image.
    assert timeouts[(DEPLOYMENT, "llm-chat-v0-8-5")] == ("1805s", "3010s")  # 2 pods in turn
    assert timeouts[(DEPLOYMENT, "llm-chat-v0-9-2")] == ("1805s", "1805s")
    assert timeouts[(SERVICE, "llm-chat-v0-8-5")] == ("1805s", "1805s")
    [dep, _] = of_kind(render(spec), "Deployment")
    assert dep.inputs["spec"]["progressDeadlineSeconds"] == 1805


def test_health_path_alone_waits_its_five_minute_startup_and_keeps_the_default_deadline() -> None:
    spec = make_spec("gateway-api", rich=True)  # 3 replicas, healthPath, default probes
    timeouts = _timeouts(spec)
    assert timeouts[(DEPLOYMENT, "fraud-detector-v1")] == ("905s", "1515s")
    assert timeouts[(SERVICE, "fraud-detector-v1")] == ("905s", "905s")


def test_without_probes_the_provider_keeps_its_own_ten_minutes() -> None:
    timeouts = _timeouts(make_spec("gateway-api"))
    assert timeouts[(DEPLOYMENT, "fraud-detector-v1")] == ("", "")
    assert timeouts[(SERVICE, "fraud-detector-v1")] == ("", "")


def test_istio_all_versions_service_waits_for_the_slowest_first_start() -> None:
    doc = spec_dict("istio")
    doc["versions"][1].update(
        healthPath="/h", probes={"startup": {"periodSeconds": 10, "failureThreshold": 120}}
    )
    timeouts = _timeouts(Spec.from_dict(doc))
    assert timeouts[(SERVICE, "fraud-detector")] == ("1805s", "1805s")


# --- the vLLM example --------------------------------------------------------------------------


def test_the_vllm_example_validates_without_problems_and_notes_the_wait() -> None:
    spec = load_spec(VLLM)
    notes = [n.message for n in spec.notes]
    assert notes == [
        "note: the probes allow a pod of v0.8.5 20m05s to start: deploy waits up to 30m05s for "
        "it to become Ready, and up to 50m10s for an update, which replaces its 2 pods one at "
        "a time",
        "note: the probes allow a pod of v0.9.2 20m05s to start: deploy waits up to 30m05s for "
        "it to become Ready",
    ]


@pytest.mark.parametrize("version", ["llm-chat-v0-8-5", "llm-chat-v0-9-2"])
def test_the_vllm_example_renders_a_gpu_pod_that_passes_strict_validation(version: str) -> None:
    resources = render(load_spec(VLLM))
    for r in resources:
        validate_manifest(r.inputs)
    assert {kind(r) for r in resources} == {"Deployment", "Service", "HTTPRoute"}
    pod = _pod(resources, version)["spec"]
    [container] = pod["containers"]
    assert container["args"][:2] == ["--model", "meta-llama/Llama-3.1-8B-Instruct"]
    token = {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    assert {"name": "HF_TOKEN", "valueFrom": token} in container["env"]
    assert {"name": "shm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 1200
    [route] = of_kind(resources, "HTTPRoute")
    assert {rule["timeouts"]["request"] for rule in route.inputs["spec"]["rules"]} == {"600s"}


def test_no_secret_value_reaches_the_rendered_resources_or_the_recorded_spec() -> None:
    spec = load_spec(VLLM)
    resources = render(spec)
    assert "hf_" not in repr([r.to_json() for r in resources]) + repr(spec.to_dict())
    for dep in of_kind(resources, "Deployment"):
        [container] = dep.inputs["spec"]["template"]["spec"]["containers"]
        [token] = [e for e in container["env"] if e["name"] == "HF_TOKEN"]
        assert set(token) == {"name", "valueFrom"}
