"""`render` output: declaration order, -o json, -o yaml (kubectl-ready), --out DIR."""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlserve import render as rendering
from mlserve.errors import UsageError
from mlserve.render import RenderedResource, file_name, left_out, render, write, write_files
from tests.k8s_helpers import K8S_GATEWAYS, make_spec, validate_manifest

KONG_TARGET = RenderedResource(
    "kong:index/target:Target", "fraud-v1", {"target": "fraud-v1.ml:80", "weight": 90}
)


def to_json(resources: list[RenderedResource]) -> str:
    out = io.StringIO()
    write(resources, "json", out)
    return out.getvalue()


def to_yaml(resources: list[RenderedResource]) -> str:
    out = io.StringIO()
    write(resources, "yaml", out)
    return out.getvalue()


def test_resources_come_in_declaration_order_every_time() -> None:
    spec = make_spec("gateway-api", versions=10)
    expected = [
        (k, f"fraud-detector-v{i}") for i in range(1, 11) for k in ("Deployment", "Service")
    ] + [("HTTPRoute", "fraud-detector")]
    for _ in range(5):
        got = [(r.type.rsplit(":", 1)[-1], r.name) for r in render(spec)]
        assert got == expected


def test_json_is_the_resources_with_type_name_and_inputs() -> None:
    resources = render(make_spec("ingress-nginx"))
    body = json.loads(to_json(resources))
    assert list(body) == ["resources"]
    assert [(r["type"], r["name"]) for r in body["resources"]] == [
        (r.type, r.name) for r in resources
    ]
    for entry, r in zip(body["resources"], resources, strict=True):
        assert list(entry) == ["type", "name", "inputs"]
        assert entry["inputs"] == r.inputs


def test_json_keys_are_in_manifest_order() -> None:
    body = json.loads(to_json(render(make_spec("istio"))))
    for entry in body["resources"]:
        assert list(entry["inputs"]) == ["apiVersion", "kind", "metadata", "spec"]
        assert list(entry["inputs"]["metadata"])[:2] == ["name", "namespace"]


@pytest.mark.parametrize("gw", K8S_GATEWAYS)
def test_yaml_is_a_multi_document_stream_of_valid_manifests(gw: str) -> None:
    text = to_yaml(render(make_spec(gw, rich=True)))
    assert text.startswith("---\n")
    assert "!!" not in text  # no Python or explicit tags
    docs = list(yaml.safe_load_all(text))
    assert len(docs) == text.count("---\n")
    for doc in docs:
        assert list(doc)[:3] == ["apiVersion", "kind", "metadata"]
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
        validate_manifest(doc)


def test_yaml_uses_block_style_and_keeps_annotation_values_strings() -> None:
    text = to_yaml(render(make_spec("ingress-nginx", weight=10)))
    assert "{" not in text and "[" not in text
    assert "nginx.ingress.kubernetes.io/canary: 'true'" in text
    assert "nginx.ingress.kubernetes.io/canary-weight: '10'" in text
    [*_, canary] = yaml.safe_load_all(text)
    assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary"] == "true"


def test_yaml_holds_kubernetes_objects_only_and_the_note_names_the_rest() -> None:
    k8s = render(make_spec("gateway-api", versions=1, canary=False))
    docs = list(yaml.safe_load_all(to_yaml([KONG_TARGET, *k8s])))
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "HTTPRoute"]
    assert left_out([KONG_TARGET, *k8s], "yaml") == (
        "note: -o yaml prints Kubernetes objects only; left out 1 Kong resources (1 Target): "
        "see them with -o kong (decK) or -o json"
    )
    assert left_out(k8s, "yaml") is None
    assert left_out([KONG_TARGET, *k8s], "json") is None


def test_the_note_for_azure_resources_points_at_json() -> None:
    api = RenderedResource("azure-native:apimanagement:Api", "fraud-v1", {})
    backend = RenderedResource("azure-native:apimanagement:Backend", "fraud-pool", {})
    k8s = render(make_spec("gateway-api", versions=1, canary=False))
    assert left_out([api, api, backend, *k8s], "yaml") == (
        "note: -o yaml prints Kubernetes objects only; left out 3 Azure resources (2 Api, "
        "1 Backend): see them with -o json"
    )
    # Nothing is printed at all (azure-apim with url versions only): exit 0, said plainly.
    assert left_out([api, api, backend], "yaml") == (
        "note: -o yaml prints Kubernetes objects only, and this spec declares none: nothing was "
        "printed. It declares 3 Azure resources (2 Api, 1 Backend): see them with -o json"
    )


