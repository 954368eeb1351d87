"""Timestep schedules for score distillation: which noise level each optimisation step uses.

Large t shapes coarse structure, small t refines detail; both schedules move from the first to
the second as the run goes on. Timesteps index the prior's training schedule (0 .. T-1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fieldkit.devices import draws_on
from fieldkit.errors import FieldkitError

SCHEDULES = ("annealed", "linear")


@dataclass
class TimestepSchedule:
    kind: str = "annealed"
    """annealed: uniform in [t_min, t_max(step)] with t_max falling to `anneal_to`; linear: t falls
    linearly from t_max to t_min with a little jitter (DreamGaussian)"""
    t_min: float = 0.02
    """lowest timestep, as a fraction of the training schedule"""
    t_max: float = 0.98
    """highest timestep, as a fraction of the training schedule"""
    anneal_to: float = 0.5
    """annealed: the upper bound at the last step (DreamFusion-style annealing of t_max)"""
    jitter: float = 0.05
    """linear: uniform jitter around the line, as a fraction of the schedule"""

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise FieldkitError(f"unknown timestep schedule '{self.kind}'; choose one of: {', '.join(SCHEDULES)}")
        if not 0 <= self.t_min < self.t_max <= 1:
            raise FieldkitError(f"timestep range must satisfy 0 <= t_min < t_max <= 1, got {self.t_min} .. {self.t_max}")

    def bounds(self, progress: float) -> tuple[float, float]:
        """The fraction range [low, high] that timesteps are drawn from at `progress` in [0, 1]."""
        if self.kind == "annealed":
            high = self.t_max + (max(self.anneal_to, self.t_min) - self.t_max) * progress
            return self.t_min, high
        centre = self.t_max + (self.t_min - self.t_max) * progress
        return max(centre - self.jitter, self.t_min), min(centre + self.jitter, self.t_max)

    def sample(self, count: int, step: int, steps: int, num_train_timesteps: int,
               generator: torch.Generator | None = None) -> Tensor:  # -> [B] int64
        low, high = self.bounds(step / max(steps - 1, 1))
        fractions = low + (high - low) * torch.rand(count, generator=generator, device=draws_on(generator))
        return (fractions * (num_train_timesteps - 1)).round().long()
