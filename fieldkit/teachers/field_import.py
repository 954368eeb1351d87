"""A field read from another tool's file, made renderable the way fieldkit's own are: an
occupancy grid measured from its density, and a step size for its bounds."""
from __future__ import annotations

import torch

from fieldkit.defaults import PROFILES
from fieldkit.fields.base import Field
from fieldkit.radiance import RadianceField
from fieldkit.render.occupancy import OccupancyGrid

OCCUPANCY_RESOLUTION = 64
OCCUPANCY_PASSES = 3
"""jittered density samples per occupancy cell: one can miss a thin surface inside a cell"""


@torch.no_grad()
def imported_model(field: Field, background, metrics: dict, dataset: dict | None = None) -> RadianceField:
    field = field.requires_grad_(False).eval()
    aabb = field.aabb
    # imported fields are hash grids: march them as finely as fieldkit's own
    step_size = float((aabb[1] - aabb[0]).norm()) / PROFILES["hashgrid"].samples_per_diagonal
    grid = OccupancyGrid(aabb, OCCUPANCY_RESOLUTION)
    generator = torch.Generator().manual_seed(0)
    for _ in range(OCCUPANCY_PASSES):
        grid.update(field.log_density, step_size, generator=generator)
    model = RadianceField(field, grid, step_size, background)
    model.metrics, model.dataset = metrics, dataset or {}
    return model.eval()
