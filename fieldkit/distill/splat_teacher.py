"""Splats as a conversion teacher.

The converter asks a teacher for density and colour at points (the point stages), for an
occupancy grid to place samples with, and for images. Splats answer the first two through
their baked volume (fieldkit.gaussians.density) and the last with their own rasterizer, so
students match the splats' images, not the volume's approximation of them.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from fieldkit.cameras import Cameras
from fieldkit.data import load_dataset
from fieldkit.errors import FieldkitError
from fieldkit.gaussians import Splats
from fieldkit.gaussians.density import occupancy_from_field, splat_volume_field
from fieldkit.fields.voxels import VoxelField
from fieldkit.radiance import RadianceField
from fieldkit.render.splats import LOW_PASS
from fieldkit.render.volume import RenderOutput
from fieldkit.defaults import PROFILES

OCCUPANCY_RESOLUTION = 64
BOUNDS_MARGIN = 0.05  # without a dataset, the splat centres' box grows by this fraction per side


def splat_scene(splats: Splats) -> tuple[Tensor, float]:
    """The box [2, 3] to bake the splats in, and the world-space spread the rasterizer's
    low-pass filter gives them at the distance and focal length of their training cameras.

    Both come from the splats' dataset when it can be read; else the box is around the splat
    centres and the spread is left out (the bake then widens by half a voxel only).
    """
    source = splats.dataset.get("source")
    if source:
        try:
            dataset = load_dataset(source, "train")
        except (FieldkitError, OSError):
            dataset = None
        if dataset is not None:
            cameras = dataset.cameras
            distance = (cameras.positions - dataset.aabb.mean(dim=0)).norm(dim=-1)
            return dataset.aabb, float((distance / cameras.fx).median()) * math.sqrt(LOW_PASS)
    low, high = splats.aabb
    margin = BOUNDS_MARGIN * (high - low)
    return torch.stack([low - margin, high + margin]), 0.0


class BakedTeacher(RadianceField):
    """A teacher that is not a field: a voxel field baked from it answers the point stages and
    places the samples, and the source itself renders the images its students match."""

    def __init__(self, source, field: VoxelField):
        step_size = float((field.aabb[1] - field.aabb[0]).norm()) / PROFILES["voxels"].samples_per_diagonal
        super().__init__(field, occupancy_from_field(field, OCCUPANCY_RESOLUTION, step_size), step_size,
                         source.background)
        self.source = source
        self.metrics, self.dataset = dict(source.metrics), dict(source.dataset)

    @property
    def architecture(self) -> str:
        return self.source.architecture

    @torch.no_grad()
    def render(self, cameras: Cameras, background: Tensor | None = None, chunk: int = 0) -> RenderOutput:
        return self.source.render(cameras, background)


class SplatTeacher(BakedTeacher):
    """The splats' baked volume as the field, and the splats themselves for `render`."""

    def __init__(self, splats: Splats):
        aabb, footprint = splat_scene(splats)
        super().__init__(splats, splat_volume_field(splats, aabb, footprint=footprint))