def test_yaml_does_not_fold_long_lines() -> None:
    long_image = "registry.example.com/" + "a" * 200 + ":1.0"
    doc = make_spec("gateway-api", versions=1, canary=False).to_dict()
    doc["versions"][0]["image"] = long_image
    from mlserve.spec import Spec

    text = to_yaml(render(Spec.from_dict(doc)))
    assert f"image: {long_image}\n" in text


def test_file_names_are_numbered_kind_and_name() -> None:
    r = RenderedResource("kubernetes:apps/v1:Deployment", "fraud-v1", {})
    assert file_name(3, r, "yaml") == "03-deployment-fraud-v1.yaml"
    assert file_name(12, KONG_TARGET, "json") == "12-target-fraud-v1.json"
    odd = RenderedResource("azure-native:apimanagement:Api", "Fraud API/v1", {})
    assert file_name(1, odd, "yaml") == "01-api-fraud-api-v1.yaml"


def _read(path: Path) -> Any:
    if path.suffix == ".json":
        return json.loads(path.read_text())
    [doc] = yaml.safe_load_all(path.read_text())
    return doc


def test_out_dir_gets_one_file_per_kubernetes_object_for_yaml(tmp_path: Path) -> None:
    resources = [KONG_TARGET, *render(make_spec("ingress-nginx"))]
    written = write_files(resources, tmp_path / "out", "yaml")
    assert [p.name for p in written] == [
        "01-deployment-fraud-detector-v1.yaml",
        "02-service-fraud-detector-v1.yaml",
        "03-deployment-fraud-detector-v2.yaml",
        "04-service-fraud-detector-v2.yaml",
        "05-ingress-fraud-detector.yaml",
        "06-ingress-fraud-detector-canary.yaml",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in written]
    for path in written:
        validate_manifest(_read(path))


def test_out_dir_gets_every_resource_for_json_in_apply_order(tmp_path: Path) -> None:
    resources = [KONG_TARGET, *render(make_spec("ingress-nginx"))]
    written = write_files(resources, tmp_path / "out", "json")
    assert [p.name for p in written][-2:] == [
        "06-ingress-fraud-detector-canary.json",
        "07-target-fraud-v1.json",
    ]
    validate_manifest(_read(written[0]))
    assert _read(written[-1]) == KONG_TARGET.to_json()


