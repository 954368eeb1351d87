"""Inside and outside of a closed mesh on a grid, by crossing counts along grid lines.

Each grid line along an axis is crossed by the surface some number of times below each sample:
a sample is inside where that count is odd. Crossings are found as the rasterizer finds pixels,
each triangle binned into the lines of its box across the axis, all at once. Three axes vote,
so a small hole in a mesh marks one line wrong, not a whole streak.
Dimension letters: R samples per axis, P (triangle, line) candidates, F faces.
"""
from __future__ import annotations

import torch
from torch import Tensor

from fieldkit.render.mesh import CHUNK_PAIRS, _candidate_pixels, screen_barycentrics


@torch.no_grad()
def _odd_crossings(vertices: Tensor, faces: Tensor, aabb: Tensor, resolution: int, axis: int) -> Tensor:
    """Whether each sample [R, R, R] (indexed [x, y, z]) has an odd number of crossings below it along `axis`."""
    across = [other for other in range(3) if other != axis]
    spacing = (aabb[1] - aabb[0]) / (resolution - 1)
    grid = (vertices - aabb[0]) / spacing  # sample units: sample i sits at i
    corners = grid[faces]  # [F, 3, 3]
    plane = corners[..., across] + 0.5  # lines through sample (i, j) pass the "pixel" centre (i + 0.5, j + 0.5)
    first = (plane.amin(dim=1) - 0.5).ceil().clamp(min=0).long()
    last = torch.minimum((plane.amax(dim=1) - 0.5).floor().long(), torch.tensor(resolution - 1))
    extent = (last - first + 1).clamp(min=0)
    counts = extent.prod(dim=-1)
    histogram = torch.zeros(resolution * resolution * (resolution + 1))
    chunk_of = torch.cumsum(counts, 0) // CHUNK_PAIRS
    for chunk in range(int(chunk_of[-1]) + 1 if counts.numel() else 0):
        members = ((chunk_of == chunk) & (counts > 0)).nonzero()[:, 0]
        if members.numel() == 0:
            continue
        owner, line = _candidate_pixels(first, extent, counts, members)
        weights = screen_barycentrics(plane[owner], line.float() + 0.5)
        inside = (weights >= 0).all(dim=-1)
        owner, line, weights = owner[inside], line[inside], weights[inside]
        height = (weights * corners[owner][..., axis]).sum(dim=-1)  # where along the line it crosses
        step = height.ceil().clamp(0, resolution).long()  # the first sample above the crossing
        histogram.index_add_(0, (line[:, 0] * resolution + line[:, 1]) * (resolution + 1) + step,
                             torch.ones_like(height))
    below = histogram.view(resolution, resolution, resolution + 1).cumsum(dim=-1)[..., :resolution]
    odd = below.remainder(2) == 1  # [first across, second across, along]
    order = [across[0], across[1], axis]
    return odd.permute(*[order.index(dimension) for dimension in range(3)])


def inside_grid(vertices: Tensor, faces: Tensor, aabb: Tensor, resolution: int) -> Tensor:
    """Whether each sample of the corners-inclusive grid over `aabb` [R, R, R] (indexed [x, y, z])
    is inside the mesh: the majority of three axes' crossing parities."""
    votes = sum(_odd_crossings(vertices, faces, aabb, resolution, axis).int() for axis in range(3))
    return votes >= 2
