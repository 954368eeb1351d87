"""PVD-AL's active learning: where the student disagrees most with the teacher, look again.

- ray level: the rays of highest error are replayed, unchanged, in later batches;
- image level: the camera poses behind them are revisited with small perturbations, so the
  neighbourhood of a hard view is sampled, not only its one ray;
- point level: the per-point losses focus on the samples that carry an opaque ray's colour
  (`focus_mask`).

The pools are not checkpointed: a resumed run refills them within a few steps.
Dimension letters: R rays, M evaluated samples.
"""
from __future__ import annotations

import torch
from torch import Tensor

# a sample carrying at least this share of its ray's colour is part of the visible surface
FOCUS_SAMPLE_WEIGHT = 0.05
OPAQUE_ALPHA = 0.5


class HardestPool:
    """Rows of several same-length tensors, keeping the `capacity` rows of highest error."""

    def __init__(self, capacity: int, widths: tuple[int, ...], dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        self.capacity = capacity
        self.columns = [torch.empty(0, width, dtype=dtype, device=device) for width in widths]
        self.errors = torch.empty(0, device=device)  # [P]

    def __len__(self) -> int:
        return self.errors.shape[0]

    def offer(self, columns: tuple[Tensor, ...], errors: Tensor) -> None:
        """Keeps the `capacity` rows of highest error among the pool and these new ones."""
        merged = [torch.cat([kept, new.detach()]) for kept, new in zip(self.columns, columns)]
        errors = torch.cat([self.errors, errors.detach()])
        keep = errors.topk(min(self.capacity, errors.shape[0])).indices
        self.columns, self.errors = [column[keep] for column in merged], errors[keep]

    def draw(self, count: int, generator: torch.Generator) -> tuple[Tensor, ...]:
        """Up to `count` rows, removed from the pool (their new error decides if they return)."""
        count = min(count, len(self))
        chosen = torch.randperm(len(self), generator=generator, device=self.errors.device)[:count]
        kept = torch.ones(len(self), dtype=torch.bool, device=self.errors.device)
        kept[chosen] = False
        drawn = tuple(column[chosen] for column in self.columns)
        self.columns, self.errors = [column[kept] for column in self.columns], self.errors[kept]
        return drawn


def focus_mask(sample_weights: Tensor, sample_rays: Tensor, ray_alpha: Tensor) -> Tensor:
    """[M] the samples of opaque rays (alpha of `ray_alpha` [R]) that carry a real share of the
    ray's colour (`sample_weights` [M], ray of each sample `sample_rays` [M])."""
    return (sample_weights >= FOCUS_SAMPLE_WEIGHT) & (ray_alpha[sample_rays] >= OPAQUE_ALPHA)
