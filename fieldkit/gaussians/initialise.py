"""Initial splats for training: points (random in the scene bounds, or a point cloud) become
isotropic splats as in 3DGS, each as wide as the RMS distance to its nearest neighbours.
Dimension letters: N points, Q points in a query chunk.
"""
from __future__ import annotations

import torch
from torch import Tensor

from fieldkit.gaussians.model import SH_C0, Splats

NEIGHBOURS = 3
QUERY_CHUNK = 2048  # a [Q, N] distance matrix at a time bounds memory for large point sets


def random_points(aabb: Tensor, count: int, generator: torch.Generator | None = None) -> Tensor:  # -> [N, 3]
    return aabb[0] + torch.rand(count, 3, generator=generator, device=aabb.device) * (aabb[1] - aabb[0])


def neighbour_distances(points: Tensor) -> Tensor:  # [N, 3] -> [N]
    """RMS distance from each point to its NEIGHBOURS nearest other points (3DGS's initial scale)."""
    neighbours = min(NEIGHBOURS, len(points) - 1)
    if neighbours < 1:
        return torch.ones(len(points), device=points.device)
    squared = []
    for chunk in points.split(QUERY_CHUNK):
        distances = torch.cdist(chunk, points).square()  # [Q, N]
        # the nearest "neighbour" of a point is itself, at distance zero
        squared.append(distances.topk(neighbours + 1, dim=-1, largest=False).values[:, 1:].mean(dim=-1))
    return torch.cat(squared).clamp(min=1e-14).sqrt()


def splats_from_points(points: Tensor, colours: Tensor, opacity: float, sh_degree: int,
                       background: Tensor) -> Splats:
    """Isotropic, unrotated splats at `points` [N, 3] with colours [N, 3] in [0, 1]."""
    count = len(points)
    log_scales = neighbour_distances(points).log()[:, None].expand(count, 3)
    quaternions = torch.tensor([1.0, 0.0, 0.0, 0.0], device=points.device).expand(count, 4)
    opacity_logits = torch.full((count,), opacity, device=points.device).logit()
    sh_dc = (colours - 0.5) / SH_C0
    sh_rest = torch.zeros(count, (sh_degree + 1) ** 2 - 1, 3, device=points.device)
    return Splats(points, log_scales, quaternions, opacity_logits, sh_dc, sh_rest, background)
