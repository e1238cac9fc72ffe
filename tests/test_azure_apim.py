"""The azure-apim backend: what it declares (under Pulumi's mocks) and what `check` rejects."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from mlserve.backends import azure_apim
from mlserve.render import RenderedResource, render_program
from mlserve.spec import Spec
from mlserve.traffic import TrafficState, initial
from tests.gateway_helpers import Registered, edit, of_type, one, record, spec_of
from tests.render_memo import remembered

T = "azure-native:apimanagement:"
SERVICE, VERSION_SET, API, RELEASE = (
    f"{T}ApiManagementService",
    f"{T}ApiVersionSet",
    f"{T}Api",
    f"{T}ApiRelease",
)
BACKEND, POLICY, OPERATION = f"{T}Backend", f"{T}ApiPolicy", f"{T}ApiOperation"

EXISTING: dict[str, Any] = {
    "apiVersion": "mlserve/v1",
    "name": "fraud",
    "gateway": {
        "type": "azure-apim",
        "path": "/fraud",
        "azureApim": {"resourceGroup": "rg-ml", "serviceName": "acme-ml"},
    },
    "versions": [
        {"name": "v1", "url": "https://fraud-v1.example.com/api"},
        {"name": "v2", "url": "https://fraud-v2.example.com"},
    ],
    "traffic": {"stable": "v1", "canary": "v2", "weight": 10},
}

CREATED = edit(
    EXISTING,
    **{
        "gateway.azureApim": {
            "resourceGroup": "rg-ml",
            "serviceName": "acme-ml",
            "create": True,
            "location": "westeurope",
            "publisherName": "ML Platform",
            "publisherEmail": "ml@example.com",
            "sku": {"name": "Consumption", "capacity": 0},
            "versioning": {"scheme": "Header", "headerName": "x-model-version"},
            "subscriptionRequired": False,
        }
    },
)


def _program(spec: Spec, traffic: TrafficState | None = None) -> Any:
    t = traffic or initial(spec)
    return lambda: azure_apim.declare(spec, t, {})


def render(spec: Spec, traffic: TrafficState | None = None) -> list[RenderedResource]:
    """What azure_apim.declare alone declares, rendered once per spec and state (over half a
    second each: many tests read the same one)."""
    return remembered(
        "azure_apim.declare",
        spec,
        traffic or initial(spec),
        lambda: render_program(_program(spec, traffic), spec.name, "dev"),
    )


def registered(spec: Spec) -> list[Registered]:
    return record(_program(spec), spec.name)


def pool_items(res: list[RenderedResource]) -> list[dict[str, Any]]:
    return one(res, BACKEND, "fraud--pool").inputs["pool"]["services"]


# --- what declare builds -------------------------------------------------------------------


def test_existing_instance_is_referenced_by_name_not_created() -> None:
    res = render(Spec.from_dict(EXISTING))
    assert of_type(res, SERVICE) == []
    assert {r.inputs["serviceName"] for r in res} == {"acme-ml"}
    assert {r.inputs["resourceGroupName"] for r in res} == {"rg-ml"}
    assert not any(r.type.startswith("azure-native:resources:") for r in res)


def test_created_instance_has_sku_name_and_capacity_in_the_existing_group() -> None:
    res = render(Spec.from_dict(CREATED))
    service = one(res, SERVICE)
    assert service.inputs["sku"] == {"name": "Consumption", "capacity": 0}
    assert "skuName" not in service.inputs
    assert {k: service.inputs[k] for k in ("resourceGroupName", "serviceName", "location")} == {
        "resourceGroupName": "rg-ml",
        "serviceName": "acme-ml",
        "location": "westeurope",
    }
    assert (service.inputs["publisherName"], service.inputs["publisherEmail"]) == (
        "ML Platform",
        "ml@example.com",
    )


def test_every_child_waits_for_a_created_instance() -> None:
    regs = registered(Spec.from_dict(CREATED))
    service = one(regs, SERVICE)
    children = [r for r in regs if r.type != SERVICE]
    assert children and all(service.urn in r.dependencies for r in children)


def test_version_set_carries_the_scheme_and_its_header() -> None:
    vs = one(render(Spec.from_dict(CREATED)), VERSION_SET).inputs
    assert vs == {
        "resourceGroupName": "rg-ml",
        "serviceName": "acme-ml",
        "versionSetId": "fraud",
        "displayName": "fraud",
        "versioningScheme": "Header",
        "versionHeaderName": "x-model-version",
    }
    assert 1 <= len(vs["displayName"]) <= 100 and 1 <= len(vs["versionHeaderName"]) <= 100


def test_query_scheme_names_its_parameter_and_segment_names_none() -> None:
    spec = spec_of(
        EXISTING, **{"gateway.azureApim.versioning": {"scheme": "Query", "queryName": "model"}}
    )
    vs = one(render(spec), VERSION_SET).inputs
    assert (vs["versioningScheme"], vs["versionQueryName"]) == ("Query", "model")
    assert "versionHeaderName" not in vs
    segment = one(render(Spec.from_dict(EXISTING)), VERSION_SET).inputs
    assert segment["versioningScheme"] == "Segment"
    assert "versionHeaderName" not in segment and "versionQueryName" not in segment


def test_the_version_header_names_the_header_when_headername_is_left_out() -> None:
    spec = spec_of(
        EXISTING,
        **{
            "gateway.versionHeader": "x-model",
            "gateway.azureApim.versioning": {"scheme": "Header"},
        },
    )
    assert azure_apim.check(spec) == []
    assert one(render(spec), VERSION_SET).inputs["versionHeaderName"] == "x-model"


def test_an_api_per_version_in_the_set_with_its_url_and_the_relative_path() -> None:
    res = render(Spec.from_dict(EXISTING))
    v1 = one(res, API, "fraud-v1").inputs
    assert v1 == {
        "resourceGroupName": "rg-ml",
        "serviceName": "acme-ml",
        "apiId": "fraud-v1",
        "apiVersion": "v1",
        "apiVersionSetId": "fraud-id",
        "displayName": "fraud v1",
        "path": "fraud",
        "serviceUrl": "https://fraud-v1.example.com/api",
        "protocols": ["https"],
        "subscriptionRequired": True,
    }
    assert one(res, API, "fraud-v2").inputs["serviceUrl"] == "https://fraud-v2.example.com"
    releases = {r.name: r.inputs for r in of_type(res, RELEASE)}
    assert releases["fraud-v2"]["apiId"] == "fraud-v2"
    assert set(releases) == {"fraud-v1", "fraud-v2"}


def test_every_api_obeys_apims_rules() -> None:
    for spec in (Spec.from_dict(EXISTING), Spec.from_dict(CREATED)):
        for api in of_type(render(spec), API):
            i = api.inputs
            assert len(i["path"]) <= 400 and not i["path"].startswith("/")
            assert set(i["protocols"]) <= {"http", "https", "ws", "wss"}
            assert re.fullmatch(r"[^*#&+:<>?]{1,80}", i["apiId"])
            assert len(i.get("apiVersion", "")) <= 100
            assert 1 <= len(i["displayName"]) <= 300
            assert i["apiVersionSetId"] == "fraud-id"


def test_root_path_gives_the_empty_relative_path() -> None:
    res = render(spec_of(EXISTING, **{"gateway.path": "/"}))
    assert {a.inputs["path"] for a in of_type(res, API)} == {""}


def test_subscription_required_follows_the_spec() -> None:
    res = render(Spec.from_dict(CREATED))
    assert {a.inputs["subscriptionRequired"] for a in of_type(res, API)} == {False}


def test_unpinned_traffic_goes_through_a_weighted_pool_of_single_backends() -> None:
    res = render(Spec.from_dict(EXISTING))
    singles = {b.name: b.inputs for b in of_type(res, BACKEND) if b.inputs["type"] == "Single"}
    assert singles["fraud-v1"] == {
        "resourceGroupName": "rg-ml",
        "serviceName": "acme-ml",
        "backendId": "fraud-v1",
        "type": "Single",
        "protocol": "http",
        "url": "https://fraud-v1.example.com/api",
        "title": "fraud v1",
    }
    assert set(singles) == {"fraud-v1", "fraud-v2"}
    assert pool_items(res) == [
        {"id": "fraud-v1-id", "weight": 90, "priority": 0},
        {"id": "fraud-v2-id", "weight": 10, "priority": 0},
    ]


@pytest.mark.parametrize("weight", [1, 50, 99])
def test_pool_weights_stay_in_0_to_100_and_sum_to_100(weight: int) -> None:
    items = pool_items(render(Spec.from_dict(EXISTING), TrafficState("v1", "v2", weight)))
    assert all(0 <= i["weight"] <= 100 and 0 <= i["priority"] <= 100 for i in items)
    assert sum(i["weight"] for i in items) == 100
    assert [i["weight"] for i in items] == [100 - weight, weight]


@pytest.mark.parametrize(("weight", "left"), [(0, "fraud-v1-id"), (100, "fraud-v2-id")])
def test_a_version_at_0_percent_is_left_out_of_the_pool(weight: int, left: str) -> None:
    # A pool item's weight of 0 has no documented meaning (azure-apim.md, BackendPoolItem).
    items = pool_items(render(Spec.from_dict(EXISTING), TrafficState("v1", "v2", weight)))
    assert items == [{"id": left, "weight": 100, "priority": 0}]


def test_a_version_named_pool_does_not_collide_with_the_pool() -> None:
    spec = spec_of(EXISTING, **{"versions.1.name": "pool", "traffic.canary": "pool"})
    backends = [r.name for r in of_type(render(spec), BACKEND)]
    assert sorted(backends) == ["fraud--pool", "fraud-pool", "fraud-v1"]


@pytest.mark.parametrize(("sku", "sent"), [("Developer", False), ("Consumption", True)])
def test_enable_client_certificate_is_sent_only_for_consumption(sku: str, sent: bool) -> None:
    # The SDK fills in enableClientCertificate: false, which Azure refuses for the Developer SKU
    # and others (pulumi-azure-native#1865): leave it out unless the SKU is Consumption.
    capacity = 0 if sku == "Consumption" else 1
    spec = spec_of(CREATED, **{"gateway.azureApim.sku": {"name": sku, "capacity": capacity}})
    service = one(render(spec), SERVICE).inputs
    assert ("enableClientCertificate" in service) is sent
    assert service["sku"] == {"name": sku, "capacity": capacity}


def test_without_canary_the_pool_holds_the_stable_alone() -> None:
    res = render(Spec.from_dict(EXISTING), TrafficState("v2", previous="v1"))
    assert pool_items(res) == [{"id": "fraud-v2-id", "weight": 100, "priority": 0}]
    assert one(res, API, "fraud").inputs["serviceUrl"] == "https://fraud-v2.example.com"


def test_the_sets_original_api_sends_unpinned_requests_to_the_pool() -> None:
    res = render(Spec.from_dict(EXISTING))
    original = one(res, API, "fraud").inputs
    assert "apiVersion" not in original  # the original version answers without a version
    assert original["apiVersionSetId"] == "fraud-id"
    assert original["path"] == "fraud"
    policy = one(res, POLICY).inputs
    assert (policy["apiId"], policy["policyId"], policy["format"]) == ("fraud", "policy", "xml")
    root = ET.fromstring(policy["value"])
    assert [c.tag for c in root] == ["inbound", "backend", "outbound", "on-error"]
    set_backend = root.find("inbound/set-backend-service")
    assert set_backend is not None and set_backend.attrib == {"backend-id": "fraud--pool"}
    assert one(res, BACKEND, "fraud--pool").inputs["backendId"] == "fraud--pool"


def test_every_api_has_pass_through_operations() -> None:
    res = render(Spec.from_dict(EXISTING))
    ops = of_type(res, OPERATION)
    for api in ("fraud", "fraud-v1", "fraud-v2"):
        mine = [o.inputs for o in ops if o.inputs["apiId"] == api]
        assert sorted(o["method"] for o in mine) == sorted(azure_apim.METHODS)
        assert {o["urlTemplate"] for o in mine} == {"/*"}


def test_policy_waits_for_the_pool_and_the_original_api() -> None:
    regs = registered(Spec.from_dict(EXISTING))
    deps = one(regs, POLICY).dependencies
    assert one(regs, BACKEND, "fraud--pool").urn in deps
    assert one(regs, API, "fraud").urn in deps


def test_known_mistakes_are_absent_from_the_source() -> None:
    source = Path(azure_apim.__file__).read_text()
    assert "apimanagement.ResourceGroup" not in source and "apim.ResourceGroup" not in source
    assert "sku_name=" not in source
    assert "v1beta1" not in source


def test_the_backend_module_does_not_import_pulumi() -> None:
    code = "import sys, mlserve.backends.azure_apim; sys.exit('pulumi' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- check ---------------------------------------------------------------------------------


def problems(doc: dict[str, Any], **changes: Any) -> list[tuple[str, str]]:
    return azure_apim.check(spec_of(doc, **changes))


def test_valid_specs_pass() -> None:
    assert azure_apim.check(Spec.from_dict(EXISTING)) == []
    assert azure_apim.check(Spec.from_dict(CREATED)) == []


@pytest.mark.parametrize("name", ["1acme", "acme-", "ac_me", "a" * 51])
def test_bad_service_names_are_rejected(name: str) -> None:
    assert problems(EXISTING, **{"gateway.azureApim.serviceName": name}) == [
        (
            "gateway.azureApim.serviceName",
            f"{name!r} is not an API Management service name: 1 to 50 letters, digits and "
            "hyphens, starting with a letter and not ending with a hyphen",
        )
    ]


def test_bad_resource_group_is_rejected() -> None:
    assert problems(EXISTING, **{"gateway.azureApim.resourceGroup": "rg ml."}) == [
        (
            "gateway.azureApim.resourceGroup",
            "'rg ml.' is not an Azure resource group name: 1 to 90 letters, digits, '_', '-', "
            "'.', '(' and ')', not ending with '.'",
        )
    ]


def test_consumption_capacity_must_be_zero() -> None:
    assert problems(
        CREATED, **{"gateway.azureApim.sku": {"name": "Consumption", "capacity": 1}}
    ) == [("gateway.azureApim.sku.capacity", "must be 0 for the Consumption SKU")]


def test_other_skus_need_a_unit_and_unknown_skus_are_named() -> None:
    assert problems(CREATED, **{"gateway.azureApim.sku": {"name": "Developer", "capacity": 0}}) == [
        ("gateway.azureApim.sku.capacity", "must be at least 1 unit for the Developer SKU")
    ]
    assert problems(CREATED, **{"gateway.azureApim.sku": {"name": "PremiumV2", "capacity": 1}}) == [
        (
            "gateway.azureApim.sku.name",
            "'PremiumV2' is not an APIM SKU: one of Developer, Standard, Premium, Basic, "
            "Consumption, Isolated, BasicV2, StandardV2",
        )
    ]


def test_create_needs_what_the_instance_requires() -> None:
    doc = edit(
        CREATED,
        **{
            "gateway.azureApim.location": None,
            "gateway.azureApim.publisherEmail": None,
            "gateway.azureApim.sku": None,
        },
    )
    assert azure_apim.check(Spec.from_dict(doc)) == [
        (
            "gateway.azureApim.location",
            "is required with create: true (mlserve creates the instance)",
        ),
        (
            "gateway.azureApim.publisherEmail",
            "is required with create: true (mlserve creates the instance)",
        ),
        ("gateway.azureApim.sku", "is required with create: true (mlserve creates the instance)"),
    ]


def test_bad_publisher_email_is_rejected() -> None:
    assert problems(CREATED, **{"gateway.azureApim.publisherEmail": "ml-at-example"}) == [
        ("gateway.azureApim.publisherEmail", "'ml-at-example' is not an email address")
    ]


def test_header_scheme_needs_a_valid_header_name() -> None:
    header = {"gateway.azureApim.versioning": {"scheme": "Header"}}
    assert problems(EXISTING, **header) == [
        ("gateway.azureApim.versioning.headerName", "is required with scheme Header")
    ]
    bad = {"gateway.azureApim.versioning": {"scheme": "Header", "headerName": "x model"}}
    assert problems(EXISTING, **bad) == [
        (
            "gateway.azureApim.versioning.headerName",
            "'x model' is not an HTTP header name of 1 to 100 characters",
        )
    ]
    long = {"gateway.azureApim.versioning": {"scheme": "Header", "headerName": "x" * 101}}
    assert [p for p, _ in problems(EXISTING, **long)] == ["gateway.azureApim.versioning.headerName"]


def test_query_scheme_needs_a_query_name() -> None:
    assert problems(EXISTING, **{"gateway.azureApim.versioning": {"scheme": "Query"}}) == [
        ("gateway.azureApim.versioning.queryName", "is required with scheme Query")
    ]


def test_names_for_another_scheme_are_left_to_the_loader() -> None:
    versioning = {"scheme": "Segment", "headerName": "x-v", "queryName": "v"}
    assert problems(EXISTING, **{"gateway.azureApim.versioning": versioning}) == []


def test_version_header_without_the_header_scheme_says_how_to_pin() -> None:
    assert problems(EXISTING, **{"gateway.versionHeader": "x-model-version"}) == [
        (
            "gateway.versionHeader",
            "azure-apim pins a version through the version set's scheme (Segment); for a "
            "header use versioning: {scheme: Header, headerName: x-model-version}",
        )
    ]


def test_version_header_must_agree_with_the_sets_header() -> None:
    assert problems(CREATED, **{"gateway.versionHeader": "X-Model-Version"}) == []
    assert problems(CREATED, **{"gateway.versionHeader": "x-other"}) == [
        (
            "gateway.versionHeader",
            "'x-other' differs from gateway.azureApim.versioning.headerName 'x-model-version': "
            "APIM reads the version from the version set's header",
        )
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "ftp://h.example.com",
            "'ftp://h.example.com': APIM backends are http or https, not 'ftp'",
        ),
        ("https://", "'https://' has no host"),
        (
            "https://u:p@h.example.com",
            "'https://u:p@h.example.com' must not carry credentials: spec files hold no secrets",
        ),
        (
            "https://h.example.com/?a=1",
            "'https://h.example.com/?a=1' must not have a query or a fragment: APIM appends the "
            "request path to it",
        ),
        (
            "https://h.example.com:70000",
            "'https://h.example.com:70000' is not a valid URL: Port out of range 0-65535",
        ),
        ("https://h.example.com/" + "a" * 2000, "is 2022 characters; APIM allows at most 2000"),
    ],
)
def test_bad_urls_are_rejected(url: str, message: str) -> None:
    assert problems(EXISTING, **{"versions.1.url": url}) == [("versions[1].url", message)]


def test_http_backend_urls_are_accepted() -> None:
    assert problems(EXISTING, **{"versions.1.url": "http://10.1.2.3:8080/score"}) == []


def test_long_paths_are_rejected() -> None:
    assert problems(EXISTING, **{"gateway.path": "/" + "p" * 401}) == [
        ("gateway.path", "is 401 characters; APIM allows at most 400")
    ]


def test_missing_azure_apim_block_is_reported_not_raised() -> None:
    assert problems(EXISTING, **{"gateway.azureApim": None}) == [
        ("gateway", "the azure-apim gateway needs gateway.azureApim")
    ]
