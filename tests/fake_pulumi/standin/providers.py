"""The stand-in plays every resource provider. No cloud exists here: create returns the inputs as
outputs plus an id, update returns the new inputs, read returns what is stored. What each
provider decides (ids, autonaming, which changed inputs force a replacement, delete-before-
replace) is kept small, data-only, and sourced per provider below.
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from pathlib import Path
from typing import Any

from .props import UNKNOWN, plain

# --- pulumi-kubernetes --------------------------------------------------------------------------
# provider/pkg/provider/diff.go (forceNewProperties): .metadata.name and .metadata.namespace for
# every kind, plus per group/version/kind fields. Secret .data/.stringData and ConfigMap .data/
# .binaryData also force a replacement unless the provider enables mutable Secrets/ConfigMaps
# (enableSecretMutable / enableConfigMapMutable, both off by default). Only the kinds below are
# listed; any other kind (CustomResources such as Istio's VirtualService) has just the metadata.
_SELECTOR = [".spec.selector", ".spec.selector.matchExpressions", ".spec.selector.matchLabels"]
K8S_FORCE_NEW: dict[str, list[str]] = {
    "apps/v1/Deployment": _SELECTOR,
    "apps/v1/DaemonSet": _SELECTOR,
    "apps/v1/StatefulSet": [
        ".spec.podManagementPolicy", ".spec.revisionHistoryLimit", ".spec.serviceName",
        ".spec.volumeClaimTemplates", *_SELECTOR,
    ],
    "core/v1/Service": [".spec.clusterIP"],
    "core/v1/Secret": [".type", ".data", ".stringData"],
    "core/v1/ConfigMap": [".data", ".binaryData"],
    "core/v1/PersistentVolumeClaim": [
        ".spec.accessModes", ".spec.storageClassName", ".spec.volumeName", *_SELECTOR,
    ],
    "batch/v1/Job": [".spec.completions", ".spec.parallelism", ".spec.template", *_SELECTOR],
    "rbac.authorization.k8s.io/v1/RoleBinding": [".roleRef"],
    "rbac.authorization.k8s.io/v1/ClusterRoleBinding": [".roleRef"],
    "storage.k8s.io/v1/StorageClass": [".parameters", ".provisioner"],
}  # fmt: skip

# --- pulumi-kong (bridges kevholditch/terraform-provider-kong v6.5.1) ----------------------------
# kong/resource_kong_target.go: target, weight, upstream_id and tags are all ForceNew (a Target
# has no Update); kong/resource_kong_plugin.go: name is ForceNew. Upstream, Service and Route have
# no ForceNew field. Pulumi's bridge names the inputs in camelCase.
KONG_FORCE_NEW: dict[str, list[str]] = {
    "kong:index/target:Target": ["target", "weight", "upstreamId", "tags"],
    "kong:index/plugin:Plugin": ["name"],
}

# --- pulumi-azure-native ------------------------------------------------------------------------
# provider/pkg/provider/diff.go (calculateDetailedDiff): every parameter of the resource's PUT
# path forces a replacement, as do body properties marked forceNew in the provider's metadata.
# The paths below are the ARM REST paths (Microsoft.ApiManagement 2024-05-01, Microsoft.Resources)
# with path parameters in the SDK's camelCase. The forceNew body properties live in metadata this
# stand-in cannot read: only `location` is listed, on the assumption (not found in source) that a
# tracked resource's location cannot change in place.
_APIM = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.ApiManagement/service/{serviceName}"  # noqa: E501
AZURE_PATHS: dict[str, str] = {
    "azure-native:resources:ResourceGroup": (
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
    ),
    "azure-native:apimanagement:ApiManagementService": _APIM,
    "azure-native:apimanagement:Api": _APIM + "/apis/{apiId}",
    "azure-native:apimanagement:ApiVersionSet": _APIM + "/apiVersionSets/{versionSetId}",
    "azure-native:apimanagement:ApiPolicy": _APIM + "/apis/{apiId}/policies/{policyId}",
    "azure-native:apimanagement:ApiRelease": _APIM + "/apis/{apiId}/releases/{releaseId}",
    "azure-native:apimanagement:Backend": _APIM + "/backends/{backendId}",
}  # fmt: skip
AZURE_BODY_FORCE_NEW = ["location"]


# Outputs a provider computes beyond the inputs. Only what is documented is listed: an API
# Management instance's gateway is https://<name>.azure-api.net (learn.microsoft.com, "Azure API
# Management terminology": the default gateway hostname). Unknown during a preview, as computed
# outputs are (pkg/resource/deploy/step.go: a preview's Create returns no values for them).
COMPUTED: dict[str, dict[str, str]] = {
    "azure-native:apimanagement:ApiManagementService": {
        "gatewayUrl": "https://{serviceName}.azure-api.net"
    },
}


def outputs(
    type_token: str, inputs: dict[str, Any], preview: bool, old: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What Create/Update return: the inputs, plus the computed outputs the provider fills in."""
    out = dict(inputs)
    values = plain(inputs)
    for key, template in COMPUTED.get(type_token, {}).items():
        if preview:
            out[key] = UNKNOWN
        else:
            out[key] = re.sub(r"{(\w+)}", lambda m: str(values.get(m.group(1), "")), template)
    if type_token == "kubernetes:apps/v1:Deployment" and not preview:
        out.update(_deployment_live(values, plain(old or {})))
    return out


