"""`render -o kong`: the Kong resources as a decK file, checked against decK's own JSON Schema.

tests/schemas/deck-kong.schema.json is Kong/go-database-reconciler pkg/file/kong_json_schema.json
(commit 8f5e476d, Apache-2.0): the schema decK generates from its file types (pkg/file/types.go)
and validates a state file against before `deck gateway diff/sync`. Beyond the schema, decK links
entities by nesting: a Route under its Service, a Target under its Upstream (pkg/file/builder.go
`ingestRoute`, `upstreams`/`ingestTargets`), and Kong balances over an Upstream only for a
Service whose host is the Upstream's name (shared/reference/kong.md).
"""

from __future__ import annotations

import io
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator

from mlserve.errors import UsageError
from mlserve.render import RenderedResource, mock_id, render, to_kong, write
from mlserve.spec import Spec, load_spec
from tests.k8s_helpers import REPO

SCHEMA = Path(__file__).parent / "schemas" / "deck-kong.schema.json"
KONG_SPECS = [REPO / "specs" / "kong.yaml", REPO / "tests" / "specs" / "valid-kong-urls.yaml"]


@cache
def _validator() -> Draft4Validator:
    return Draft4Validator(json.loads(SCHEMA.read_text()))


def deck_problems(document: dict[str, Any]) -> list[str]:
    return [f"{list(e.path)}: {e.message}" for e in _validator().iter_errors(document)]


def kong_yaml(resources: list[RenderedResource]) -> dict[str, Any]:
    out = io.StringIO()
    write(resources, "kong", out)
    loaded: dict[str, Any] = yaml.safe_load(out.getvalue())
    return loaded


def spec(**changes: Any) -> Spec:
    doc: dict[str, Any] = {
        "apiVersion": "mlserve/v1",
        "name": "fraud",
        "namespace": "ml",
        "gateway": {"type": "kong", "host": "models.example.com", "path": "/fraud"},
        "versions": [
            {"name": "v1", "image": "ghcr.io/acme/fraud:1.4.2"},
            {"name": "v2", "url": "http://fraud-v2.internal.example.com:8080"},
        ],
        "traffic": {"stable": "v1", "canary": "v2", "weight": 10},
    }
    doc.update(changes)
    return Spec.from_dict(doc)


def test_the_schema_file_is_decks_and_rejects_what_deck_rejects() -> None:
    assert deck_problems({"_format_version": "3.0", "upstreams": [{"name": "u"}]}) == []
    assert deck_problems({"upstreams": [{"name": "u", "targets": [{"weight": 1}]}]}) == [
        "['upstreams', 0, 'targets', 0]: 'target' is a required property"
    ]
    assert deck_problems({"services": [{"name": "s", "strip_path": True}]})  # a Route field


@pytest.mark.parametrize("path", KONG_SPECS, ids=lambda p: p.name)
def test_every_kong_example_renders_a_file_that_passes_decks_schema(path: Path) -> None:
    document = kong_yaml(render(load_spec(path)))
    assert deck_problems(document) == []
    assert document["_format_version"] == "3.0"


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"gateway": {"type": "kong", "path": "/fraud", "versionHeader": "x-model-version"}},
        {"traffic": {"stable": "v1"}},
        {"traffic": {"stable": "v1", "canary": "v2", "weight": 0}},
    ],
    ids=["split", "header-pins", "stable-only", "canary-at-0"],
)
def test_kong_variants_pass_decks_schema_and_balance_over_their_upstream(
    changes: dict[str, Any],
) -> None:
    resources = render(spec(**changes))
    document = kong_yaml(resources)
    assert deck_problems(document) == []
    upstreams = {u["name"]: u for u in document["upstreams"]}
    balanced = [s for s in document["services"] if s["host"] in upstreams]
    assert len(balanced) == 1  # the unpinned service
    rendered_targets = [r for r in resources if r.type == "kong:index/target:Target"]
    targets = [t for u in document["upstreams"] for t in u.get("targets", [])]
    assert sorted((t["target"], t["weight"]) for t in targets) == sorted(
        (r.inputs["target"], r.inputs["weight"]) for r in rendered_targets
    )


