"""doctor's probes: does the cluster, Kong's Admin API or Azure answer with the credentials the
providers will use? Each contacts one endpoint with a short timeout and never prints a secret.

What each provider reads is imitated from its source, named beside the code; a probe that cannot
be made offline says so instead of passing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

TIMEOUT = 3.0  # seconds: doctor must not hang on an unreachable address


class Result(NamedTuple):
    ok: bool
    detail: str
    fix: str = ""


def _get(
    url: str, headers: Mapping[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int | None, Any]:
    """GET `url`: (HTTP status, parsed JSON body or None), or (None, why it failed)."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
            return response.status, _json(response.read(1 << 20))
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read(1 << 20))
    except urllib.error.URLError as e:
        return None, _reason(e.reason)
    except (OSError, ValueError) as e:  # a timeout while reading, a malformed URL
        return None, _reason(e)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _reason(error: object) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}"
    if isinstance(error, TimeoutError):
        return f"no answer within {TIMEOUT:g} s"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


# --- Kubernetes -----------------------------------------------------------------------------

IN_CLUSTER = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def kubeconfig_paths() -> list[Path]:
    """KUBECONFIG's files (os.pathsep-separated), else ~/.kube/config, as kubectl reads them."""
    given = [Path(p).expanduser() for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return given or [Path.home() / ".kube" / "config"]


def _merged_kubeconfig(paths: list[Path]) -> dict[str, Any]:
    """Several kubeconfig files as one: the first file to set a value or name an entry wins
    (kubernetes/client-go tools/clientcmd/loader.go, ClientConfigLoadingRules.Load)."""
    import yaml

    merged: dict[str, Any] = {"current-context": None, "contexts": {}, "clusters": {}, "users": {}}
    for path in paths:
        if not path.is_file():
            continue
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        merged["current-context"] = merged["current-context"] or doc.get("current-context")
        for section, key in (("contexts", "context"), ("clusters", "cluster"), ("users", "user")):
            for entry in doc.get(section) or []:
                # relative file paths in an entry are relative to the file that holds it
                merged[section].setdefault(entry.get("name"), (entry.get(key) or {}, path.parent))
    return merged


class _Kube(NamedTuple):
    """The API server doctor contacts and how: the current context's, or the pod's own."""

    where: str  # "context 'x': https://..." or "in-cluster service account: https://..."
    label: str  # what a problem with the settings themselves is reported against
    server: str
    headers: dict[str, str]
    auth: str  # how the request authenticates, for messages
    note: str  # "; credentials come from ..." when a plugin would supply them
    tls: Callable[[], AbstractContextManager[ssl.SSLContext]]


def _kube() -> _Kube | Result:
    """The current context's server and credentials (the pod's service account in a cluster),
    or what is wrong with them."""
    paths = kubeconfig_paths()
    if not any(p.is_file() for p in paths):
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            return _in_cluster()
        return Result(
            False,
            "no KUBECONFIG and no ~/.kube/config",
            "export KUBECONFIG, or create ~/.kube/config",
        )
    try:
        config = _merged_kubeconfig(paths)
    except (OSError, ValueError, AttributeError) as e:
        return Result(False, f"cannot read {os.pathsep.join(map(str, paths))}: {e}", "fix the file")
    name = config.get("current-context")
    if not name:
        return Result(False, "no current-context", "kubectl config use-context NAME")
    if name not in config["contexts"]:
        return Result(False, f"context {name!r} is not defined", "kubectl config use-context NAME")
    context, _ = config["contexts"][name]
    cluster, cluster_dir = config["clusters"].get(context.get("cluster"), ({}, Path()))
    user, user_dir = config["users"].get(context.get("user"), ({}, Path()))
    server = cluster.get("server")
    if not server:
        return Result(
            False,
            f"context {name!r}: cluster {context.get('cluster')!r} has no server",
            "fix KUBECONFIG",
        )
    try:
        headers, auth, note = _kube_auth(user, user_dir)
    except OSError as e:
        return Result(
            False, f"context {name!r}: cannot read the token file: {_reason(e)}", "fix KUBECONFIG"
        )
    return _Kube(
        f"context {name!r}: {server}",
        f"context {name!r}",
        server,
        headers,
        auth,
        note,
        lambda: _kube_tls(cluster, cluster_dir, user, user_dir),
    )


def _kube_get(kube: _Kube, path: str) -> tuple[int | None, Any] | Result:
    try:
        with kube.tls() as tls:
            return _get(kube.server.rstrip("/") + path, kube.headers, tls)
    except (OSError, ValueError, ssl.SSLError) as e:
        return Result(False, f"{kube.label}: bad TLS settings: {_reason(e)}", "fix KUBECONFIG")


def kubernetes() -> Result:
    """The current context's API server answers GET /version with the context's credentials."""
    kube = _kube()
    if isinstance(kube, Result):
        return kube
    got = _kube_get(kube, "/version")
    if isinstance(got, Result):
        return got
    status, body = got
    return _kube_result(kube.where, status, body, kube.auth, kube.note)


def kubernetes_serves(group_version: str, resource: str, install: str) -> Result:
    """The cluster serves `resource` in `group_version`: its CRD is installed and established.

    Read from API discovery, GET /apis/GROUP/VERSION, which answers an APIResourceList naming
    the resources (apimachinery pkg/apis/meta/v1/types.go) and 404 for a group version nobody
    serves; the system:discovery ClusterRole lets every authenticated user read it, where reading
    the CRD itself needs rights a deployer may not have. `install` is the fix when it is not."""
    kube = _kube()
    if isinstance(kube, Result):
        return kube
    got = _kube_get(kube, f"/apis/{group_version}")
    if isinstance(got, Result):
        return got
    status, body = got
    what = f"{resource}.{group_version}"
    if status == 401 and kube.note:
        return Result(True, f"{what} not checked (401 without credentials){kube.note}")
    if status == 404:
        return Result(False, f"{kube.where} does not serve {group_version}", install)
    if status == 200:
        listed = body.get("resources") if isinstance(body, dict) else None
        names = {r.get("name") for r in listed or [] if isinstance(r, dict)}
        if resource in names:
            return Result(True, f"{kube.where} serves {what}")
        return Result(False, f"{kube.where} serves {group_version} without {resource}", install)
    return _kube_result(kube.where, status, body, kube.auth, kube.note)


class Namespace(NamedTuple):
    """What the current context's API server says of a namespace."""

    state: str  # "exists", "missing", "terminating", or "unknown" (the server could not tell us)
    where: str  # the context and server asked, for messages


def namespace(name: str) -> Namespace:
    """GET /api/v1/namespaces/NAME in the current context (the pod's own in a cluster), as
    pulumi-kubernetes would reach it: its default provider uses the same KUBECONFIG context.

    A namespace that does not exist answers 404 with a Status whose details name the kind
    `namespaces` (apimachinery pkg/api/errors NewNotFound); one being deleted answers 200 with
    status.phase Terminating, and the NamespaceLifecycle admission plugin then refuses new
    objects in it. Anything else (no kubeconfig, an unreachable server, credentials a plugin
    would supply, no right to read namespaces, which a namespace-scoped deployer may lack) is
    "unknown": the caller goes on and the engine reports what it meets."""
    kube = _kube()
    if isinstance(kube, Result):
        return Namespace("unknown", "")
    got = _kube_get(kube, f"/api/v1/namespaces/{name}")
    if isinstance(got, Result):
        return Namespace("unknown", kube.where)
    status, body = got
    if status == 200 and isinstance(body, dict):
        phase = (body.get("status") or {}).get("phase")
        return Namespace("terminating" if phase == "Terminating" else "exists", kube.where)
    details = body.get("details") if isinstance(body, dict) else None
    if status == 404 and isinstance(details, dict) and details.get("kind") == "namespaces":
        return Namespace("missing", kube.where)
    return Namespace("unknown", kube.where)


def _kube_auth(user: Mapping[str, Any], base: Path) -> tuple[dict[str, str], str, str]:
    """(headers, how the request authenticates, a note) from a kubeconfig user entry."""
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = (base / user["tokenFile"]).read_text().strip()
    if token:
        return {"Authorization": f"Bearer {token}"}, "a bearer token", ""
    if user.get("username") and user.get("password"):
        pair = f"{user['username']}:{user['password']}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}, "basic auth", ""
    if user.get("client-certificate") or user.get("client-certificate-data"):
        return {}, "a client certificate", ""
    plugin = (user.get("exec") or {}).get("command") or (user.get("auth-provider") or {}).get(
        "name"
    )
    if plugin:
        # Running a credential plugin can open a browser or prompt: doctor does not.
        return (
            {},
            "no credentials",
            f"; credentials come from {plugin!r}, which doctor does not run",
        )
    return {}, "no credentials", ""


@contextmanager
def _kube_tls(
    cluster: Mapping[str, Any], cluster_dir: Path, user: Mapping[str, Any], user_dir: Path
) -> Iterator[ssl.SSLContext]:
    tls = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        tls.load_verify_locations(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
    elif cluster.get("certificate-authority"):
        tls.load_verify_locations(cafile=str(cluster_dir / cluster["certificate-authority"]))
    with tempfile.TemporaryDirectory(prefix="mlserve-doctor-") as tmp:
        cert = _pem_file(user, "client-certificate", user_dir, Path(tmp) / "cert.pem")
        key = _pem_file(user, "client-key", user_dir, Path(tmp) / "key.pem")
        if cert is not None:
            tls.load_cert_chain(cert, key)
        yield tls


def _pem_file(user: Mapping[str, Any], field: str, base: Path, scratch: Path) -> str | None:
    """A file holding `field`'s PEM: its -data written to a private scratch file, or its path."""
    if user.get(f"{field}-data"):
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(user[f"{field}-data"]))
        return str(scratch)
    return str(base / user[field]) if user.get(field) else None


def _in_cluster() -> _Kube | Result:
    host, port = (
        os.environ["KUBERNETES_SERVICE_HOST"],
        os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
    )
    server = f"https://{host}:{port}"
    try:
        ssl.create_default_context(cafile=str(IN_CLUSTER / "ca.crt"))
        token = (IN_CLUSTER / "token").read_text().strip()
    except OSError as e:
        return Result(False, f"in-cluster: {_reason(e)}", "mount the pod's service account token")

    @contextmanager
    def tls() -> Iterator[ssl.SSLContext]:
        yield ssl.create_default_context(cafile=str(IN_CLUSTER / "ca.crt"))

    return _Kube(
        f"in-cluster service account: {server}",
        "in-cluster",
        server,
        {"Authorization": f"Bearer {token}"},
        "a bearer token",
        "",
        tls,
    )


def _kube_result(where: str, status: int | None, body: Any, auth: str, note: str) -> Result:
    # GET /version answers {"major", "minor", "gitVersion", ...} (kubernetes apimachinery
    # pkg/version/types.go Info); system:public-info-viewer lets anyone read it, so a 401 means
    # the credentials sent were rejected.
    if status is None:
        return Result(
            False,
            f"{where} does not answer: {body}",
            "check that the cluster runs and is reachable from here (VPN, proxy), or pick "
            "another context: kubectl config use-context NAME",
        )
    if status == 401 and note:
        return Result(True, f"{where} answers (401 without credentials){note}")
    if status == 401:
        return Result(
            False,
            f"{where} rejected the credentials ({auth}): 401 Unauthorized",
            "renew the user's credentials in KUBECONFIG (for a cloud cluster, run its "
            "get-credentials command again)",
        )
    if status >= 400 and status != 403:
        return Result(False, f"{where} answered {status}", "check the server address in KUBECONFIG")
    version = body.get("gitVersion") if isinstance(body, dict) else None
    answer = f"answers (Kubernetes {version})" if version else f"answers ({status})"
    return Result(True, f"{where} {answer} with {auth}{note}")


# --- Kong Admin API ---------------------------------------------------------------------------

KONG_DEFAULT_ADMIN = "http://localhost:8001"  # terraform-provider-kong kong/provider.go


def kong_admin(admin_url: str | None) -> Result:
    """Kong's Admin API answers GET / with the credentials the provider sends.

    The address: gateway.kong.adminUrl (mlserve passes it to the provider), else the provider's
    KONG_ADMIN_ADDR, else its default. The credentials: the provider's environment fallbacks
    (terraform-provider-kong kong/provider.go), sent as its kong/utils.go does: a
    `kong-admin-token` header, an `apikey` header, HTTP basic auth. mlserve's stack secret
    mlserve:kongAdminToken is not read here (doctor opens no stack)."""
    url = admin_url or os.environ.get("KONG_ADMIN_ADDR") or KONG_DEFAULT_ADMIN
    source = (
        "gateway.kong.adminUrl"
        if admin_url
        else "KONG_ADMIN_ADDR"
        if os.environ.get("KONG_ADMIN_ADDR")
        else "the provider's default"
    )
    headers: dict[str, str] = {}
    sent = []
    if os.environ.get("KONG_ADMIN_TOKEN"):
        headers["kong-admin-token"] = os.environ["KONG_ADMIN_TOKEN"]
        sent.append("KONG_ADMIN_TOKEN")
    if os.environ.get("KONG_API_KEY"):
        headers["apikey"] = os.environ["KONG_API_KEY"]
        sent.append("KONG_API_KEY")
    if os.environ.get("KONG_ADMIN_USERNAME"):
        pair = f"{os.environ['KONG_ADMIN_USERNAME']}:{os.environ.get('KONG_ADMIN_PASSWORD', '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        sent.append("KONG_ADMIN_USERNAME")
    tls = ssl.create_default_context()
    if os.environ.get("TLS_SKIP_VERIFY", "").lower() == "true":  # the provider's own switch
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    status, body = _get(url.rstrip("/") + "/", headers, tls)
    credentials = ", ".join(sent) or "no credentials"
    if status is None:
        return Result(
            False,
            f"{url} ({source}) does not answer: {body}",
            "check gateway.kong.adminUrl or KONG_ADMIN_ADDR, and that the Admin API is reachable "
            "from here (kubectl -n kong port-forward svc/kong-admin 8001)",
        )
    if status in (401, 403):
        return Result(
            False,
            f"{url} refused the request ({status}) with {credentials}",
            "export KONG_ADMIN_TOKEN (an RBAC token), or KONG_API_KEY for a key-auth protected "
            "Admin API (the stack secret mlserve:kongAdminToken also works for deploys)",
        )
    if status >= 400:
        return Result(
            False, f"{url} answered {status}", "check that the address is Kong's Admin API"
        )
    # GET / on the Admin API returns the node's information, its version among it.
    version = body.get("version") if isinstance(body, dict) else None
    kong = f"Kong {version}" if version else f"HTTP {status}"
    return Result(True, f"{url} ({source}) answers ({kong}) with {credentials}")


# --- Azure ------------------------------------------------------------------------------------

AUTHORITIES = {  # ARM_ENVIRONMENT -> Microsoft Entra sign-in host
    "public": "https://login.microsoftonline.com",
    "usgovernment": "https://login.microsoftonline.us",
    "china": "https://login.chinacloudapi.cn",
}


def azure() -> Result:
    """Which sign-in the azure-native provider will use, complete or not (offline); then whether
    its tenant is known to Microsoft Entra (online, without sending a secret)."""
    env = os.environ
    subscription = env.get("ARM_SUBSCRIPTION_ID")
    if env.get("ARM_USE_MSI", "").lower() == "true":
        method, missing, tenant = "managed identity (ARM_USE_MSI)", [], env.get("ARM_TENANT_ID")
    elif env.get("ARM_USE_OIDC", "").lower() == "true":
        method, tenant = "OIDC (ARM_USE_OIDC)", env.get("ARM_TENANT_ID")
        missing = [k for k in ("ARM_CLIENT_ID", "ARM_TENANT_ID") if not env.get(k)]
        if not (env.get("ARM_OIDC_TOKEN") or env.get("ARM_OIDC_REQUEST_TOKEN")):
            missing.append("ARM_OIDC_TOKEN (or ARM_OIDC_REQUEST_TOKEN and ARM_OIDC_REQUEST_URL)")
    elif env.get("ARM_CLIENT_ID"):
        method, tenant = "a service principal (ARM_CLIENT_ID)", env.get("ARM_TENANT_ID")
        missing = [k for k in ("ARM_TENANT_ID",) if not env.get(k)]
        if not (env.get("ARM_CLIENT_SECRET") or env.get("ARM_CLIENT_CERTIFICATE_PATH")):
            missing.append("ARM_CLIENT_SECRET (or ARM_CLIENT_CERTIFICATE_PATH)")
    else:
        profile = _az_profile()
        if profile is None:
            return Result(
                False,
                "no ARM_* credentials and no `az login`",
                "run `az login`, or export ARM_CLIENT_ID, ARM_CLIENT_SECRET, ARM_TENANT_ID and "
                "ARM_SUBSCRIPTION_ID",
            )
        method, missing = "the az CLI's login", []
        tenant, subscription = profile.get("tenantId"), subscription or profile.get("id")
    if not subscription and "ARM_SUBSCRIPTION_ID" not in missing:
        missing.append("ARM_SUBSCRIPTION_ID")
    if missing:
        return Result(
            False, f"{method}: {', '.join(missing)} not set", f"export {', '.join(missing)}"
        )
    if not tenant:
        return Result(True, f"{method}; subscription {subscription} (tenant not checked online)")
    return _tenant(method, tenant, subscription or "")


def _az_profile() -> dict[str, Any] | None:
    """The az CLI's default subscription, read from its profile file (no `az` run)."""
    config = Path(os.environ.get("AZURE_CONFIG_DIR") or Path.home() / ".azure")
    if shutil.which("az") is None:
        return None
    try:
        text = (config / "azureProfile.json").read_text(encoding="utf-8-sig")
        subscriptions = json.loads(text).get("subscriptions") or []
    except (OSError, ValueError, AttributeError):
        return None
    return next((s for s in subscriptions if s.get("isDefault")), None)


def _tenant(method: str, tenant: str, subscription: str) -> Result:
    # Entra publishes each tenant's OpenID configuration; an unknown tenant is an error
    # (AADSTS90002, "invalid_tenant"). AZURE_AUTHORITY_HOST is the Azure SDKs' override.
    authority = os.environ.get("AZURE_AUTHORITY_HOST") or AUTHORITIES.get(
        os.environ.get("ARM_ENVIRONMENT", "public").lower(), AUTHORITIES["public"]
    )
    url = f"{authority.rstrip('/')}/{tenant}/v2.0/.well-known/openid-configuration"
    status, body = _get(url)
    where = f"{method}; tenant {tenant}, subscription {subscription}"
    if status == 200:
        return Result(True, f"{where}: the tenant is known to {authority}")
    if status is None:
        return Result(False, f"{where}: {authority} does not answer: {body}", "check the network")
    error = body.get("error") if isinstance(body, dict) else None
    return Result(
        False,
        f"{where}: {authority} does not know the tenant ({error or status})",
        "check ARM_TENANT_ID (or `az account show`) and ARM_ENVIRONMENT",
    )