def _deployment_live(inputs: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """A Deployment as pulumi-kubernetes returns it after its await (provider/pkg/await: the
    live object once the rollout is complete, deployment.go): spec.replicas as the API server
    keeps it (the declared count; without one, the live count, which an autoscaler may have set,
    or the API server's default of 1 for a new object: apps/v1 SetDefaults_Deployment) and a
    status with that many replicas Ready. No autoscaler runs here: the count it would set is
    not imitated."""
    spec = dict(inputs.get("spec") or {})
    live = (old.get("spec") or {}).get("replicas")
    replicas = spec.get("replicas", live if isinstance(live, int | float) else 1)
    spec["replicas"] = replicas
    status = {"replicas": replicas, "updatedReplicas": replicas}
    if replicas:  # Kubernetes leaves zero counts out of a Deployment's status
        status.update(readyReplicas=replicas, availableReplicas=replicas)
    return {"spec": spec, "status": status}


def package(type_token: str) -> str:
    """`kubernetes:apps/v1:Deployment` -> kubernetes; `pulumi:providers:kong` -> kong."""
    parts = type_token.split(":")
    return parts[2] if parts[:2] == ["pulumi", "providers"] else parts[0]


def _k8s_gvk(type_token: str) -> str:
    _, gv, kind = type_token.split(":", 2)
    return f"{gv}/{kind}"


def _matches(force_new: str, path: str) -> bool:
    """A changed path falls under a forceNew property: `.spec.selector` covers
    `spec.selector.matchLabels.app`; `[*]` stands for any index."""
    pattern = re.escape(force_new.lstrip(".")).replace(r"\[\*\]", r"\[\d+\]")
    return re.match(f"{pattern}($|[.\\[])", path) is not None


def _named(inputs: dict[str, Any]) -> bool:
    annotations = (plain(inputs.get("metadata")) or {}).get("annotations") or {}
    return annotations.get("pulumi.com/autonamed") != "true"


def check(
    type_token: str, name: str, news: dict[str, Any], olds: dict[str, Any] | None
) -> dict[str, Any]:
    """The provider's Check: defaults applied to the inputs. pulumi-kubernetes autonames an object
    without metadata.name (`NAME-<random>` and the `pulumi.com/autonamed` annotation), keeping the
    old name on later updates (provider/pkg/metadata/naming.go)."""
    if package(type_token) != "kubernetes" or type_token.startswith("pulumi:"):
        return news
    meta = dict(plain(news.get("metadata")) or {}) if news.get("metadata") != UNKNOWN else None
    if meta is None or meta.get("name"):
        return news
    old_meta = (plain((olds or {}).get("metadata")) or {}) if olds else {}
    if olds and not _named(olds) and old_meta.get("name"):
        meta["name"] = old_meta["name"]
    else:
        meta["name"] = f"{name}-{secrets.token_hex(4)}"
    meta["annotations"] = {**(meta.get("annotations") or {}), "pulumi.com/autonamed": "true"}
    return {**news, "metadata": meta}


def replacement(
    type_token: str, old: dict[str, Any], new: dict[str, Any], changed: list[str]
) -> tuple[list[str], bool]:
    """(changed paths that force a replacement, whether the provider asks delete-before-replace)."""
    pkg = package(type_token)
    if type_token.startswith("pulumi:providers:"):
        return [], False  # DiffConfig: see Deployment.provider_changed
    if pkg == "kubernetes":
        force = [
            ".metadata.name",
            ".metadata.namespace",
            *K8S_FORCE_NEW.get(_k8s_gvk(type_token), []),
        ]
        replaces = [p for p in changed if any(_matches(f, p) for f in force)]
        # provider.go Diff: delete before replacing when the object keeps its user-given name in
        # the same namespace (two objects cannot share it).
        o, n = plain(old.get("metadata")) or {}, plain(new.get("metadata")) or {}
        dbr = (
            bool(replaces)
            and _named(new)
            and o.get("name") == n.get("name")
            and (o.get("namespace") == n.get("namespace"))
        )
        return replaces, dbr
    if pkg == "kong":
        force = KONG_FORCE_NEW.get(type_token, [])
        return [p for p in changed if any(_matches(f, p) for f in force)], False
    if pkg == "azure-native":
        path = AZURE_PATHS.get(type_token, "")
        force = [p for p in re.findall(r"{(\w+)}", path) if p != "subscriptionId"]
        force += AZURE_BODY_FORCE_NEW
        return [p for p in changed if any(_matches(f, p) for f in force)], False
    return [], False


def new_id(type_token: str, urn_name: str, inputs: dict[str, Any]) -> str:
    """The id a create returns: pulumi-kubernetes uses `namespace/name` (or `name`) of the object
    (provider.go Create, fqObjName); azure-native the ARM id of its PUT path; others a UUID."""
    pkg = package(type_token)
    values = plain(inputs)
    if type_token.startswith("pulumi:providers:"):
        return str(uuid.uuid4())  # providers/registry.go Create
    if pkg == "kubernetes":
        meta = values.get("metadata") or {}
        name = meta.get("name") or urn_name
        return f"{meta['namespace']}/{name}" if meta.get("namespace") else str(name)
    if pkg == "azure-native" and type_token in AZURE_PATHS:
        params = {"subscriptionId": "00000000-0000-0000-0000-000000000000", **values}
        return re.sub(
            r"{(\w+)}", lambda m: str(params.get(m.group(1), urn_name)), AZURE_PATHS[type_token]
        )
    return str(uuid.uuid4())


def plugins_dir() -> Path:
    return Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi") / "plugins"


def plugin_error(name: str, version: str | None) -> str | None:
    """None if the resource plugin is installed, else the engine's error for it.

    sdk/go/common/workspace (InstallPluginError): automatic acquisition is tried and fails here,
    since the stand-in has no network; with PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION the
    message is the plain "no resource plugin ... found" (pkg/resource/deploy/providers/registry.go
    loadProvider). The download error below is what an offline Go HTTP client reports; the
    download itself is not imitated.
    """
    directory = plugins_dir()
    if version:
        if (directory / f"resource-{name}-v{version}").is_dir():
            return None
    elif directory.exists() and any(directory.glob(f"resource-{name}-v*")):
        return None
    at = f" at version v{version}" if version else ""
    if os.environ.get("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "").lower() in ("1", "true"):
        return f"no resource plugin 'pulumi-resource-{name}' found in the workspace{at}"
    v = f" v{version}" if version else ""
    tag = f"v{version}" if version else "latest"
    return (
        f"Could not automatically download and install resource plugin 'pulumi-resource-{name}'"
        f"{at}, install the plugin using `pulumi plugin install resource {name}{v}`: "
        f'Get "https://api.github.com/repos/pulumi/pulumi-{name}/releases/tags/{tag}": '
        "dial tcp: lookup api.github.com: no such host"
    )
