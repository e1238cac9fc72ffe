"""`render -o kong`: the Kong resources as a decK file, checked against decK's file rules.

The rules below are read from Kong/go-database-reconciler: pkg/file/types.go (the file's entity
types and their JSON fields) and the JSON Schema decK generates from them and validates a state
file against before `deck gateway diff/sync` (pkg/file/kong_json_schema.json, commit 8f5e476d): a
top level, `FService`, `FRoute`, `FUpstream` and `FTarget` with `additionalProperties: false`,
`name` required on an upstream and `target` on a target. Only the fields mlserve could write are
listed; the upstream file is not copied into this project. Beyond those, decK links entities by
nesting: a Route under its Service, a Target under its Upstream (pkg/file/builder.go
`ingestRoute`, `ingestTargets`), and Kong balances over an Upstream only for a Service whose host
is the Upstream's name (shared/reference/kong.md).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlserve.errors import UsageError
from mlserve.render import RenderedResource, mock_id, render, to_kong, write
from mlserve.spec import Spec, load_spec
from tests.k8s_helpers import REPO

KONG_SPECS = [REPO / "specs" / "kong.yaml", REPO / "tests" / "specs" / "valid-kong-urls.yaml"]
STRINGS = (list, str)
# entity -> {field: (JSON type, item type)}, from pkg/file/kong_json_schema.json; required fields
ENTITIES: dict[str, dict[str, tuple[type, type | None]]] = {
    "top": {
        "_format_version": (str, None),
        "_info": (dict, None),
        "services": (list, dict),
        "upstreams": (list, dict),
    },
    "_info": {"select_tags": STRINGS},
    "service": {
        "name": (str, None),
        "host": (str, None),
        "port": (int, None),
        "protocol": (str, None),
        "path": (str, None),
        "retries": (int, None),
        "connect_timeout": (int, None),
        "read_timeout": (int, None),
        "write_timeout": (int, None),
        "tags": STRINGS,
        "routes": (list, dict),
    },
    "route": {
        "name": (str, None),
        "hosts": STRINGS,
        "paths": STRINGS,
        "methods": STRINGS,
        "headers": (dict, None),
        "protocols": STRINGS,
        "strip_path": (bool, None),
        "preserve_host": (bool, None),
        "regex_priority": (int, None),
        "path_handling": (str, None),
        "https_redirect_status_code": (int, None),
        "tags": STRINGS,
    },
    "upstream": {
        "name": (str, None),
        "algorithm": (str, None),
        "slots": (int, None),
        "host_header": (str, None),
        "tags": STRINGS,
        "targets": (list, dict),
    },
    "target": {"target": (str, None), "weight": (int, None), "tags": STRINGS},
}
REQUIRED = {"upstream": ("name",), "target": ("target",)}
CHILDREN = {
    "top": {"_info": "_info", "services": "service", "upstreams": "upstream"},
    "service": {"routes": "route"},
    "upstream": {"targets": "target"},
}


def deck_problems(document: dict[str, Any], entity: str = "top", at: str = "") -> list[str]:
    problems = []
    fields = ENTITIES[entity]
    for name in REQUIRED.get(entity, ()):
        if name not in document:
            problems.append(f"{at or entity}: {name!r} is a required property")
    for key, value in document.items():
        where = f"{at}.{key}" if at else key
        if key not in fields:
            problems.append(f"{where}: not a field of a decK {entity}")
            continue
        kind, item = fields[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            problems.append(f"{where}: not a {kind.__name__}")
            continue
        child = CHILDREN.get(entity, {}).get(key)
        if isinstance(value, dict) and child:
            problems += deck_problems(value, child, where)
        elif isinstance(value, list):
            for i, element in enumerate(value):
                if item is not None and not isinstance(element, item):
                    problems.append(f"{where}[{i}]: not a {item.__name__}")
                elif child:
                    problems += deck_problems(element, child, f"{where}[{i}]")
    return problems


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


def test_the_rules_reject_what_decks_schema_rejects() -> None:
    assert deck_problems({"_format_version": "3.0", "upstreams": [{"name": "u"}]}) == []
    assert deck_problems({"upstreams": [{"name": "u", "targets": [{"weight": 1}]}]}) == [
        "upstreams[0].targets[0]: 'target' is a required property"
    ]
    assert deck_problems({"services": [{"name": "s", "strip_path": True}]}) == [
        "services[0].strip_path: not a field of a decK service"  # a Route field
    ]
    assert deck_problems({"upstreams": [{"name": "u", "slots": "10"}]}) == [
        "upstreams[0].slots: not a int"
    ]


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
                "name": "ml.fraud",
                "host": "fraud.ml.mlserve",
                "port": 80,
                "protocol": "http",
                "tags": tags,
                "routes": [
                    {
                        "name": "ml.fraud",
                        "hosts": ["models.example.com"],
                        "paths": ["~/fraud(/|$)"],
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
                    {"target": "fraud-v1.ml.svc.cluster.local:80", "tags": tags, "weight": 100},
                    {"target": "fraud-v2.internal.example.com:8080", "tags": tags, "weight": 11},
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
        "ml.fraud.v1": {"X-Model-Version": ["v1"]},
        "ml.fraud.v2": {"X-Model-Version": ["v2"]},
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
