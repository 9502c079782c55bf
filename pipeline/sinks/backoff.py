"""Capped exponential backoff with jitter, shared by the sink runner and the HTTP clients."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    """Delays initial, 2×initial, 4×initial … capped at `maximum`, each drawn uniformly from
    [½ d, d] so that many clients recovering from one outage do not retry in lock-step.

    Seconds throughout. `reset()` after a success starts the sequence again.
    """

    initial: float
    maximum: float
    attempts: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self.attempts, 60))
        self.attempts += 1
        return self._rng.uniform(ceiling / 2.0, ceiling)

    def reset(self) -> None:
        self.attempts = 0
