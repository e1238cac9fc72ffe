"""The traffic state machine (DESIGN.md section 4). Pure code: no Pulumi import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrafficState:
    stable: str
    canary: str | None = None
    weight: int = 0  # the canary's share of unpinned traffic, 0..100
    previous: str | None = None  # the stable before the last completed promotion, kept at 0%

    def weights(self) -> dict[str, int]:
        """Each routed version's share of unpinned traffic; the values sum to 100."""
        if self.canary is None:
            return {self.stable: 100}
        return {self.stable: 100 - self.weight, self.canary: self.weight}

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
