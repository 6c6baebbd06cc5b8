"""Per-destination concurrency that backs off while a destination fails (DESIGN "Backpressure").

Additive increase, multiplicative decrease: each transient failure halves the limit down to a
floor, each success adds one back up to the configured maximum. A destination that has been
down comes back under a trickle that grows with its successes, not a thundering herd (R11).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class AdaptiveLimit:
    maximum: int
    floor: int = 1
    current: int = 0

    def __post_init__(self) -> None:
        self.current = self.current or self.maximum

    def on_success(self) -> None:
        self.current = min(self.maximum, self.current + 1)

    def on_failure(self) -> None:
        self.current = max(self.floor, self.current // 2)

    def resize(self, maximum: int) -> None:
        self.maximum = maximum
        self.current = min(self.current, maximum)
