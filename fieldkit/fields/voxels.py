"""Plenoxels-style voxel grid (Fridovich-Keil et al. 2022): a dense grid holding log-density
and spherical-harmonic colour coefficients, trilinearly interpolated, with total-variation
regularisation. It has no geometry vector: its stages are its own SH coefficients."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fieldkit.devices import draws_on
from fieldkit.fields.activations import clamp_log_density
from fieldkit.fields.base import Field, FieldOutput
from fieldkit.fields.encodings import spherical_harmonics


@dataclass
class VoxelConfig:
    resolution: int = 96
    """grid resolution per axis"""
    sh_degree: int = 2
    """spherical-harmonic bands of colour (1 = diffuse only, 3 = Plenoxels)"""
    initial_log_density: float = -1.0
    """log-density everywhere at the start"""
    learning_rate: float = 1e-1
    """Adam learning rate"""
    tv_weight: float = 1e-4
    """total-variation weight on density and colour"""
    tv_voxels: int = 65536
    """voxels sampled per step for the total-variation term"""


# the 8 corners of a cell as (dx, dy, dz) offsets
_CORNERS = torch.tensor([[dx, dy, dz] for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)])


def trilinear_corners(unit_points: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
    """[N, 8] flat indices of the grid vertices around each point in [0, 1)^3 (x fastest, as
    the grid stores it) and [N, 8] their trilinear weights. A weighted embedding_bag over them
    interpolates several times faster than grid_sample on a CPU."""
    position = unit_points * (resolution - 1)
    low = position.floor().clamp(0, resolution - 2)
    fraction = position - low
    offsets = _CORNERS.to(unit_points.device)
    corners = low.long()[:, None, :] + offsets  # [N, 8, 3]
    index = (corners[..., 2] * resolution + corners[..., 1]) * resolution + corners[..., 0]
    weights = torch.where(offsets.bool(), fraction[:, None, :], 1 - fraction[:, None, :]).prod(dim=-1)
    return index, weights


PRESETS = {"cpu": VoxelConfig(), "gpu": VoxelConfig(resolution=256, sh_degree=3)}


class VoxelField(Field):
    architecture = "voxels"
    presets = PRESETS  # the config each preset names (cpu, gpu)
    config_class = VoxelConfig
    stage_names = ("sh",)

    def __init__(self, config: VoxelConfig, aabb: Tensor):
        super().__init__(config, aabb)
        size, coefficients = config.resolution, 3 * config.sh_degree**2
        self.density = nn.Parameter(torch.full((1, 1, size, size, size), config.initial_log_density))
        self.sh = nn.Parameter(torch.zeros(1, coefficients, size, size, size))
        self._sh_rows_cache: tuple[tuple[int, int], Tensor] | None = None

    def _sample(self, grid: Tensor, unit_points: Tensor) -> Tensor:  # -> [N, channels]
        # grid_sample indexes (x, y, z) as (W, H, D): store x along the last axis
        coordinates = (unit_points * 2 - 1).reshape(1, -1, 1, 1, 3)
        return F.grid_sample(grid, coordinates, mode="bilinear", align_corners=True).reshape(grid.shape[1], -1).T

    def _sh_rows(self) -> Tensor:  # [R^3, 3 * B], one row of coefficients per vertex
        """The coefficients vertex-major, rebuilt only when they changed: the transposing copy
        costs more than a render of a few thousand rays, and a teacher's never change."""
        key = (self.sh._version, self.sh.data_ptr())
        if self._sh_rows_cache is None or self._sh_rows_cache[0] != key:
            rows = self.sh.detach()[0].permute(1, 2, 3, 0).reshape(-1, self.sh.shape[1]).contiguous()
            self._sh_rows_cache = (key, rows)
        return self._sh_rows_cache[1]

    def _log_density_at(self, index: Tensor, weights: Tensor) -> Tensor:
        # the density grid has one channel, so its flat view is already vertex-major
        log_density = F.embedding_bag(index, self.density.view(-1, 1), per_sample_weights=weights, mode="sum")
        return clamp_log_density(log_density[:, 0])

    def _log_density_normalized(self, unit_points: Tensor) -> Tensor:
        return self._log_density_at(*trilinear_corners(unit_points, self.config.resolution))

    def _forward_normalized(self, unit_points: Tensor, directions: Tensor) -> FieldOutput:
        index, weights = trilinear_corners(unit_points, self.config.resolution)
        log_density = self._log_density_at(index, weights)
        if torch.is_grad_enabled() and self.sh.requires_grad:
            # a gradient into vertex-major rows would need the transposing copy every step
            coefficients = self._sample(self.sh, unit_points)  # [N, 3 * B]
        else:
            coefficients = F.embedding_bag(index, self._sh_rows(), per_sample_weights=weights, mode="sum")
        basis = spherical_harmonics(directions, self.config.sh_degree)  # [N, B]
        rgb = torch.sigmoid((coefficients.view(-1, 3, basis.shape[1]) * basis[:, None, :]).sum(-1))
        return FieldOutput(log_density, rgb, {"sh": coefficients})

    def regularization(self, generator: torch.Generator | None = None) -> Tensor:
        """Total variation on a random subset of voxels (Plenoxels does the same for speed)."""
        size = self.config.resolution
        index = torch.randint(0, size - 1, (3, self.config.tv_voxels), generator=generator,
                              device=draws_on(generator)).to(self.density.device)
        total = self.density.new_zeros(())
        for grid in (self.density, self.sh):
            values = grid[0][:, index[0], index[1], index[2]]
            for axis in range(3):
                shifted = index.clone()
                shifted[axis] += 1
                neighbours = grid[0][:, shifted[0], shifted[1], shifted[2]]
                total = total + (neighbours - values).square().mean()
        return self.config.tv_weight * total
