"""A mesh as a conversion teacher, taught the way splats are (see `splat_teacher`).

A converter asks a teacher for images, and for a volume that places its samples. A mesh answers
the first with its own renders and the second with its inside and outside: a voxel field dense
inside the surface and empty outside, so the student's samples concentrate where the surface is,
and the pixels alone, never that blocky volume, teach the student's colour and fine shape.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from fieldkit.distill.splat_teacher import BakedTeacher
from fieldkit.fields.activations import LOG_DENSITY_MIN
from fieldkit.fields.encodings import spherical_harmonics
from fieldkit.fields.voxels import VoxelConfig, VoxelField
from fieldkit.mesh import Mesh
from fieldkit.mesh.volume import inside_grid

VOLUME_RESOLUTION = 128
INSIDE_OPTICAL_DEPTH = 4.0
"""Optical depth of one voxel inside the mesh: a ray entering it is opaque within a voxel or two."""
COLOUR_LIMIT = 1e-3  # colours are stored as logits: keep them off 0 and 1


@torch.no_grad()
def mesh_volume_field(mesh: Mesh, aabb: Tensor, resolution: int = VOLUME_RESOLUTION) -> VoxelField:
    """A diffuse voxel field: dense inside the mesh, empty outside, the texture's mean colour."""
    inside = inside_grid(mesh.vertices, mesh.faces, aabb, resolution)  # [x, y, z]
    voxel = float((aabb[1] - aabb[0]).max()) / (resolution - 1)
    log_density = torch.where(inside, math.log(INSIDE_OPTICAL_DEPTH / voxel), LOG_DENSITY_MIN)
    field = VoxelField(VoxelConfig(resolution=resolution, sh_degree=1, initial_log_density=LOG_DENSITY_MIN), aabb)
    colour = mesh.texture.reshape(-1, 3).mean(dim=0).clamp(COLOUR_LIMIT, 1 - COLOUR_LIMIT)
    constant = float(spherical_harmonics(torch.tensor([[0.0, 0.0, 1.0]]), 1)[0, 0])  # the degree-0 basis value
    field.density.copy_(log_density.permute(2, 1, 0)[None, None])  # the field stores [z, y, x]
    field.sh.copy_((torch.logit(colour) / constant).view(1, 3, 1, 1, 1).expand_as(field.sh))
    return field


class MeshTeacher(BakedTeacher):
    """The mesh's inside as the field, and the mesh itself for `render`; converters treat it as
    they treat splats (pixels from renders, samples placed by the volume)."""

    def __init__(self, mesh: Mesh):
        super().__init__(mesh, mesh_volume_field(mesh, mesh.aabb.clone()))
