"""Splats as a volume: their Gaussians summed into a voxel field of log-density and colour.

This is what lets splats teach a field PVD's point stages: at any 3D point the splats give a
density (a sum of Gaussians) and a colour (the density-weighted mean of theirs). No Gaussian
is kept thinner than half a voxel (none falls between voxel centres), and one smaller than the
rasterizer's low-pass footprint in every direction is widened to it, as the rasterizer draws
it; then a splat of opacity o and scales s gets peak density -ln(1 - o) / (s_min sqrt(2 pi)):
a ray crossing it face-on through its centre collects the splat's own opacity, which is how
the rasterizer draws a splat's centre. Colour is the view-independent (degree-0) part; the
renders of the splats carry the rest to the student's pixel stage (docs/convert.md compares
the volume with the splats' own images).
Dimension letters: N splats, V voxel-splat pairs, R voxels per axis.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from fieldkit.fields.activations import LOG_DENSITY_MIN
from fieldkit.fields.encodings import spherical_harmonics
from fieldkit.fields.voxels import VoxelConfig, VoxelField
from fieldkit.gaussians.model import Splats
from fieldkit.render.occupancy import OccupancyGrid
from fieldkit.render.splats import quaternion_to_rotation

BAKE_RESOLUTION = 128
SIGMA_REACH = 3.0  # a Gaussian is summed into the voxels within this many (widened) sigmas
MAX_REACH_VOXELS = 16
"""No splat reaches further than this many voxels from its centre, which bounds each splat's work: a
huge splat (a broken file's, or a far background's) would otherwise cost a pass over the whole grid."""
CHUNK_PAIRS = 2**22
COLOUR_LIMIT = 1e-3  # colours are stored as logits: keep them off 0 and 1
OPACITY_LIMIT = 0.99  # as the rasterizer clamps alpha


@torch.no_grad()
def _splat_volumes(splats: Splats, voxel: float, footprint: float) -> tuple[Tensor, Tensor, Tensor]:
    """Per splat: widened precision matrices [N, 3, 3], peak densities [N] and reach [N]."""
    scales = splats.log_scales.exp()
    # only a splat smaller than the low-pass footprint in every direction is drawn visibly wider
    # than itself, so only such a splat is widened
    below_footprint = scales.amax(dim=-1, keepdim=True) < footprint
    scales = torch.where(below_footprint, scales.clamp(min=math.hypot(voxel / 2, footprint)),
                         scales.clamp(min=voxel / 2))
    opacity = torch.sigmoid(splats.opacity_logits).clamp(max=OPACITY_LIMIT)
    peak = -torch.log1p(-opacity) / (scales.amin(dim=-1) * math.sqrt(2 * math.pi))
    rotation = quaternion_to_rotation(splats.quaternions)
    precision = rotation @ torch.diag_embed(scales.pow(-2)) @ rotation.transpose(-1, -2)
    return precision, peak, SIGMA_REACH * scales.amax(dim=-1)


def voxel_boxes(means: Tensor, reach: Tensor, low: Tensor, voxel_size: Tensor,
                resolution: int) -> tuple[Tensor, Tensor]:
    """Per splat, the first voxel [N, 3] and the extent [N, 3] of the voxels it is summed into:
    those within its reach (at most MAX_REACH_VOXELS) that lie on the grid."""
    reach = torch.minimum(reach[:, None], MAX_REACH_VOXELS * voxel_size)  # [N, 3]
    first = ((means - reach - low) / voxel_size).ceil().clamp(0, resolution).long()
    last = ((means + reach - low) / voxel_size).floor().clamp(-1, resolution - 1).long()
    return first, (last - first + 1).clamp(min=0)


@torch.no_grad()
def bake_splats(splats: Splats, aabb: Tensor, resolution: int = BAKE_RESOLUTION,
                footprint: float = 0.0) -> tuple[Tensor, Tensor]:
    """Density [R, R, R] and density-weighted colour sums [R, R, R, 3] at the voxel centres of a
    grid spanning `aabb` (corners on the box, as grid_sample's align_corners expects), x
    along the last axis. `footprint` is the world-space spread that the renders' low-pass
    filter gives a splat (no splat is drawn thinner than it)."""
    low, high = aabb[0], aabb[1]
    voxel_size = (high - low) / (resolution - 1)  # [3]
    precision, peak, reach = _splat_volumes(splats, float(voxel_size.max()), footprint)
    colours = splats.base_colours()  # [N, 3]
    first, extent = voxel_boxes(splats.means, reach, low, voxel_size, resolution)
    counts = extent.prod(dim=-1)
    density = torch.zeros(resolution**3)
    colour_sums = torch.zeros(resolution**3, 3)
    # whole splats per chunk, so that no splat's pairs are split
    chunk_of = torch.cumsum(counts, 0) // CHUNK_PAIRS
    for chunk in torch.unique(chunk_of).tolist():
        members = (chunk_of == chunk).nonzero()[:, 0]
        owner = torch.repeat_interleave(members, counts[members])  # [V]
        rank = torch.arange(len(owner)) - torch.repeat_interleave(torch.cumsum(counts[members], 0)
                                                                  - counts[members], counts[members])
        size = extent[owner]
        cell = first[owner] + torch.stack([rank // (size[:, 1] * size[:, 2]), (rank // size[:, 2]) % size[:, 1],
                                           rank % size[:, 2]], dim=-1)  # [V, 3] (x, y, z)
        offset = low + cell * voxel_size - splats.means[owner]
        mahalanobis = torch.einsum("vi,vij,vj->v", offset, precision[owner], offset)
        values = peak[owner] * torch.exp(-0.5 * mahalanobis)
        flat = (cell[:, 2] * resolution + cell[:, 1]) * resolution + cell[:, 0]  # z-major: x along the last axis
        density.index_add_(0, flat, values)
        colour_sums.index_add_(0, flat, values[:, None] * colours[owner])
    shape = (resolution, resolution, resolution)
    return density.view(shape), colour_sums.view(*shape, 3)


@torch.no_grad()
def splat_volume_field(splats: Splats, aabb: Tensor, resolution: int = BAKE_RESOLUTION,
                       footprint: float = 0.0) -> VoxelField:
    """A diffuse voxel field holding the splats' log-density and colour."""
    density, colour_sums = bake_splats(splats, aabb, resolution, footprint)
    field = VoxelField(VoxelConfig(resolution=resolution, sh_degree=1, initial_log_density=LOG_DENSITY_MIN), aabb)
    colour = (colour_sums / density[..., None].clamp(min=1e-12)).clamp(COLOUR_LIMIT, 1 - COLOUR_LIMIT)
    constant = float(spherical_harmonics(torch.tensor([[0.0, 0.0, 1.0]]), 1)[0, 0])  # the degree-0 basis value
    field.density.copy_(density.clamp(min=1e-30).log()[None, None])
    field.sh.copy_((torch.logit(colour) / constant).permute(3, 0, 1, 2)[None])
    return field


@torch.no_grad()
def occupancy_from_field(field: VoxelField, resolution: int, step_size: float) -> OccupancyGrid:
    """The occupancy grid of a baked field: each cell keeps the densest voxel inside it."""
    grid = OccupancyGrid(field.aabb, resolution)
    density = field.density.exp()[0, 0]  # [R, R, R], z, y, x
    pooled = F.adaptive_max_pool3d(density[None, None], resolution)
    # voxel centres sit on the cell borders' sides unevenly: widen by a cell so none is lost
    pooled = F.max_pool3d(pooled, 3, stride=1, padding=1)[0, 0]
    grid.density.copy_(pooled.permute(2, 1, 0).reshape(-1))  # the grid indexes cells x-major
    threshold = min(grid.opacity_threshold / step_size, float(grid.density.mean()))
    grid.occupied.copy_(grid.density > threshold)
    return grid
