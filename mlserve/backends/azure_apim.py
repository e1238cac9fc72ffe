"""The azure-apim gateway: an ApiVersionSet with an Api (and ApiRelease) per version for pinned
traffic, and the set's original, version-less Api sending unpinned traffic to a weighted Backend
pool.

Why the original Api: APIM lets two APIs share a path only inside one version set, and a member of
the set without a version identifier (the "Original" version) answers on the default URL, with no
segment, header or query naming a version. That is exactly unpinned traffic; requests naming a
version go to that version's own Api. So the unpinned entry is `<name>` in the set, and its policy
sends it to the pool. (Real APIM has not seen this: it is rendered under mocks only.)

The pool's weights split traffic by relative weight within a priority group (Microsoft docs,
api-management/backends.md, "Load-balanced pool"); a weight of 0 has no documented meaning, so a
version at 0% is left out of the pool. APIM strips the API's path before appending the rest to
the backend URL; with stripPath false the backend URLs get the public path appended.

The rules checked here are APIM 2024-05-01's (see shared/reference/azure-apim.md); `check` never
imports Pulumi.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from xml.sax.saxutils import quoteattr

if TYPE_CHECKING:
    import pulumi

    from mlserve.backends.base import Declared, Workload
    from mlserve.spec import AzureApimOptions, Spec
    from mlserve.traffic import TrafficState

SKUS = (
    "Developer",
    "Standard",
    "Premium",
    "Basic",
    "Consumption",
    "Isolated",
    "BasicV2",
    "StandardV2",
)
# A blank API has no operations and answers 404; these pass every request of each method through.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_SERVICE_NAME = re.compile(r"^[a-zA-Z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?$")
_API_ID = re.compile(r"^[^*#&+:<>?]+$")
_HEADER_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
_RESOURCE_GROUP = re.compile(r"^[-\w.()]+$")


def api_id(spec: Spec, version: str) -> str:
    return spec.object_name(version)


def pool_id(spec: Spec) -> str:
    # A version id is `<name>-` and a letter or digit, so `<name>--pool` is never one: a version
    # named "pool" must not collide with the pool (one URN for two Backends).
    return f"{spec.name}--pool"


def backend_url(spec: Spec, url: str) -> str:
    """The URL APIM appends the rest of the request path to (after the API's path)."""
    from mlserve.backends.workloads import prefix

    if spec.gateway.strip_path or prefix(spec) == "/":
        return url
    return url.rstrip("/") + prefix(spec)


def api_path(spec: Spec) -> str:
    """APIM's relative path: the spec path without its slashes ("/" gives "", which APIM allows)."""
    return spec.gateway.path.strip("/")


def header_name(spec: Spec) -> str | None:
    a = spec.gateway.azure_apim
    return (a.header_name if a else None) or spec.gateway.version_header


# --- check ---------------------------------------------------------------------------------


# forward-request-policy.md: "Values greater than 240 seconds may not be honored, because the
# underlying network infrastructure can drop idle connections after this time."
HONORED_TIMEOUT_SECONDS = 240


def notes(spec: Spec, traffic: TrafficState) -> list[tuple[str, str]]:
    timeout = timeout_seconds(spec)
    if timeout is None or timeout <= HONORED_TIMEOUT_SECONDS:
        return []
    return [
        (
            "gateway.timeout",
            f"API Management may not honor a forward-request timeout above "
            f"{HONORED_TIMEOUT_SECONDS} s: its network can drop a connection idle for longer",
        )
    ]


def check(spec: Spec) -> list[tuple[str, str]]:
    a = spec.gateway.azure_apim
    if a is None:
        return [("gateway", "the azure-apim gateway needs gateway.azureApim")]
    problems = _check_instance(a)
    problems += _check_versioning(spec, a)
    path = api_path(spec)
    if len(path) > 400:
        problems.append(("gateway.path", f"is {len(path)} characters; APIM allows at most 400"))
    for i, v in enumerate(spec.versions):
        ident = api_id(spec, v.name)
        if len(ident) > 80 or not _API_ID.match(ident):
            problems.append(
                (
                    f"versions[{i}].name",
                    f"gives the APIM api id {ident!r}, which must be 1 to 80 characters without "
                    "* # & + : < > ?",
                )
            )
        if v.url is not None:
            problem = url_problem(v.url)
            if problem:
                problems.append((f"versions[{i}].url", problem))
    return problems


def _check_instance(a: AzureApimOptions) -> list[tuple[str, str]]:
    at = "gateway.azureApim"
    problems = []
    if not 1 <= len(a.service_name) <= 50 or not _SERVICE_NAME.match(a.service_name):
        problems.append(
            (
                f"{at}.serviceName",
                f"{a.service_name!r} is not an API Management service name: 1 to 50 letters, "
                "digits and hyphens, starting with a letter and not ending with a hyphen",
            )
        )
    rg = a.resource_group
    if not 1 <= len(rg) <= 90 or not _RESOURCE_GROUP.match(rg) or rg.endswith("."):
        problems.append(
            (
                f"{at}.resourceGroup",
                f"{rg!r} is not an Azure resource group name: 1 to 90 letters, digits, '_', "
                "'-', '.', '(' and ')', not ending with '.'",
            )
        )
    if a.sku_name is not None and a.sku_name not in SKUS:
        problems.append(
            (f"{at}.sku.name", f"{a.sku_name!r} is not an APIM SKU: one of {', '.join(SKUS)}")
        )
    if a.sku_capacity is not None:
        if a.sku_name == "Consumption" and a.sku_capacity != 0:
            problems.append((f"{at}.sku.capacity", "must be 0 for the Consumption SKU"))
        elif a.sku_name != "Consumption" and a.sku_capacity < 1:
            problems.append(
                (f"{at}.sku.capacity", f"must be at least 1 unit for the {a.sku_name} SKU")
            )
    if a.create:
        for key, value in (
            ("location", a.location),
            ("publisherName", a.publisher_name),
            ("publisherEmail", a.publisher_email),
            ("sku", a.sku_name),
        ):
            if value is None:
                problems.append(
                    (f"{at}.{key}", "is required with create: true (mlserve creates the instance)")
                )
        if a.sku_name is not None and a.sku_capacity is None:
            problems.append((f"{at}.sku.capacity", "is required with create: true"))
    if a.publisher_email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+", a.publisher_email):
        problems.append((f"{at}.publisherEmail", f"{a.publisher_email!r} is not an email address"))
    return problems


def _check_versioning(spec: Spec, a: AzureApimOptions) -> list[tuple[str, str]]:
    at = "gateway.azureApim.versioning"
    problems = []
    scheme = a.versioning_scheme
    pinned_by_header = spec.gateway.version_header
    if scheme == "Header":
        name = header_name(spec)
        if name is None:
            problems.append((f"{at}.headerName", "is required with scheme Header"))
        elif not 1 <= len(name) <= 100 or not _HEADER_TOKEN.match(name):
            where = f"{at}.headerName" if a.header_name else "gateway.versionHeader"
            problems.append((where, f"{name!r} is not an HTTP header name of 1 to 100 characters"))
        if (
            a.header_name
            and pinned_by_header
            and a.header_name.lower() != pinned_by_header.lower()  # header names ignore case
        ):
            problems.append(
                (
                    "gateway.versionHeader",
                    f"{pinned_by_header!r} differs from {at}.headerName {a.header_name!r}: "
                    "APIM reads the version from the version set's header",
                )
            )
    elif pinned_by_header is not None:
        problems.append(
            (
                "gateway.versionHeader",
                f"azure-apim pins a version through the version set's scheme ({scheme}); "
                f"for a header use versioning: {{scheme: Header, headerName: {pinned_by_header}}}",
            )
        )
    # A name given for another scheme is the loader's to report (gateway-independent rule).
    if scheme == "Query":
        if a.query_name is None:
            problems.append((f"{at}.queryName", "is required with scheme Query"))
        elif not 1 <= len(a.query_name) <= 100:
            problems.append((f"{at}.queryName", "must be 1 to 100 characters"))
    return problems


def url_problem(url: str) -> str | None:
    """Why APIM cannot use `url` as a backend and service url, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        return f"{url!r} is not a valid URL: {e}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"{url!r}: APIM backends are http or https, not {parts.scheme!r}"
    if not parts.hostname:
        return f"{url!r} has no host"
    if parts.username is not None or parts.password is not None:
        return f"{url!r} must not carry credentials: spec files hold no secrets"
    if parts.query or parts.fragment:
        return f"{url!r} must not have a query or a fragment: APIM appends the request path to it"
    if len(url) > 2000:
        return f"is {len(url)} characters; APIM allows at most 2000"
    return None


# --- declare -------------------------------------------------------------------------------


def pool_policy(backend_id: str, timeout: int | None = None) -> str:
    return (
        "<policies><inbound><base />"
        f"<set-backend-service backend-id={quoteattr(backend_id)} />"
        f"</inbound>{_backend_section(timeout)}<outbound><base /></outbound>"
        "<on-error><base /></on-error></policies>"
    )


def timeout_policy(timeout: int) -> str:
    """A pinned version's Api: the service-scope forward-request, with the spec's timeout."""
    return (
        "<policies><inbound><base /></inbound>"
        f"{_backend_section(timeout)}<outbound><base /></outbound>"
        "<on-error><base /></on-error></policies>"
    )


def _backend_section(timeout: int | None) -> str:
    """The backend section: inherited (<base />), or a forward-request with a timeout in
    seconds, which replaces the inherited one for this API (Microsoft docs,
    api-management/forward-request-policy.md: timeout, default 300)."""
    if timeout is None:
        return "<backend><base /></backend>"
    return f'<backend><forward-request timeout="{timeout}" /></backend>'


def timeout_seconds(spec: Spec) -> int | None:
    from mlserve.spec import duration_seconds

    return None if spec.gateway.timeout is None else duration_seconds(spec.gateway.timeout)


def _without_client_certificate_flag(
    args: pulumi.ResourceTransformationArgs,
) -> pulumi.ResourceTransformationResult:
    """Send no enableClientCertificate: the SDK fills in false, which Azure refuses for every SKU
    but Consumption ("Setting EnableClientCertificate flag to false is not supported for
    Developer SKU", pulumi-azure-native#1865 and #1741); left out, Azure keeps its default."""
    import pulumi

    props = {k: v for k, v in args.props.items() if k != "enable_client_certificate"}
    return pulumi.ResourceTransformationResult(props, args.opts)


def declare(spec: Spec, traffic: TrafficState, workloads: Mapping[str, Workload]) -> Declared:
    import pulumi
    import pulumi_azure_native.apimanagement as apim

    from mlserve.backends.base import Declared

    a = spec.gateway.azure_apim
    if a is None:
        raise ValueError("the azure-apim gateway needs gateway.azureApim")
    name = spec.name
    # Children name their parents by plain strings (the ids are known up front) and wait for them
    # through depends_on, so `render` shows every input.
    common: dict[str, Any] = {
        "resource_group_name": a.resource_group,
        "service_name": a.service_name,
    }
    after: list[pulumi.Resource] = []
    endpoint: pulumi.Input[str] = f"https://{a.service_name}.azure-api.net/{api_path(spec)}"
    if a.create:
        if a.sku_name is None or a.sku_capacity is None:
            raise ValueError("create: true needs gateway.azureApim.sku {name, capacity}")
        # In the existing resource group, which mlserve never creates.
        service = apim.ApiManagementService(
            name,
            location=a.location,
            publisher_name=a.publisher_name,
            publisher_email=a.publisher_email,
            sku=apim.ApiManagementServiceSkuPropertiesArgs(
                name=a.sku_name, capacity=a.sku_capacity
            ),
            opts=pulumi.ResourceOptions(
                transformations=[_without_client_certificate_flag]
                if a.sku_name != "Consumption"
                else None
            ),
            **common,
        )
        after = [service]
        endpoint = service.gateway_url.apply(lambda url: f"{url}/{api_path(spec)}")

    def opts(*resources: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(depends_on=[*after, *resources])

    version_set = apim.ApiVersionSet(
        name,
        version_set_id=name,
        display_name=name,
        versioning_scheme=a.versioning_scheme,
        version_header_name=header_name(spec) if a.versioning_scheme == "Header" else None,
        version_query_name=a.query_name if a.versioning_scheme == "Query" else None,
        opts=opts(),
        **common,
    )

    def passthrough(ident: str, api: apim.Api) -> None:
        for method in METHODS:
            apim.ApiOperation(
                f"{ident}-{method.lower()}",
                api_id=ident,
                operation_id=method.lower(),
                display_name=f"{method} /*",
                method=method,
                url_template="/*",
                opts=opts(api),
                **common,
            )

    def url_of(version: str) -> str:
        url = next((v.url for v in spec.versions if v.name == version), None)
        if url is None:
            raise ValueError(f"version {version!r} has no url: azure-apim routes to urls only")
        return backend_url(spec, url)

    for v in spec.versions:
        if v.url is None:
            continue
        ident = api_id(spec, v.name)
        api = apim.Api(
            ident,
            api_id=ident,
            api_version=v.name,
            api_version_set_id=version_set.id,
            display_name=f"{name} {v.name}",
            path=api_path(spec),
            service_url=url_of(v.name),
            protocols=["https"],
            subscription_required=a.subscription_required,
            opts=opts(),
            **common,
        )
        passthrough(ident, api)
        timeout = timeout_seconds(spec)
        if timeout is not None:
            apim.ApiPolicy(
                ident,
                api_id=ident,
                policy_id="policy",
                format="xml",
                value=timeout_policy(timeout),
                opts=opts(api),
                **common,
            )
        apim.ApiRelease(
            ident,
            # The URL id, not the ARM id: pulumi-azure-native#2137 (by design) caps it at 80.
            api_id=ident,
            release_id=ident,
            notes=f"mlserve: {name} {v.name}",
            opts=opts(api),
            **common,
        )

    # Unpinned traffic: the version set's original Api, through a weighted pool.
    singles = []
    items = []
    weights = traffic.weights()
    # `previous` gets its Single backend too, outside the pool: promote and rollback update
    # only the routing resources that exist (Pulumi `target`), so a rollback to `previous`
    # must find its backend there.
    for version in traffic.versions():
        single = apim.Backend(
            api_id(spec, version),
            backend_id=api_id(spec, version),
            type="Single",
            protocol="http",  # the backend's API style (http, not soap); the url sets the scheme
            url=url_of(version),
            title=f"{name} {version}",
            opts=opts(),
            **common,
        )
        singles.append(single)
        if weights.get(version, 0) > 0:
            # One priority: weights split traffic within a priority group.
            items.append(
                apim.BackendPoolItemArgs(id=single.id, weight=weights[version], priority=0)
            )
    pool = apim.Backend(
        pool_id(spec),
        backend_id=pool_id(spec),
        type="Pool",
        pool=apim.BackendBaseParametersPoolArgs(services=items),
        title=f"{name} stable/canary",
        opts=opts(),
        **common,
    )
    original = apim.Api(
        name,
        api_id=name,
        api_version_set_id=version_set.id,  # no api_version: the set's original version
        display_name=name,
        path=api_path(spec),
        service_url=url_of(traffic.stable),
        protocols=["https"],
        subscription_required=a.subscription_required,
        opts=opts(),
        **common,
    )
    passthrough(name, original)
    policy = apim.ApiPolicy(
        name,
        api_id=name,
        policy_id="policy",
        format="xml",
        value=pool_policy(pool_id(spec), timeout_seconds(spec)),
        opts=opts(original, pool),
        **common,
    )
    return Declared(
        routing=[original, *singles, pool, policy],
        endpoint=endpoint,
        extra={"apimVersionSet": version_set.id},
    )
