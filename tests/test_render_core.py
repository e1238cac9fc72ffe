"""render_program: what the mocks record, as a user should see it."""

from __future__ import annotations

import signal
from typing import Any

import pulumi

from mlserve.render import MASK, render_program


def test_secret_inputs_are_masked_and_numbers_keep_their_type() -> None:
    def program() -> None:
        import pulumi_kubernetes as k8s

        k8s.core.v1.Secret(
            "creds",
            metadata={"name": "creds"},
            string_data={"token": pulumi.Output.secret("hunter2-do-not-print")},
        )
        k8s.core.v1.Service(
            "svc", metadata={"name": "svc"}, spec={"ports": [{"port": 80}], "selector": {"a": "b"}}
        )

    by_type = {r.type: r for r in render_program(program, "p", "dev")}
    secret, service = by_type["kubernetes:core/v1:Secret"], by_type["kubernetes:core/v1:Service"]
    assert secret.inputs["stringData"] == MASK
    assert "hunter2" not in repr(secret.inputs)
    port = service.inputs["spec"]["ports"][0]["port"]
    assert port == 80 and isinstance(port, int)


def test_provider_resources_are_left_out() -> None:
    def program() -> None:
        import pulumi_kubernetes as k8s

        provider = k8s.Provider("k", kubeconfig="secret-kubeconfig-contents")
        k8s.core.v1.Namespace(
            "ns", metadata={"name": "ml"}, opts=pulumi.ResourceOptions(provider=provider)
        )

    rendered = render_program(program, "p", "dev")
    assert [r.type for r in rendered] == ["kubernetes:core/v1:Namespace"]


def test_each_run_starts_from_an_empty_record() -> None:
    def program() -> None:
        import pulumi_kubernetes as k8s

        k8s.core.v1.Namespace("ns", metadata={"name": "ml"})

    assert len(render_program(program, "p", "dev")) == 1
    assert len(render_program(program, "p", "dev")) == 1


def test_a_resource_that_waits_for_one_declared_after_it_renders_in_declaration_order() -> None:
    """Its registration reaches the monitor after the later one's; the output keeps the order
    the program declared them in."""

    def program() -> None:
        import pulumi_kubernetes as k8s

        later: list[Any] = []
        k8s.core.v1.ConfigMap(
            "first",
            metadata={"name": "first"},
            data=pulumi.Output.from_input("x").apply(
                lambda _: later[0].id.apply(lambda i: {"ref": i})
            ),
        )
        later.append(k8s.core.v1.ConfigMap("second", metadata={"name": "second"}, data={"k": "v"}))

    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("render_program still waiting after 30 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        rendered = render_program(program, "p", "dev")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert [(r.name, r.inputs["data"]) for r in rendered] == [
        ("first", {"ref": "second-id"}),
        ("second", {"k": "v"}),
    ]
