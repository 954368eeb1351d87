"""A voxel student's first values, read off the teacher at the student's grid vertices, as
PlenOctrees converts a NeRF: log-density sampled, and the view-dependent colour projected onto
the grid's spherical harmonics. Distillation then starts near the teacher instead of from a
blank grid, and only has to correct what point sampling misses.
Dimension letters: V vertices near occupied space, D directions, B SH basis functions.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from fieldkit.fields.activations import LOG_DENSITY_MIN
from fieldkit.fields.base import GeometryVectorField
from fieldkit.fields.encodings import spherical_harmonics
from fieldkit.fields.voxels import VoxelField
from fieldkit.radiance import RadianceField

# enough directions to fit a degree-3 basis (16 functions) by least squares
PROJECTION_DIRECTIONS = 32
# colours are fitted as logits (the grid's sigmoid undone), clipped where a logit explodes
COLOUR_CLIP = 1e-3


def fibonacci_directions(count: int) -> Tensor:
    """[count, 3] unit directions spread evenly over the sphere."""
    index = torch.arange(count, dtype=torch.float64) + 0.5
    z = 1 - 2 * index / count
    radius = (1 - z * z).sqrt()
    angle = math.pi * (3 - math.sqrt(5)) * index
    return torch.stack([radius * angle.cos(), radius * angle.sin(), z], dim=-1).float()


def _vertices(field: VoxelField) -> Tensor:
    """World positions [S^3, 3] of the grid's vertices, in the grid's own (z, y, x) storage order."""
    axis = torch.linspace(0.0, 1.0, field.config.resolution)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    unit = torch.stack([x, y, z], dim=-1).reshape(-1, 3)
    return field.aabb[0] + unit * (field.aabb[1] - field.aabb[0])


def _near_occupied(teacher: RadianceField, points: Tensor, spacing: float) -> Tensor:
    """[N] points within `spacing` (a fraction of the box) of an occupied cell of the teacher's
    grid: the vertices that interpolation reads for any sample a render takes."""
    size = teacher.grid.resolution
    reach = math.ceil(spacing * size)  # in cells
    occupied = teacher.grid.occupied.view(1, 1, size, size, size).float()
    dilated = F.max_pool3d(occupied, kernel_size=2 * reach + 1, stride=1, padding=reach).flatten() > 0
    index, _ = teacher.grid.cell_index(points)  # a vertex on the box's upper faces counts as in its last cell
    return dilated[index]


def _teacher_samples(teacher: RadianceField, points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
    """Teacher log-density [V] and rgb [V, D, 3] at the points, seen along every direction."""
    field = teacher.field
    if isinstance(field, GeometryVectorField):  # the geometry does not depend on the direction
        geometry = field.geometry_rows(points)
        rgb = torch.stack([field.output_from_geometry(geometry, direction.expand(len(points), 3)).rgb
                           for direction in directions], dim=1)
        return geometry[:, 0], rgb
    outputs = [field(points, direction.expand(len(points), 3)) for direction in directions]
    return outputs[0].log_density, torch.stack([output.rgb for output in outputs], dim=1)


@torch.no_grad()
def project_onto_voxels(teacher: RadianceField, student: VoxelField, chunk: int = 16384) -> int:
    """Sets the student's grid from the teacher (see the module's docstring) -> vertices set.

    Vertices away from occupied space are made empty and grey: renders never read them.
    """
    points = _vertices(student)
    near = _near_occupied(teacher, points, 1 / (student.config.resolution - 1))
    degree = student.config.sh_degree
    directions = fibonacci_directions(max(PROJECTION_DIRECTIONS, 2 * degree**2))
    basis = spherical_harmonics(directions, degree)  # [D, B]
    to_coefficients = torch.linalg.pinv(basis)  # [B, D]
    log_density = torch.full((points.shape[0],), LOG_DENSITY_MIN)
    coefficients = torch.zeros(points.shape[0], 3, degree**2)
    index = near.nonzero()[:, 0]
    for part in index.split(chunk):
        sampled_density, rgb = _teacher_samples(teacher, points[part], directions)
        logits = torch.logit(rgb.clamp(COLOUR_CLIP, 1 - COLOUR_CLIP))  # [V, D, 3]
        log_density[part] = sampled_density
        coefficients[part] = torch.einsum("bd,vdc->vcb", to_coefficients, logits)
    size = student.config.resolution
    student.density.copy_(log_density.view(1, 1, size, size, size))
    student.sh.copy_(coefficients.reshape(size, size, size, -1).permute(3, 0, 1, 2)[None])
    return int(index.shape[0])
