"""A version's container and pod fields (issue 22): each with a good and a bad value, the bad
one reported at its file:line:column with the spec path, as every other field."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlserve.errors import SpecError
from mlserve.spec import Spec, load_spec

HEAD = """\
apiVersion: mlserve/v1
name: llm
gateway:
  type: istio
  host: models.example.com
versions:
  - name: v1
    image: vllm/vllm-openai:v0.8.5
    port: 8000
"""  # the version's fields below start on line 10
TAIL = "traffic:\n  stable: v1\n"


def _load(tmp_path: Path, fields: str) -> Spec:
    path = tmp_path / "spec.yaml"
    path.write_text(HEAD + fields + TAIL, encoding="utf-8")
    return load_spec(path)


def _problems(tmp_path: Path, fields: str) -> list[str]:
    try:
        _load(tmp_path, fields)
    except SpecError as e:
        return [str(p).removeprefix(f"{tmp_path}/spec.yaml:") for p in e.problems]
    return []


GOOD = {
    "command": "    command: [python3, -m, vllm.entrypoints.openai.api_server]\n",
    "args": "    args: [--model, meta-llama/Llama-3.1-8B-Instruct, --port, '8000']\n",
    "env": (
        "    env:\n"
        "      HF_HOME: /cache\n"
        "      HF_TOKEN: {secretKeyRef: {name: hf-token, key: token}}\n"
        "      VLLM_CONFIG: {configMapKeyRef: {name: vllm, key: config, optional: true}}\n"
        "      POD_IP: {fieldRef: {fieldPath: status.podIP}}\n"
    ),
    "envFrom": (
        "    envFrom: [{secretRef: {name: keys}}, {configMapRef: {name: cfg}, prefix: VLLM_}]\n"
    ),
    "volumes": (
        "    volumes:\n"
        "      - {name: shm, mountPath: /dev/shm, emptyDir: {medium: Memory, sizeLimit: 16Gi}}\n"
        "      - {name: cache, mountPath: /cache, persistentVolumeClaim: {claimName: models}}\n"
        "      - {name: cfg, mountPath: /etc/vllm, readOnly: true, configMap: {name: vllm}}\n"
        "      - {name: tls, mountPath: /tls, subPath: certs, secret: {secretName: tls}}\n"
    ),
    "nodeSelector": "    nodeSelector: {nvidia.com/gpu.present: 'true', pool: gpu}\n",
    "tolerations": (
        "    tolerations:\n"
        "      - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}\n"
        "      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute,"
        " tolerationSeconds: 30}\n"
    ),
    "affinity": (
        "    affinity:\n"
        "      nodeAffinity:\n"
        "        requiredDuringSchedulingIgnoredDuringExecution:\n"
        "          nodeSelectorTerms:\n"
        "            - matchExpressions:\n"
        "                - {key: nvidia.com/gpu.product, operator: In, values: [NVIDIA-L4]}\n"
    ),
    "topologySpreadConstraints": (
        "    topologySpreadConstraints:\n"
        "      - maxSkew: 1\n"
        "        topologyKey: topology.kubernetes.io/zone\n"
        "        whenUnsatisfiable: ScheduleAnyway\n"
        "        labelSelector: {matchLabels: {app.kubernetes.io/name: llm}}\n"
    ),
    "priorityClassName": "    priorityClassName: inference-high\n",
    "runtimeClassName": "    runtimeClassName: nvidia\n",
    "serviceAccountName": "    serviceAccountName: vllm\n",
    "imagePullSecrets": "    imagePullSecrets: [{name: regcred}]\n",
    "podAnnotations": (
        "    podAnnotations: {prometheus.io/scrape: 'true', prometheus.io/port: '8000'}\n"
    ),
    "probes": (
        "    healthPath: /health\n"
        "    probes:\n"
        "      startup: {initialDelaySeconds: 30, periodSeconds: 10, failureThreshold: 120}\n"
        "      readiness: {periodSeconds: 5, timeoutSeconds: 3}\n"
        "      liveness: {failureThreshold: 5}\n"
    ),
}


@pytest.mark.parametrize("field", sorted(GOOD))
def test_a_good_value_loads_and_round_trips(tmp_path: Path, field: str) -> None:
    spec = _load(tmp_path, GOOD[field])
    [version] = spec.to_dict()["versions"]
    assert field in version
    assert Spec.from_dict(spec.to_dict(), source=spec.source) == spec


def test_a_good_value_is_kept_as_written(tmp_path: Path) -> None:
    v = _load(tmp_path, "".join(GOOD.values())).versions[0]
    assert v.args == ("--model", "meta-llama/Llama-3.1-8B-Instruct", "--port", "8000")
    assert v.env["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    assert (v.volumes[0].name, v.volumes[0].source, dict(v.volumes[0].details)) == (
        "shm",
        "emptyDir",
        {"medium": "Memory", "sizeLimit": "16Gi"},
    )
    assert v.pod["tolerations"][0] == {
        "key": "nvidia.com/gpu",
        "operator": "Exists",
        "effect": "NoSchedule",
    }
    assert v.probes["startup"] == {
        "initialDelaySeconds": 30,
        "periodSeconds": 10,
        "failureThreshold": 120,
    }


BAD = [
    pytest.param(
        "    command: python3 -m vllm\n",
        ["10:14: versions[0].command: 'python3 -m vllm' is not of type 'array'"],
        id="command",
    ),
    pytest.param(
        "    args: [--max-model-len, 8192]\n",
        ['10:29: versions[0].args[1]: 8192 is a number; quote it ("8192")'],
        id="args",
    ),
    pytest.param(
        "    args: [--port, '9000']\n",
        [
            "10:20: versions[0].args[1]: the server is told to listen on port 9000, but "
            "versions[0].port is 8000: mlserve's Service and probes reach the container on "
            "port; set port: 9000"
        ],
        id="args-port-conflict",
    ),
    pytest.param(
        "    command: [vllm, serve, --port=8080]\n",
        [
            "10:28: versions[0].command[2]: the server is told to listen on port 8080, but "
            "versions[0].port is 8000: mlserve's Service and probes reach the container on "
            "port; set port: 8080"
        ],
        id="command-port-conflict",
    ),
    pytest.param(
        "    env:\n      HF_TOKEN: {secretKeyref: {name: hf, key: token}}\n",
        [
            "11:18: versions[0].env.HF_TOKEN: unknown key 'secretKeyref' "
            "(did you mean 'secretKeyRef'?)"
        ],
        id="env-misspelt-reference",
    ),
    pytest.param(
        "    env:\n      HF_TOKEN: {secretKeyRef: {name: hf}}\n",
        ["11:18: versions[0].env.HF_TOKEN.secretKeyRef: 'key' is required"],
        id="env-reference-without-key",
    ),
    pytest.param(
        "    env:\n      HF_TOKEN: {secretKeyRef: {key: token}}\n",
        ["11:18: versions[0].env.HF_TOKEN.secretKeyRef: 'name' is required: the Secret to read"],
        id="env-reference-without-name",
    ),
    pytest.param(
        "    env:\n      HF_TOKEN: {}\n",
        [
            "11:17: versions[0].env.HF_TOKEN: give one of secretKeyRef, configMapKeyRef, "
            "fieldRef or resourceFieldRef"
        ],
        id="env-empty-reference",
    ),
    pytest.param(
        "    env:\n      X: [a, b]\n",
        ["11:10: versions[0].env.X: expected a string or a mapping, not a list"],
        id="env-list",
    ),
    pytest.param(
        "    envFrom: [{secretRef: {name: a}, configMapRef: {name: b}}]\n",
        ["10:15: versions[0].envFrom[0]: give configMapRef or secretRef, not both"],
        id="envFrom-two-sources",
    ),
    pytest.param(
        "    envFrom: [{prefix: HF_}]\n",
        ["10:15: versions[0].envFrom[0]: exactly one of configMapRef or secretRef is required"],
        id="envFrom-no-source",
    ),
    pytest.param(
        "    volumes:\n      - {name: shm, mountPath: /dev/shm}\n",
        [
            "11:9: versions[0].volumes[0]: exactly one of emptyDir or persistentVolumeClaim or "
            "configMap or secret is required"
        ],
        id="volume-without-source",
    ),
    pytest.param(
        "    volumes:\n      - {name: shm, mountPath: dev/shm, emptyDir: {medium: memory}}\n",
        [
            "11:32: versions[0].volumes[0].mountPath: 'dev/shm' is not an absolute path "
            "without ':'",
        ],
        id="volume-relative-path",
    ),
    pytest.param(
        "    volumes:\n      - {name: shm, mountPath: /dev/shm, emptyDir: {medium: memory}}\n",
        [
            "11:61: versions[0].volumes[0].emptyDir.medium: 'memory' is not a medium: Memory "
            "(RAM), HugePages, or leave it out for the node's disk (did you mean 'Memory'?)"
        ],
        id="volume-medium",
    ),
    pytest.param(
        "    volumes:\n"
        "      - {name: a, mountPath: /data, emptyDir: {}}\n"
        "      - {name: a, mountPath: /data/, emptyDir: {}}\n",
        [
            "12:16: versions[0].volumes[1].name: 'a' is also volumes[0].name",
            "12:30: versions[0].volumes[1].mountPath: '/data/' is also volumes[0].mountPath",
        ],
        id="volume-duplicates",
    ),
    pytest.param(
        "    volumes:\n      - {name: c, mountPath: /c, persistentVolumeClaim: {claim: models}}\n",
        [
            "11:34: versions[0].volumes[0].persistentVolumeClaim: 'claimName' is required",
            "11:58: versions[0].volumes[0].persistentVolumeClaim: unknown key 'claim' "
            "(did you mean 'claimName'?)",
        ],
        id="volume-pvc-misspelt",
    ),
    pytest.param(
        "    nodeSelector: {nvidia.com/gpu.present: true}\n",
        [
            '10:44: versions[0].nodeSelector["nvidia.com/gpu.present"]: true is a boolean; '
            'quote it ("true")'
        ],
        id="nodeSelector",
    ),
    pytest.param(
        "    tolerations: [{key: nvidia.com/gpu, operator: exists, effect: NoSchedul}]\n",
        [
            "10:51: versions[0].tolerations[0].operator: 'exists' is not one of Equal, Exists "
            "(did you mean 'Exists'?)",
            "10:67: versions[0].tolerations[0].effect: 'NoSchedul' is not one of NoSchedule, "
            "PreferNoSchedule, NoExecute (did you mean 'NoSchedule'?)",
        ],
        id="tolerations",
    ),
    pytest.param(
        "    tolerations: [{key: nvidia.com/gpu, operator: Exists, value: 'present'}]\n",
        ["10:66: versions[0].tolerations[0].value: must be empty when operator is Exists"],
        id="tolerations-exists-with-value",
    ),
    pytest.param(
        "    tolerations: [{key: x, effect: NoSchedule, tolerationSeconds: 30}]\n",
        [
            "10:48: versions[0].tolerations[0].tolerationSeconds: applies only to effect "
            "NoExecute (how long a pod stays on a node tainted after it)"
        ],
        id="tolerations-seconds",
    ),
    pytest.param(
        "    affinity: {nodeAffinity: {required: {}}}\n",
        [
            "10:31: versions[0].affinity.nodeAffinity: unknown key 'required'; allowed here: "
            "preferredDuringSchedulingIgnoredDuringExecution, "
            "requiredDuringSchedulingIgnoredDuringExecution"
        ],
        id="affinity",
    ),
    pytest.param(
        "    topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone}]\n",
        [
            "10:33: versions[0].topologySpreadConstraints[0]: 'whenUnsatisfiable' is required",
        ],
        id="topologySpreadConstraints",
    ),
    pytest.param(
        "    priorityClassName: High_Priority\n",
        [
            "10:24: versions[0].priorityClassName: 'High_Priority' is not a DNS-1123 subdomain "
            "of at most 253 characters (lowercase letters, digits, '-' and '.')"
        ],
        id="priorityClassName",
    ),
    pytest.param(
        "    runtimeClassName: NVIDIA\n",
        [
            "10:23: versions[0].runtimeClassName: 'NVIDIA' is not a DNS-1123 subdomain of at "
            "most 253 characters (lowercase letters, digits, '-' and '.')"
        ],
        id="runtimeClassName",
    ),
    pytest.param(
        "    serviceAccountName: ''\n",
        [
            "10:25: versions[0].serviceAccountName: '' is not a DNS-1123 subdomain of at most "
            "253 characters (lowercase letters, digits, '-' and '.')"
        ],
        id="serviceAccountName",
    ),
    pytest.param(
        "    imagePullSecrets: [regcred]\n",
        ["10:24: versions[0].imagePullSecrets[0]: 'regcred' is not of type 'object'"],
        id="imagePullSecrets",
    ),
    pytest.param(
        "    podAnnotations: {prometheus.io/scrape: on}\n",
        [
            '10:44: versions[0].podAnnotations["prometheus.io/scrape"]: true is a boolean; '
            'quote it ("on")'
        ],
        id="podAnnotations",
    ),
    pytest.param(
        "    probes: {startup: {periodSeconds: 10}}\n",
        [
            "10:5: versions[0].probes: sets the timings of the HTTP probes on healthPath, and "
            "there is none: set healthPath"
        ],
        id="probes-without-healthPath",
    ),
    pytest.param(
        "    healthPath: /health\n    probes: {startup: {periodSecond: 10, failureThreshold: 0}}\n",
        [
            "11:24: versions[0].probes.startup: unknown key 'periodSecond' (did you mean "
            "'periodSeconds'?)",
            "11:60: versions[0].probes.startup.failureThreshold: 0 is less than the minimum of 1",
        ],
        id="probes",
    ),
    pytest.param(
        "    healthPath: /health\n    probes: {ready: {}}\n",
        [
            "11:14: versions[0].probes: unknown key 'ready'; allowed here: startup, readiness, "
            "liveness"
        ],
        id="probes-kind",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), BAD)
def test_a_bad_value_is_reported_at_its_position(
    tmp_path: Path, fields: str, expected: list[str]
) -> None:
    assert _problems(tmp_path, fields) == expected


def test_an_unknown_version_key_with_no_close_match_lists_none_but_a_close_one_suggests(
    tmp_path: Path,
) -> None:
    assert _problems(tmp_path, "    nodeselector: {a: b}\n    toleration: []\n") == [
        "10:5: versions[0]: unknown key 'nodeselector' (did you mean 'nodeSelector'?)",
        "11:5: versions[0]: unknown key 'toleration' (did you mean 'tolerations'?)",
    ]


def test_container_fields_apply_only_to_an_image_version(tmp_path: Path) -> None:
    text = (
        HEAD.replace("type: istio", "type: kong")
        .replace("  host: models.example.com\n", "")
        .replace("    image: vllm/vllm-openai:v0.8.5\n    port: 8000\n", "    url: http://a:80\n")
    )
    (tmp_path / "spec.yaml").write_text(
        text + "    args: [--x]\n    tolerations: []\n" + TAIL, encoding="utf-8"
    )
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "spec.yaml")
    assert [str(p).split(": ", 1)[1] for p in err.value.problems] == [
        "versions[0].args: args applies only to a version with an image",
        "versions[0].tolerations: tolerations applies only to a version with an image",
    ]


# --- secrets: only references in the spec; a value written there is never echoed -------------


def test_a_token_written_where_a_reference_belongs_is_not_echoed(tmp_path: Path) -> None:
    token = "hf_" + "x" * 34
    lines = _problems(tmp_path, f"    env:\n      HF_TOKEN: {{secretKeyRef: {token}}}\n")
    assert lines == [
        "11:32: versions[0].env.HF_TOKEN.secretKeyRef: a value (not shown) is not of type 'object'"
    ]
    assert not any(token in line for line in lines)


def test_a_plain_value_for_a_credential_name_gets_a_warning_without_the_value(
    tmp_path: Path,
) -> None:
    token = "hf_" + "y" * 34
    spec = _load(
        tmp_path, f"    env:\n      HF_TOKEN: {token}\n      TOKENIZERS_PARALLELISM: 'false'\n"
    )
    notes = [
        str(n).removeprefix(f"{tmp_path}/spec.yaml:")
        for n in spec.notes
        if n.path.startswith("versions")
    ]
    assert notes == [
        "11:7: versions[0].env.HF_TOKEN: warning: HF_TOKEN looks like a credential, and its "
        "value is written in the spec (and so in the stack's config and in render's output); "
        "keep it in a Secret and write HF_TOKEN: {secretKeyRef: {name: ..., key: ...}}"
    ]
    assert token not in "".join(notes)


def test_a_secret_reference_keeps_the_value_out_of_the_normalized_spec(tmp_path: Path) -> None:
    spec = _load(tmp_path, GOOD["env"])
    recorded = spec.to_dict()["versions"][0]["env"]
    assert recorded["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "token"}}


# --- the probes decide how long deploy waits --------------------------------------------------


def test_probes_allowing_20_minutes_get_a_note_with_the_deploy_wait(tmp_path: Path) -> None:
    spec = _load(
        tmp_path,
        "    replicas: 2\n    healthPath: /health\n"
        "    probes: {startup: {periodSeconds: 10, failureThreshold: 120}}\n",
    )
    notes = [
        str(n).removeprefix(f"{tmp_path}/spec.yaml:")
        for n in spec.notes
        if n.path.startswith("versions")
    ]
    assert notes == [
        "12:13: versions[0].probes: note: the probes allow a pod of v1 20m05s to start: deploy "
        "waits up to 30m05s for it to become Ready, and up to 50m10s for an update, which "
        "replaces its 2 pods one at a time"
    ]


def test_health_path_alone_gets_no_note(tmp_path: Path) -> None:
    notes = _load(tmp_path, "    healthPath: /health\n").notes
    assert [n for n in notes if n.path.startswith("versions")] == []