def test_out_dir_for_kong_says_to_redirect_stdout(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as e:
        write_files([KONG_TARGET], tmp_path, "kong")
    assert (
        str(e.value) == "--out writes one file per resource; -o kong is one file: redirect stdout"
    )


def test_out_under_a_missing_parent_says_which_directory_is_missing(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such"
    with pytest.raises(UsageError) as e:
        write_files(render(make_spec("istio")), target, "yaml")
    assert str(e.value) == (
        f"--out {target}: {tmp_path / 'no'} does not exist; create it first, "
        "or choose another directory"
    )
    assert not (tmp_path / "no").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_out_into_a_read_only_directory_is_a_usage_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(UsageError) as e:
            write_files(render(make_spec("istio")), tmp_path / "out", "yaml")
    finally:
        tmp_path.chmod(0o700)
    assert str(e.value) == (
        f"--out {tmp_path / 'out'}: cannot write there (Permission denied); "
        "choose a directory you can write to"
    )


def test_out_into_proc_is_a_usage_error_with_the_path() -> None:
    with pytest.raises(UsageError) as e:
        write_files(render(make_spec("istio")), Path("/proc/mlserve-out"), "yaml")
    assert str(e.value).startswith("--out /proc/mlserve-out: cannot write there (")
    assert str(e.value).endswith("); choose a directory you can write to")


def test_out_dir_rewrites_its_own_files(tmp_path: Path) -> None:
    resources = render(make_spec("ingress-nginx"))
    first = write_files(resources, tmp_path, "yaml")
    (tmp_path / "notes.txt").write_text("mine")
    assert write_files(resources, tmp_path, "yaml") == first


def test_out_dir_refuses_to_leave_a_stale_manifest_from_an_earlier_render(tmp_path: Path) -> None:
    write_files(render(make_spec("ingress-nginx")), tmp_path, "yaml")
    with pytest.raises(UsageError) as e:
        write_files(render(make_spec("ingress-nginx", canary=False)), tmp_path, "yaml")
    assert str(e.value) == (
        f"{tmp_path} holds files this render does not write "
        "(06-ingress-fraud-detector-canary.yaml); "
        "remove them or choose an empty directory"
    )


def test_out_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("")
    with pytest.raises(UsageError, match="not a directory"):
        write_files(render(make_spec("istio")), target, "yaml")


# --- --out DIR never writes outside DIR, and never leaves a mixed directory (issue 20) ----------


def _istio(tmp_path: Path) -> tuple[list[RenderedResource], list[str]]:
    resources = render(make_spec("istio"))
    chosen = rendering.apply_order(rendering.selected(resources, "yaml"))
    return resources, [file_name(i, r, "yaml") for i, r in enumerate(chosen, start=1)]


def test_out_replaces_a_link_named_like_an_output_never_the_file_it_points_to(
    tmp_path: Path,
) -> None:
    resources, names = _istio(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    out = tmp_path / "out"
    out.mkdir()
    (out / names[0]).symlink_to(outside)
    (out / names[1]).symlink_to(tmp_path / "created-through-a-dangling-link")
    written = write_files(resources, out, "yaml")
    assert outside.read_text() == "not yours"
    assert not (tmp_path / "created-through-a-dangling-link").exists()
    for path in written:
        assert not path.is_symlink() and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "outside.txt"]


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_out_refuses_an_entry_named_like_an_output_that_is_not_a_file(
    tmp_path: Path, kind: str
) -> None:
    """A FIFO used to block render forever (opening it for writing waits for a reader)."""
    resources, names = _istio(tmp_path)
    target = tmp_path / names[2]
    os.mkfifo(target) if kind == "fifo" else target.mkdir()
    with pytest.raises(UsageError) as e:
        write_files(resources, tmp_path, "yaml")
    assert str(e.value) == (
        f"--out {tmp_path}: {names[2]} is not a file (a directory, a FIFO, a device): remove "
        "it or choose another directory"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [names[2]]  # nothing written


def test_a_new_out_directory_appears_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources, _ = _istio(tmp_path)
    real_open = Path.open
    calls = []

    def full_disk(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "x" in mode:
            calls.append(self.name)
            if len(calls) == 3:
                raise OSError(28, "No space left on device")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full_disk)
    with pytest.raises(UsageError) as e:
        write_files(resources, tmp_path / "out", "yaml")
    assert str(e.value) == (
        f"--out {tmp_path / 'out'}: cannot write there (No space left on device); choose a "
        "directory you can write to"
    )
    assert list(tmp_path.iterdir()) == []  # no DIR, no staging directory left behind


def test_a_failed_swap_says_exactly_what_was_replaced_and_what_was_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files are all written before any is swapped in; a swap that still fails part way
    (a rename refused) names both parts instead of leaving a silent mix."""
    resources, names = _istio(tmp_path)
    for name in names:
        (tmp_path / name).write_text("old\n")
    real_replace = os.replace
    calls = []

    def refuse_third(src: Any, dst: Any) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise OSError(13, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(rendering.os, "replace", refuse_third)
    with pytest.raises(UsageError) as e:
        write_files(resources, tmp_path, "yaml")
    assert str(e.value) == (
        f"--out {tmp_path}: cannot write there (Permission denied) after replacing 2 of "
        f"{len(names)} files ({names[0]} to {names[1]}); {names[2]} to {names[-1]} are as before "
        "this render (an earlier render's, or absent)"
    )
    contents = [(tmp_path / n).read_text() for n in names]
    assert [c == "old\n" for c in contents] == [False, False] + [True] * (len(names) - 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no staging left


def test_render_closes_its_worker_threads_and_leaves_the_event_loop_usable() -> None:
    render(make_spec("istio"))
    assert not [t for t in threading.enumerate() if t.name.startswith("mlserve-render")]
    loop = asyncio.get_event_loop_policy().get_event_loop()
    assert loop.run_until_complete(loop.run_in_executor(None, lambda: 42)) == 42


# Strings a YAML reader would take for something else, or that need quotes or escapes.
_TRICKY = st.sampled_from(
    ["", "1.10", "0o17", "1e3", "yes", "null", "~", "- x", "a: b", "#x", " x", "x ", "'", '"']
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.one_of(_TRICKY, st.text()), st.one_of(_TRICKY, st.text()), max_size=6))
def test_yaml_output_reads_back_as_the_same_strings(labels: dict[str, str]) -> None:
    """Strings a YAML reader would take for a number, a boolean or null stay strings."""
    doc = {"metadata": {"labels": labels}, "spec": {"args": list(labels.values())}}
    stream = io.StringIO()
    rendering._yaml([doc], stream)
    assert yaml.safe_load(stream.getvalue()) == doc
