"""The traffic state machine (DESIGN.md section 4). Pure code: no Pulumi import.

A mirror copies a share of unpinned requests to a version that serves none of them, and its
answers are dropped: it never changes the served split. What each transition does to it:

- `promote` to any weight ends a mirror of the canary (the canary now serves real traffic: a copy
  on top would double its requests and mix shadow answers into its metrics); a mirror of another
  version stays. `rollout` steps are promotes, so the first weighted step ends the mirror.
- `rollback` always ends the mirror, in the same update that moves the traffic: an emergency
  rollback leaves no load on any version but the stable.
- `reconcile` (deploy) treats the mirror as it treats the weight: while the spec names the live
  stable and canary the live mirror is kept (with a warning when the spec differs), unless the
  spec no longer lists the mirrored version; a new stable or canary, or `--reset-traffic`, takes
  the spec's mirror, or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlserve.errors import PreconditionError, UsageError

if TYPE_CHECKING:
    from mlserve.spec import Spec


@dataclass(frozen=True)
class Mirror:
    """A copy of `percent`% of unpinned requests goes to `version`; its answers are dropped."""

    version: str
    percent: int = 100

    def __post_init__(self) -> None:
        if isinstance(self.percent, bool) or not isinstance(self.percent, int):
            raise ValueError(f"mirror percent must be an integer, not {self.percent!r}")
        if not 1 <= self.percent <= 100:
            raise ValueError(f"mirror percent must be in 1..100, not {self.percent}")

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "percent": self.percent}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mirror:
        return cls(version=data["version"], percent=int(data.get("percent", 100)))

    def describe(self) -> str:
        return f"{self.percent}% copied to {self.version}"


@dataclass(frozen=True)
class TrafficState:
    stable: str
    canary: str | None = None
    weight: int = 0  # the canary's share of unpinned traffic, 0..100
    previous: str | None = None  # the stable before the last completed promotion, kept at 0%
    mirror: Mirror | None = None  # a copy of unpinned traffic to a version serving none of it

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
        m = self.mirror
        if m is not None and m.version == self.stable:
            raise ValueError(f"the mirror and the stable are both {self.stable!r}")
        if m is not None and m.version == self.canary and self.weight > 0:
            raise ValueError(f"the mirrored canary {m.version!r} serves {self.weight}%")

    def weights(self) -> dict[str, int]:
        """Each routed version's share of unpinned traffic; the values sum to 100."""
        if self.canary is None:
            return {self.stable: 100}
        return {self.stable: 100 - self.weight, self.canary: self.weight}

    def versions(self) -> tuple[str, ...]:
        """Every version the state needs deployed."""
        names = (
            self.stable,
            self.canary,
            self.previous,
            self.mirror.version if self.mirror else None,
        )
        return tuple(dict.fromkeys(v for v in names if v is not None))

    def to_dict(self) -> dict[str, Any]:
        return {
            "stable": self.stable,
            "canary": self.canary,
            "weight": self.weight,
            "previous": self.previous,
            "mirror": self.mirror.to_dict() if self.mirror else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficState:
        """Also a record written before mirrors existed: no `mirror` key is no mirror."""
        stable = data["stable"]  # first: a TypeError for a record that is not an object
        mirror = data.get("mirror")
        return cls(
            stable=stable,
            canary=data.get("canary"),
            weight=int(data.get("weight", 0)),
            previous=data.get("previous"),
            mirror=Mirror.from_dict(mirror) if mirror is not None else None,
        )


def initial(spec: Spec) -> TrafficState:
    """The spec's `traffic` as written."""
    t = spec.traffic
    return TrafficState(t.stable, t.canary, t.weight if t.canary else 0, mirror=t.mirror)


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
    weight, mirror = want.weight, want.mirror
    if not reset and (live.stable, live.canary) == (want.stable, want.canary):
        weight, mirror = live.weight, live.mirror
        if live.weight != want.weight:
            warnings.append(
                f"keeping the live canary weight {live.weight}% for {live.canary} "
                f"(the spec says {want.weight}%); use --reset-traffic to apply the spec's weight"
            )
        if mirror is not None and mirror.version not in spec.version_names:
            warnings.append(
                f"ending the live mirror ({mirror.describe()}): the spec no longer lists "
                f"{mirror.version}"
            )
            mirror = None
        elif mirror != want.mirror:
            said = f"the spec says {_describe_mirror(want.mirror)}"
            kept = (
                f"the live mirror ({mirror.describe()}; {said})"
                if mirror
                else f"the live traffic without a mirror ({said})"
            )
            warnings.append(f"keeping {kept}; use --reset-traffic to apply the spec's mirror")
    elif not reset and live.mirror is not None and live.mirror != want.mirror:
        warnings.append(
            f"ending the live mirror ({live.mirror.describe()}): the spec's traffic is new "
            f"(stable {want.stable}, canary {want.canary or 'none'})"
            + (f"; applying its mirror ({want.mirror.describe()})" if want.mirror else "")
        )
    # A replaced stable stays deployed at 0% as `previous`, so a rollback is instant.
    previous = live.stable if live.stable != want.stable else live.previous
    if previous in want.versions():
        previous = None
    return TrafficState(want.stable, want.canary, weight, previous, mirror), warnings


def promote(live: TrafficState, weight: int) -> TrafficState:
    """Move the canary to `weight` percent; 100 completes the promotion."""
    if not 0 < weight <= 100:
        raise UsageError(f"--weight must be between 1 and 100, not {weight}")
    if live.canary is None:
        raise PreconditionError(f"nothing to promote: no canary is live (stable {live.stable})")
    # The canary now serves real requests: a mirror of it ends (the module's docstring).
    mirror = live.mirror if live.mirror and live.mirror.version != live.canary else None
    if weight == 100:
        return TrafficState(stable=live.canary, previous=live.stable, mirror=mirror)
    return TrafficState(live.stable, live.canary, weight, live.previous, mirror)


def rollback(live: TrafficState) -> TrafficState:
    """Send all unpinned traffic back to the last known-good stable version, and end any mirror:
    an emergency rollback must leave no load on the version it rolls back from."""
    if live.canary is not None and (live.weight > 0 or live.mirror is not None):
        return TrafficState(live.stable, live.canary, 0, live.previous)
    if live.canary is None and live.previous is not None:
        # No `previous` afterwards: a second rollback must not flip back to the bad version.
        return TrafficState(stable=live.previous)
    if live.mirror is not None:
        return TrafficState(live.stable, previous=live.previous)
    raise PreconditionError(f"nothing to roll back: {_describe(live)}")


def halt(live: TrafficState) -> TrafficState:
    """What an aborted rollout applies: the rollback, which ends a mirror in the same update as
    it sends the canary to 0%; the live state when there is nothing to roll back."""
    try:
        return rollback(live)
    except PreconditionError:
        return live


def set_mirror(live: TrafficState, version: str, percent: int) -> TrafficState:
    """Copy `percent`% of unpinned traffic to `version` (a deployed version: the caller checks),
    replacing any live mirror; the served split stays as it is."""
    if isinstance(percent, bool) or not 1 <= percent <= 100:
        raise UsageError(f"--percent must be between 1 and 100, not {percent}")
    if version == live.stable:
        raise PreconditionError(
            f"{version} is the stable version and serves {live.weights()[version]}% already: "
            "a mirror copies traffic to a version that serves none of it"
        )
    if version == live.canary and live.weight > 0:
        raise PreconditionError(
            f"the canary {version} serves {live.weight}% already: a mirror would send it copies "
            f"of requests it answers. Run `mlserve rollback` first to mirror it at 0%"
        )
    return TrafficState(
        live.stable, live.canary, live.weight, live.previous, Mirror(version, percent)
    )


def end_mirror(live: TrafficState) -> TrafficState:
    if live.mirror is None:
        raise PreconditionError(f"nothing to end: no mirror is live ({_describe(live)})")
    return TrafficState(live.stable, live.canary, live.weight, live.previous)


def _describe_mirror(mirror: Mirror | None) -> str:
    return mirror.describe() if mirror else "no mirror"


def _describe(state: TrafficState) -> str:
    if state.canary is None:
        text = f"{state.stable} 100%"
    else:
        text = f"{state.stable} {100 - state.weight}%, {state.canary} {state.weight}%"
    return text + (f", mirror {state.mirror.describe()}" if state.mirror else "")
