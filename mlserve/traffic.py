"""The traffic state machine (DESIGN.md section 4). Pure code: no Pulumi import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlserve.errors import PreconditionError, UsageError

if TYPE_CHECKING:
    from mlserve.spec import Spec


@dataclass(frozen=True)
class TrafficState:
    stable: str
    canary: str | None = None
    weight: int = 0  # the canary's share of unpinned traffic, 0..100
    previous: str | None = None  # the stable before the last completed promotion, kept at 0%

    def __post_init__(self) -> None:
        if isinstance(self.weight, bool) or not isinstance(self.weight, int):
            raise ValueError(f"weight must be an integer, not {self.weight!r}")
        if not 0 <= self.weight <= 100:
            raise ValueError(f"weight must be in 0..100, not {self.weight}")
        if self.canary is None and self.weight != 0:
            raise ValueError("a weight needs a canary")
        if self.canary == self.stable:
            raise ValueError(f"canary and stable are both {self.stable!r}")
        if self.previous is not None and self.previous in (self.stable, self.canary):
            raise ValueError(f"previous {self.previous!r} is also live")

    def weights(self) -> dict[str, int]:
        """Each routed version's share of unpinned traffic; the values sum to 100."""
        if self.canary is None:
            return {self.stable: 100}
        return {self.stable: 100 - self.weight, self.canary: self.weight}

    def versions(self) -> tuple[str, ...]:
        """Every version the state needs deployed."""
        return tuple(v for v in (self.stable, self.canary, self.previous) if v is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stable": self.stable,
            "canary": self.canary,
            "weight": self.weight,
            "previous": self.previous,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficState:
        return cls(
            stable=data["stable"],
            canary=data.get("canary"),
            weight=int(data.get("weight", 0)),
            previous=data.get("previous"),
        )


def initial(spec: Spec) -> TrafficState:
    """The spec's `traffic` as written."""
    t = spec.traffic
    return TrafficState(t.stable, t.canary, t.weight if t.canary else 0)


def reconcile(
    spec: Spec, live: TrafficState | None, reset: bool = False
) -> tuple[TrafficState, list[str]]:
    """The state a deploy of `spec` should apply, given what is live; with warnings to show."""
    want = initial(spec)
    if live is None:
        return want, []
    if not reset and want.canary is not None and live.stable == want.canary:
        return live, [
            f"canary {want.canary} was already promoted to stable; keeping the live traffic "
            f"({_describe(live)}). Update the spec: traffic.stable: {want.canary}, no canary."
        ]
    warnings = []
    weight = want.weight
    if not reset and (live.stable, live.canary) == (want.stable, want.canary):
        weight = live.weight
        if live.weight != want.weight:
            warnings.append(
                f"keeping the live canary weight {live.weight}% for {live.canary} "
                f"(the spec says {want.weight}%); use --reset-traffic to apply the spec's weight"
            )
    # A replaced stable stays deployed at 0% as `previous`, so a rollback is instant.
    previous = live.stable if live.stable != want.stable else live.previous
    if previous in want.versions():
        previous = None
    return TrafficState(want.stable, want.canary, weight, previous), warnings


def promote(live: TrafficState, weight: int) -> TrafficState:
    """Move the canary to `weight` percent; 100 completes the promotion."""
    if not 0 < weight <= 100:
        raise UsageError(f"--weight must be between 1 and 100, not {weight}")
    if live.canary is None:
        raise PreconditionError(f"nothing to promote: no canary is live (stable {live.stable})")
    if weight == 100:
        return TrafficState(stable=live.canary, previous=live.stable)
    return TrafficState(live.stable, live.canary, weight, live.previous)


def rollback(live: TrafficState) -> TrafficState:
    """Send all unpinned traffic back to the last known-good stable version."""
    if live.canary is not None and live.weight > 0:
        return TrafficState(live.stable, live.canary, 0, live.previous)
    if live.canary is None and live.previous is not None:
        # No `previous` afterwards: a second rollback must not flip back to the bad version.
        return TrafficState(stable=live.previous)
    raise PreconditionError(f"nothing to roll back: {_describe(live)}")


def _describe(state: TrafficState) -> str:
    if state.canary is None:
        return f"{state.stable} 100%"
    return f"{state.stable} {100 - state.weight}%, {state.canary} {state.weight}%"
