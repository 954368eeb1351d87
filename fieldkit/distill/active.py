"""PVD-AL's ray level: a pool of the rays where the student disagreed most with the teacher,
replayed in later batches. The pool is not checkpointed: a resumed run refills it."""
from __future__ import annotations

import torch
from torch import Tensor


class HardRayPool:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.origins = torch.empty(0, 3)  # [P, 3]
        self.directions = torch.empty(0, 3)  # [P, 3]
        self.errors = torch.empty(0)  # [P]

    def __len__(self) -> int:
        return self.errors.shape[0]

    def offer(self, origins: Tensor, directions: Tensor, errors: Tensor) -> None:
        """Keeps the `capacity` rays of highest error among the pool and these new ones."""
        origins, directions = torch.cat([self.origins, origins]), torch.cat([self.directions, directions])
        errors = torch.cat([self.errors, errors.detach()])
        keep = errors.topk(min(self.capacity, errors.shape[0])).indices
        self.origins, self.directions, self.errors = origins[keep], directions[keep], errors[keep]

    def draw(self, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Up to `count` pooled rays, removed from the pool (their new error decides if they return)."""
        count = min(count, len(self))
        chosen = torch.randperm(len(self), generator=generator)[:count]
        kept = torch.ones(len(self), dtype=torch.bool)
        kept[chosen] = False
        drawn = self.origins[chosen], self.directions[chosen]
        self.origins, self.directions, self.errors = self.origins[kept], self.directions[kept], self.errors[kept]
        return drawn
