"""The example and golden Kong and Azure API Management specs, loaded and rendered through the whole
program (workloads included), checked against the rules in shared/reference/kong.md and
azure-apim.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mlserve.render import RenderedResource, render
from mlserve.spec import load_spec
from tests.gateway_helpers import kong_hostname_ok, of_type, one

ROOT = Path(__file__).resolve().parent.parent
KONG_SPECS = sorted(ROOT.glob("specs/kong*.yaml")) + sorted(
    ROOT.glob("tests/specs/valid-kong*.yaml")
)
APIM_SPECS = sorted(ROOT.glob("specs/azure-apim*.yaml")) + sorted(
    ROOT.glob("tests/specs/valid-azure-apim*.yaml")
)
TOKEN = "kong-admin-token-that-must-not-leak"


def _render(path: Path) -> list[RenderedResource]:
    return render(load_spec(path))


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def test_there_are_examples_to_render() -> None:
    assert KONG_SPECS and APIM_SPECS


@pytest.mark.parametrize("path", KONG_SPECS, ids=_ids(KONG_SPECS))
def test_kong_example_renders_resources_kong_accepts(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONG_ADMIN_TOKEN", TOKEN)
    res = _render(path)
    assert TOKEN not in json.dumps([r.to_json() for r in res])
    upstream = one(res, "kong:index/upstream:Upstream")
    assert kong_hostname_ok(upstream.inputs["name"])
    targets = of_type(res, "kong:index/target:Target")
    assert targets
    for t in targets:
        # Never 0: the provider would send nothing and Kong would apply its default of 100.
        assert 1 <= t.inputs["weight"] <= 65535
        host, port = t.inputs["target"].rsplit(":", 1)
        assert host and 0 < int(port) <= 65535
    services = of_type(res, "kong:index/service:Service")
    assert upstream.inputs["name"] in {s.inputs["host"] for s in services}
    for s in services:
        assert ":" not in s.inputs["host"]
        assert s.inputs["protocol"] in ("http", "https")
    for r in of_type(res, "kong:index/route:Route"):
        # typedefs.lua router_path: "/" (a prefix) or "~/" (a regex), never "//"
        assert r.inputs["paths"] and all(
            p.startswith(("/", "~/")) and "//" not in p for p in r.inputs["paths"]
        )
        assert set(r.inputs["protocols"]) <= {"http", "https"}
        for h in r.inputs.get("headers", []):
            assert re.fullmatch(r"[a-zA-Z0-9_-]+", h["name"]) and h["name"].lower() != "host"
    assert not any("v1beta1" in r.type for r in res)


@pytest.mark.parametrize("path", APIM_SPECS, ids=_ids(APIM_SPECS))
def test_apim_example_renders_resources_apim_accepts(path: Path) -> None:
    res = _render(path)
    types = {r.type for r in res}
    assert all(t.startswith("azure-native:apimanagement:") for t in types), types
    for service in of_type(res, "azure-native:apimanagement:ApiManagementService"):
        sku: dict[str, Any] = service.inputs["sku"]
        assert set(sku) == {"name", "capacity"}
        assert sku["capacity"] == 0 if sku["name"] == "Consumption" else sku["capacity"] >= 1
    vs = one(res, "azure-native:apimanagement:ApiVersionSet").inputs
    assert vs["versioningScheme"] in ("Segment", "Header", "Query")
    for key in ("versionHeaderName", "versionQueryName", "displayName"):
        assert key not in vs or 1 <= len(vs[key]) <= 100
    assert ("versionHeaderName" in vs) == (vs["versioningScheme"] == "Header")
    assert ("versionQueryName" in vs) == (vs["versioningScheme"] == "Query")
    for api in of_type(res, "azure-native:apimanagement:Api"):
        assert len(api.inputs["path"]) <= 400 and not api.inputs["path"].startswith("/")
        assert api.inputs["protocols"] == ["https"]
        assert re.fullmatch(r"[^*#&+:<>?]{1,80}", api.inputs["apiId"])
        assert api.inputs["serviceUrl"].startswith(("http://", "https://"))
    pools = [
        b for b in of_type(res, "azure-native:apimanagement:Backend") if b.inputs["type"] == "Pool"
    ]
    assert len(pools) == 1
    items = pools[0].inputs["pool"]["services"]
    assert items and sum(i["weight"] for i in items) == 100
    assert all(0 <= i["weight"] <= 100 and 0 <= i["priority"] <= 100 for i in items)
    policy = one(res, "azure-native:apimanagement:ApiPolicy").inputs
    assert pools[0].inputs["backendId"] in policy["value"]
