"""Capacity that follows traffic (DESIGN.md section 3, "Capacity"). Pure code: no Pulumi import.

`plan` says what each image version runs for a spec and a traffic state:

- a version with `autoscale` gets a HorizontalPodAutoscaler, and its Deployment leaves the count
  to it (`replicas` None);
- with `traffic.canaryReplicas: proportional` the canary runs max(1, ceil(S x share / 100)), S the
  stable's replicas (an autoscaled stable counts its min) and share the canary's weight, or the
  percent a mirror copies to it if that is more; an autoscaled canary's min follows the rule;
- with `traffic.previousReplicas: N` the previous stable runs N: an autoscaled one has its
  autoscaler pinned at N (min = max = N), or at 0 its Deployment set to 0 replicas, where the
  autoscaler leaves it (Kubernetes pkg/controller/podautoscaler/horizontal.go: a target scaled to 0
  has "scaling disabled");
- every other version runs its own `replicas` or autoscaler.

`settle` adapts a plan to what is live, and `rising`/`falling` give the order a change takes:
capacity before weight. A version whose capacity rises is Ready before the routing moves (the
routing resources depend on its Deployment, and Pulumi's readiness wait holds them); one whose
capacity falls is scaled down only after the routing moved (its Deployment and autoscaler depend
on the routing resources instead). program.py declares them so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlserve.spec import Spec, Version
    from mlserve.traffic import TrafficState


# What a rollback to a previous stable kept at fewer pods costs, as validate and plan say it:
# bench/capacity_rollback.py measured the difference on the real stack (medians, README).
ROLLBACK_WAIT = (
    "it waits for the model to start, and with pods that start at once it took 0.6 s more than "
    "one to a stable that kept its pods (measured on a real API server)"
)


@dataclass(frozen=True)
class Scale:
    """What one image version runs."""

    replicas: int | None  # the Deployment's spec.replicas; None: its autoscaler sets them
    hpa: tuple[int, int] | None = None  # its autoscaler's (minReplicas, maxReplicas); None: none
    why: str = ""  # "proportional", "previous", or "" for the version's own replicas
    # Apply the Deployment forced (pulumi.com/patchForce, pulumi-kubernetes
    # provider/pkg/await/await.go `patchForce`): beside an autoscaler, whose controller may own
    # spec.replicas, a server-side apply that sets it is otherwise a conflict (workloads.py).
    take: bool = False

    @property
    def floor(self) -> int:
        """The pods it runs at least: what must be Ready before traffic moves to it."""
        if self.replicas is not None:
            return self.replicas
        assert self.hpa is not None
        return self.hpa[0]

    @property
    def autoscaled(self) -> bool:
        return self.hpa is not None and self.replicas is None

    def describe(self) -> str:
        """`4`, `2..12 (autoscaled)`, `0 (autoscaler paused)`, `2, then 2..12 (autoscaled)`."""
        if self.hpa is None:
            return str(self.replicas)
        low, high = self.hpa
        bounds = f"{low} (autoscaled)" if low == high else f"{low}..{high} (autoscaled)"
        if self.replicas == 0:
            return "0 (autoscaler paused)"
        if self.replicas is not None:  # set once, as a version wakes from 0
            return f"{self.replicas}, then {bounds}"
        return bounds

    def to_json(self) -> dict[str, object]:
        return {
            "replicas": self.replicas,
            "autoscaler": {"min": self.hpa[0], "max": self.hpa[1]} if self.hpa else None,
            "floor": self.floor,
            "why": self.why or "spec",
        }


def proportional(stable: int, share: int) -> int:
    """max(1, ceil(stable x share / 100)), in integers."""
    return max(1, -(-stable * share // 100))


def own(version: Version) -> Scale:
    """What a version runs by its own spec."""
    a = version.autoscale
    if a is None:
        return Scale(version.replicas)
    return Scale(None, (a.min, a.max), take=True)


def canary_share(traffic: TrafficState) -> int:
    """The canary's share of unpinned requests: its weight, or what a mirror copies to it."""
    m = traffic.mirror
    return max(traffic.weight, m.percent if m is not None and m.version == traffic.canary else 0)


