"""What a mesh extraction and refinement is asked to do (`convert --to mesh`, `refine`)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from fieldkit.defaults import (MESH_FACES, MESH_GRID_RESOLUTION, MESH_REFINE_STEPS, MESH_TEACHER_VIEWS,
                               MESH_TEXTURE_SIZE)
from fieldkit.errors import FieldkitError
from fieldkit.options import check_numbers


@dataclass
class MeshConfig:
    faces: int = MESH_FACES
    """face budget: the extracted surface is decimated to about this many triangles"""
    texture_size: int = MESH_TEXTURE_SIZE
    """texels per side of the UV texture"""
    grid_resolution: int = MESH_GRID_RESOLUTION
    """samples per axis of the log-density grid that marching cubes runs on"""
    threshold: float | None = None
    """log-density iso-level of the surface (default: a low quantile of the log-density at the
    surface the teacher's renders show)"""
    teacher_views: int = MESH_TEACHER_VIEWS
    """teacher renders that the texture is baked from and refinement learns from"""
    refine_steps: int = MESH_REFINE_STEPS
    """refinement steps (0: keep the baked mesh)"""
    views_per_step: int = 2
    """teacher views rendered and compared per refinement step"""
    vertex_lr: float = 5e-4
    """learning rate of the vertex offsets (world units per step, Adam)"""
    texture_lr: float = 0.01
    """learning rate of the texture"""
    texture_levels: int = 3
    """coarse-to-fine texture: residuals at this many resolutions, halving from texture_size; the
    coarsest learns from the start, each finer one from a later point of the run"""
    alpha_weight: float = 1.0
    """weight of the silhouette (alpha) loss against the teacher's opacity"""
    laplacian_weight: float = 0.1
    """weight of the Laplacian smoothness of the vertex offsets (in units of the mean edge length)"""
    normal_weight: float = 0.002
    """weight of normal consistency (1 - cosine between the normals of faces sharing an edge)"""

    def __post_init__(self):
        # the iso-level is a log-density and may be negative: every other number may not
        check_numbers(_WithoutThreshold(self), positive=("faces", "texture_size", "grid_resolution", "teacher_views",
                                                         "views_per_step", "texture_levels"))
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise FieldkitError(f"--threshold must be a finite number, got {self.threshold}")
        if self.grid_resolution < 8:
            raise FieldkitError(f"--grid-resolution must be at least 8, got {self.grid_resolution}")


class _WithoutThreshold:
    """A MeshConfig's fields but the threshold, as `check_numbers` reads them."""

    def __init__(self, config: MeshConfig):
        self.config = config
        self.__dataclass_fields__ = {name: value for name, value in config.__dataclass_fields__.items()
                                     if name != "threshold"}

    def __getattr__(self, name):
        return getattr(self.config, name)