def test_the_split_as_decks_file() -> None:
    document = kong_yaml(render(spec()))
    tags = ["mlserve", "fraud"]
    assert document == {
        "_format_version": "3.0",
        "_info": {"select_tags": tags},
        "services": [
            {
                "name": "fraud",
                "host": "fraud.ml.mlserve",
                "port": 80,
                "protocol": "http",
                "tags": tags,
                "routes": [
                    {
                        "name": "fraud",
                        "hosts": ["models.example.com"],
                        "paths": ["/fraud"],
                        "protocols": ["http", "https"],
                        "strip_path": True,
                        "tags": tags,
                    }
                ],
            }
        ],
        "upstreams": [
            {
                "name": "fraud.ml.mlserve",
                "tags": tags,
                "targets": [
                    {"target": "fraud-v1.ml.svc.cluster.local:80", "tags": tags, "weight": 90},
                    {"target": "fraud-v2.internal.example.com:8080", "tags": tags, "weight": 10},
                ],
            }
        ],
    }


def test_header_pins_become_a_header_map_on_each_versions_route() -> None:
    pinned = spec(gateway={"type": "kong", "path": "/fraud", "versionHeader": "X-Model-Version"})
    routes = {
        r["name"]: r
        for s in kong_yaml(render(pinned))["services"]
        for r in s.get("routes", [])
        if "headers" in r
    }
    assert {name: r["headers"] for name, r in routes.items()} == {
        "fraud-v1": {"X-Model-Version": ["v1"]},
        "fraud-v2": {"X-Model-Version": ["v2"]},
    }


def test_entities_are_placed_by_the_ids_render_gives_them_not_by_name() -> None:
    """What another change to the kong backend might render: names with the namespace, a
    service and an upstream that share no name, a version's own service."""
    tags = ["mlserve"]
    up = RenderedResource(
        "kong:index/upstream:Upstream", "ml-fraud", {"name": "u.ml", "tags": tags}
    )
    svc = RenderedResource(
        "kong:index/service:Service",
        "ml-fraud-svc",
        {"name": "ml-fraud", "host": "u.ml", "port": 80, "protocol": "http", "tags": tags},
    )
    pin = RenderedResource(
        "kong:index/service:Service",
        "ml-fraud-v2",
        {"name": "ml-fraud-v2", "host": "v2.ml", "port": 80, "protocol": "http", "tags": tags},
    )
    route = RenderedResource(
        "kong:index/route:Route",
        "ml-fraud-v2",
        {"name": "r2", "paths": ["/"], "serviceId": mock_id("ml-fraud-v2"), "tags": tags},
    )
    target = RenderedResource(
        "kong:index/target:Target",
        "ml-fraud-v1",
        {"target": "v1.ml:80", "upstreamId": mock_id("ml-fraud"), "weight": 100, "tags": tags},
    )
    document = to_kong([route, target, pin, svc, up])
    assert deck_problems(document) == []
    assert [
        (s["name"], [r["name"] for r in s.get("routes", [])]) for s in document["services"]
    ] == [
        ("ml-fraud-v2", ["r2"]),
        ("ml-fraud", []),
    ]
    assert document["upstreams"] == [
        {
            "name": "u.ml",
            "tags": tags,
            "targets": [{"target": "v1.ml:80", "tags": tags, "weight": 100}],
        }
    ]


def test_a_child_whose_parent_was_not_rendered_is_a_bug_not_a_usage_error() -> None:
    orphan = RenderedResource(
        "kong:index/target:Target", "t", {"target": "a:80", "upstreamId": mock_id("nope")}
    )
    with pytest.raises(ValueError) as e:
        to_kong([orphan])
    assert str(e.value) == "-o kong: a Target names no rendered Upstream"


def test_a_spec_without_kong_resources_has_no_kong_file() -> None:
    with pytest.raises(UsageError) as e:
        to_kong(render(load_spec(REPO / "specs" / "istio.yaml")))
    assert str(e.value) == (
        "-o kong: this spec renders no Kong resources (its gateway is not kong); "
        "use -o yaml or -o json"
    )