def plan(spec: Spec, traffic: TrafficState) -> dict[str, Scale]:
    """What each image version of `spec` runs under `traffic` (the module's docstring)."""
    versions = {v.name: v for v in spec.versions if v.image is not None}
    out = {name: own(v) for name, v in versions.items()}
    t = spec.traffic
    canary = traffic.canary
    if t.canary_replicas == "proportional" and canary in versions and traffic.stable in versions:
        count = proportional(out[traffic.stable].floor, canary_share(traffic))
        a = versions[canary].autoscale
        out[canary] = (
            Scale(count, why="proportional")
            if a is None
            else Scale(None, (count, max(a.max, count)), why="proportional", take=True)
        )
    previous = traffic.previous
    mirrored = traffic.mirror.version if traffic.mirror else None
    n = t.previous_replicas
    if n is not None and previous in versions and previous != mirrored:
        if versions[previous].autoscale is None:
            out[previous] = Scale(n, why="previous")
        elif n == 0:
            out[previous] = replace(out[previous], replicas=0, why="previous")
        else:
            out[previous] = Scale(None, (n, n), why="previous", take=True)
    return out


def settle(after: Mapping[str, Scale], before: Mapping[str, Scale] | None) -> dict[str, Scale]:
    """`after` as the update must declare it, given what is live (`before`; None: unknown).

    An autoscaled version at 0 (a previous stable kept at 0) wakes with an explicit count, its
    autoscaler's min: the autoscaler would leave a Deployment at 0 alone, and so would the update
    (the live count is kept while the field is ours: workloads.py). A version whose
    autoscaler is dropped takes spec.replicas back from the autoscaler controller, forced, in
    that update (`Scale.take`).
    """
    out = {}
    for name, new in after.items():
        old = (before or {}).get(name)
        if new.autoscaled and old is not None and old.replicas == 0:
            assert new.hpa is not None
            new = replace(new, replicas=new.hpa[0])
        if new.hpa is None and old is not None and old.hpa is not None:
            new = replace(new, take=True)
        out[name] = new
    return out


def _lowered(old: Scale, new: Scale) -> bool:
    if new.floor < old.floor:
        return True
    return old.hpa is not None and new.hpa is not None and new.hpa[1] < old.hpa[1]


def falling(before: Mapping[str, Scale] | None, after: Mapping[str, Scale]) -> frozenset[str]:
    """Versions whose capacity falls: scaled down only after the routing moved."""
    if before is None:
        return frozenset()
    return frozenset(
        name for name, new in after.items() if name in before and _lowered(before[name], new)
    )


def rising(before: Mapping[str, Scale] | None, after: Mapping[str, Scale]) -> frozenset[str]:
    """Versions whose capacity rises: Ready before the routing moves."""
    if before is None:
        return frozenset()
    return frozenset(
        name for name, new in after.items() if name in before and new.floor > before[name].floor
    )


def changed(before: Mapping[str, Scale] | None, after: Mapping[str, Scale]) -> frozenset[str]:
    """Versions whose Deployment or autoscaler a change of traffic updates."""
    if before is None:
        return frozenset(after)
    return frozenset(
        name
        for name, new in after.items()
        if name in before and _declared(before[name]) != _declared(new)
    )


def _declared(scale: Scale) -> tuple[int | None, tuple[int, int] | None, bool]:
    """What of a Scale reaches the Deployment's and autoscaler's inputs."""
    return scale.replicas, scale.hpa, scale.take


@dataclass(frozen=True)
class Change:
    """One version's capacity before and after an update, and when it moved."""

    version: str
    before: Scale
    after: Scale

    @property
    def when(self) -> str:
        """ "before": Ready before the traffic moved; "after": scaled down after it moved."""
        return "after" if _lowered(self.before, self.after) else "before"

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "before": self.before.to_json(),
            "after": self.after.to_json(),
            "when": self.when,
        }


def changes(before: Mapping[str, Scale] | None, after: Mapping[str, Scale]) -> list[Change]:
    """Each version whose capacity the update changes, in the order of `after`."""
    if before is None:
        return []
    return [
        Change(name, before[name], new)
        for name, new in after.items()
        if name in before and (before[name].floor, before[name].hpa) != (new.floor, new.hpa)
    ]
