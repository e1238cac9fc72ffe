"""The inline Pulumi program: a closure over a validated, frozen spec and a traffic state."""

from __future__ import annotations

from collections.abc import Callable

from mlserve.spec import Spec
from mlserve.traffic import TrafficState


def build_program(spec: Spec, traffic: TrafficState) -> Callable[[], None]:
    """Return the inline program that declares the workloads and the gateway's routing.

    `spec` lists every version to keep deployed (the caller adds `traffic.previous` and the live
    versions); `traffic` is the split to apply.
    """

    def program() -> None:
        import pulumi

        from mlserve.backends import base, workloads

        backend = base.load(spec.gateway.type)
        deployed = workloads.declare(spec)
        declared = backend.declare(spec, traffic, deployed)
        pulumi.export("endpoint", declared.endpoint)
        pulumi.export("traffic", traffic.to_dict())
        pulumi.export("weights", traffic.weights())
        pulumi.export("versions", [v.name for v in spec.versions])
        # promote and rollback pass these as `target=`, so they touch routing only.
        pulumi.export("routing", [r.urn for r in declared.routing])
        for key, value in declared.extra.items():
            pulumi.export(key, value)

    return program
