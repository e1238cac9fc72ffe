"""The inline Pulumi program: a closure over a validated, frozen spec and a traffic state."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mlserve import capacity
from mlserve.capacity import Scale
from mlserve.spec import Spec
from mlserve.traffic import TrafficState


def build_program(
    spec: Spec, traffic: TrafficState, before: Mapping[str, Scale] | None = None
) -> Callable[[], None]:
    """Return the inline program that declares the workloads and the gateway's routing.

    `spec` lists every version to keep deployed (the caller adds `traffic.previous` and the live
    versions); `traffic` is the split to apply. `before` is what each version runs now
    (capacity.plan of the live record; None: unknown, as for render): a version whose capacity
    falls is scaled down after the routing moved, every other one is Ready before (capacity.py).
    """

    def program() -> None:
        import pulumi

        from mlserve.backends import base, workloads

        backend = base.load(spec.gateway.type)
        scales = capacity.settle(capacity.plan(spec, traffic), before)
        late = capacity.falling(before, scales)
        deployed = workloads.declare(spec, scales, late)
        declared = backend.declare(spec, traffic, deployed)
        workloads.declare_late(spec, scales, late, declared.routing)
        pulumi.export("endpoint", declared.endpoint)
        pulumi.export("traffic", traffic.to_dict())
        pulumi.export("weights", traffic.weights())
        pulumi.export("versions", [v.name for v in spec.versions])
        # promote and rollback pass these as `target=`, so they touch routing only.
        pulumi.export("routing", [r.urn for r in declared.routing])
        for key, value in declared.extra.items():
            pulumi.export(key, value)

    return program
