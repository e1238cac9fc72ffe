"""traffic.mirror and rollout mirror steps at `validate`: what each gateway can mirror, as
../shared/reference/traffic.md says with its sources, and the reason when it cannot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlserve.errors import SpecError
from mlserve.spec import load_spec
from mlserve.traffic import Mirror

REPO = Path(__file__).resolve().parents[1]


def with_mirror(tmp_path: Path, gateway: str, mirror: str, extra: str = "") -> Path:
    """The example spec of `gateway` with its canary at weight 0 and `mirror` under traffic."""
    text = (REPO / "specs" / f"{gateway}.yaml").read_text()
    text = re.sub(r"(?m)^  weight: \d+.*$", "  weight: 0", text).rstrip("\n")
    path = tmp_path / f"{gateway}.yaml"
    path.write_text(f"{text}\n  mirror: {mirror}\n{extra}")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as e:
        load_spec(path)
    return [f"{p.path}: {p.message}" for p in e.value.problems]


@pytest.mark.parametrize(
    ("gateway", "canary", "why"),
    [
        (
            "kong",
            "v2",
            "Kong has no request mirroring (its ingress controller refuses the Gateway API "
            "RequestMirror filter; Kong/kubernetes-ingress-controller#4165)",
        ),
        (
            "azure-apim",
            "v2",
            "API Management has no request mirroring (a send-one-way-request policy fires a "
            "copy and forgets it, with no share and no routing to a version)",
        ),
        ("service", "2024-12", "a Kubernetes Service only selects pods; it cannot copy requests"),
    ],
)
def test_a_gateway_that_cannot_mirror_refuses_it_with_the_reason(
    tmp_path: Path, gateway: str, canary: str, why: str
) -> None:
    path = with_mirror(tmp_path, gateway, f'{{version: "{canary}", percent: 20}}')
    assert problems(path) == [f"traffic.mirror: gateway {gateway} cannot mirror traffic: {why}"]


def test_kong_refuses_a_rollout_mirror_step_too(tmp_path: Path) -> None:
    text = (REPO / "specs" / "kong.yaml").read_text()
    path = tmp_path / "kong.yaml"
    path.write_text(text + "rollout:\n  steps:\n    - {mirror: 100, pause: 5m}\n")
    [problem] = problems(path)
    assert problem.startswith(
        "rollout.steps[0].mirror: gateway kong cannot mirror traffic: Kong has no request"
    )


def test_istio_and_gateway_api_mirror_any_share(tmp_path: Path) -> None:
    for gateway, canary in (("istio", "v2"), ("gateway-api", "8.0")):
        spec = load_spec(with_mirror(tmp_path, gateway, f'{{version: "{canary}", percent: 1}}'))
        assert spec.traffic.mirror == Mirror(canary, 1)


def test_ingress_nginx_mirrors_every_request_and_only_with_the_path_unstripped(
    tmp_path: Path,
) -> None:
    path = with_mirror(tmp_path, "ingress-nginx", "{version: v4, percent: 20}")
    assert problems(path) == [
        "traffic.mirror: gateway ingress-nginx mirrors every request or none (20% asked): use "
        "percent 100, or a gateway that mirrors a share (istio, gateway-api)",
    ]
    path = with_mirror(tmp_path, "ingress-nginx", "{version: v4}")
    assert problems(path) == [
        "traffic.mirror: gateway ingress-nginx sends the mirror the request's original URI, so "
        "with stripPath the mirrored version would get /sentiment/predict where the served one "
        "gets /predict: set gateway.stripPath: false (the model then serves under /sentiment), "
        "or use istio or gateway-api"
    ]
    text = path.read_text().replace("  path: /sentiment", "  path: /sentiment\n  stripPath: false")
    path.write_text(text)
    spec = load_spec(path)
    assert spec.traffic.mirror == Mirror("v4", 100)
    assert [(n.path, n.message) for n in spec.notes if n.path == "traffic.mirror"] == [
        (
            "traffic.mirror",
            "note: ingress-nginx copies every request to v4, pinned ones too, and a slow mirror "
            "slows the answers users get (annotations.md, Mirror)",
        )
    ]


def test_gateway_api_notes_the_conformance_features_a_mirror_needs(tmp_path: Path) -> None:
    spec = load_spec(with_mirror(tmp_path, "gateway-api", '{version: "8.0", percent: 5}'))
    [note] = [n.message for n in spec.notes if n.path == "traffic.mirror"]
    assert note == (
        "note: the mirror needs a Gateway that supports HTTPRouteRequestMirror and "
        "HTTPRouteRequestPercentageMirror (Extended conformance); one that does not may refuse "
        "the route (the deploy then fails with its reason) or leave the filter out"
    )


def test_a_mirror_names_a_running_version_that_is_not_the_stable(tmp_path: Path) -> None:
    base = (
        "apiVersion: mlserve/v1\nname: shadow\ngateway: {type: istio, host: s.example.com}\n"
        "versions:\n  - {name: v1, image: a:1}\n  - {name: v2, image: a:2, replicas: 0}\n"
        "traffic:\n  stable: v1\n"
    )
    path = tmp_path / "s.yaml"
    cases = {
        "{version: v1}": [
            "traffic.mirror.version: 'v1' is the stable version: a mirror copies traffic to a "
            "version that serves none of it (usually the canary at weight 0)"
        ],
        "{version: v2, percent: 5}": [
            "versions[1].replicas: 'v2' gets a mirror of 5% and needs at least 1 replica"
        ],
        "{version: v9}": ["traffic.mirror.version: 'v9' is not one of the versions (v1, v2)"],
        "{version: v2, percent: 101}": [
            "traffic.mirror.percent: 101 is greater than the maximum of 100"
        ],
        "{percent: 10}": ["traffic.mirror: 'version' is required"],
    }
    for mirror, expected in cases.items():
        path.write_text(f"{base}  mirror: {mirror}\n")
        assert problems(path) == expected, mirror
