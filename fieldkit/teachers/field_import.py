"""A field read from another tool's file, made renderable the way fieldkit's own are: an
occupancy grid measured from its density, and a step size for its bounds."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fieldkit.defaults import PROFILES
from fieldkit.fields.base import Field
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid

OCCUPANCY_RESOLUTION = 64


@torch.no_grad()
def measured_occupancy(field: Field, step_size: float) -> OccupancyGrid:
    """The grid of one jittered density sample per cell, each cell then taking its neighbours'
    maximum: one sample can miss a thin surface in its cell, not in all 27 around it."""
    grid = OccupancyGrid(field.aabb, OCCUPANCY_RESOLUTION)
    grid.update(field.log_density, step_size, generator=torch.Generator().manual_seed(0))
    cells = grid.density.view(1, 1, *[OCCUPANCY_RESOLUTION] * 3)
    grid.density.copy_(F.max_pool3d(cells, 3, stride=1, padding=1).reshape(-1))
    # OccupancyGrid.update's rule, on the widened densities
    grid.occupied.copy_(grid.density > min(grid.opacity_threshold / step_size, float(grid.density.mean())))
    return grid


@torch.no_grad()
def imported_model(field: Field, background, metrics: dict, dataset: dict | None = None) -> RadianceField:
    field = field.requires_grad_(False).eval()
    aabb = field.aabb
    # imported fields are hash grids: march them as finely as fieldkit's own
    step_size = float((aabb[1] - aabb[0]).norm()) / PROFILES["hashgrid"].samples_per_diagonal
    model = RadianceField(field, measured_occupancy(field, step_size), step_size, background)
    model.metrics, model.dataset = metrics, dataset or {}
    return model.eval()
