"""Occupancy grid for empty-space skipping (instant-ngp / nerfacc style).

A coarse grid over the field's bounding box keeps an exponential moving maximum of density.
Cells whose density would make a ray segment of one step less than `opacity_threshold`
opaque are skipped. The grid is updated during training and stored with the asset.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class OccupancyGrid(nn.Module):
    def __init__(self, aabb: Tensor, resolution: int = 64, decay: float = 0.95, opacity_threshold: float = 0.01):
        super().__init__()
        self.resolution, self.decay, self.opacity_threshold = resolution, decay, opacity_threshold
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3).clone())
        self.register_buffer("density", torch.zeros(resolution**3))
        self.register_buffer("occupied", torch.ones(resolution**3, dtype=torch.bool))

    def cell_index(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Flat cell index [N] of each point and whether the point lies inside the box [N]."""
        unit = (points - self.aabb[0]) / (self.aabb[1] - self.aabb[0])
        inside = ((unit >= 0) & (unit < 1)).all(dim=-1)
        cell = (unit.clamp(0, 1 - 1e-6) * self.resolution).long()
        return (cell[:, 0] * self.resolution + cell[:, 1]) * self.resolution + cell[:, 2], inside

    def is_occupied(self, points: Tensor) -> Tensor:  # [N] bool
        index, inside = self.cell_index(points)
        return self.occupied[index] & inside

    def cell_centres(self, index: Tensor, jitter: Tensor | None = None) -> Tensor:  # [M] -> [M, 3]
        size = self.resolution
        cell = torch.stack([index // (size * size), (index // size) % size, index % size], dim=-1).float()
        offset = 0.5 if jitter is None else jitter
        return self.aabb[0] + (cell + offset) / size * (self.aabb[1] - self.aabb[0])

    @torch.no_grad()
    def update(self, log_density_fn, step_size: float, fraction: float = 1.0, generator=None, chunk: int = 65536):
        """Re-evaluates density at jittered points of a random `fraction` of the cells and
        re-thresholds. `log_density_fn` maps world points [M, 3] to log-density [M]."""
        count = self.density.numel()
        device = self.density.device
        if fraction >= 1:
            index = torch.arange(count, device=device)
        else:
            index = torch.randperm(count, generator=generator, device=device)[: int(count * fraction)]
        jitter = torch.rand(index.shape[0], 3, generator=generator, device=device)
        points = self.cell_centres(index, jitter)
        density = torch.cat([log_density_fn(part).exp() for part in points.split(chunk)])
        self.density[index] = torch.maximum(self.density[index] * self.decay, density)
        # instant-ngp's rule: never demand more than the mean density, so a faint field still
        # keeps its occupied cells while it is learning
        threshold = min(self.opacity_threshold / step_size, float(self.density.mean()))
        self.occupied.copy_(self.density > threshold)

    def occupied_fraction(self) -> float:
        return float(self.occupied.float().mean())
