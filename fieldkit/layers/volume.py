"""The volume other layers fill, as a soft occupancy grid, for the separation term that keeps a
new layer's splats out of it.

Splats from score distillation sit on an object's surface, so their density leaves the inside of
a cube empty: a layer could hide in there. The visual hull fills it: a point is inside when every
view of a ring sees it within the object's silhouette (the least alpha over the views where it
projects). It is built once from the frozen layers, then sampled trilinearly (differentiably in
the sampled points) at every step.
Dimension letters: N points, C cameras, G grid cells per side.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fieldkit.cameras import Cameras, orbit_cameras, turntable_azimuths
from fieldkit.gaussians.model import Splats
from fieldkit.layers.frames import frame_of, framed
from fieldkit.scenes.objects import CAMERA_DISTANCE

GRID = 48
RESOLUTION = 64
ELEVATIONS = (-60.0, -20.0, 20.0, 60.0, 90.0)
AZIMUTHS = 8
MARGIN = 0.15
"""The grid spans the object's box grown by this fraction of its size on every side."""


@dataclass
class Occupancy:
    grid: Tensor  # [G, G, G] in [0, 1], indexed x, y, z
    low: Tensor  # [3] the grid's corner
    high: Tensor  # [3]

    def __call__(self, points: Tensor) -> Tensor:  # [N, 3] -> [N], 0 outside the grid
        unit = (points - self.low.to(points)) / (self.high - self.low).to(points) * 2 - 1  # [-1, 1]
        # grid_sample reads (x, y, z) as (W, H, D): the grid is stored [D=z, H=y, W=x]
        volume = self.grid.to(points).permute(2, 1, 0)[None, None]
        sampled = F.grid_sample(volume, unit.view(1, -1, 1, 1, 3), align_corners=True, padding_mode="zeros")
        return sampled.view(-1)


def _ring(resolution: int) -> Cameras:
    azimuth = turntable_azimuths(AZIMUTHS).repeat(len(ELEVATIONS))
    elevation = torch.tensor(ELEVATIONS).repeat_interleave(AZIMUTHS)
    return orbit_cameras(azimuth, elevation, CAMERA_DISTANCE, resolution)


def _project(points: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:  # [N, 3] -> pixel uv [C, N, 2], in front [C, N]
    w2c = torch.linalg.inv(cameras.c2w)  # [C, 4, 4]
    local = torch.einsum("cij,nj->cni", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]  # [C, N, 3], camera looks down -z
    depth = -local[..., 2]
    u = cameras.fx[:, None] * local[..., 0] / depth.clamp(min=1e-6) + cameras.cx[:, None]
    v = -cameras.fy[:, None] * local[..., 1] / depth.clamp(min=1e-6) + cameras.cy[:, None]
    return torch.stack([u, v], dim=-1), depth > 0


@torch.no_grad()
def visual_hull(splats: Splats, grid: int = GRID) -> Occupancy:
    """The soft visual hull of `splats` on a grid around them."""
    frame = frame_of(splats)
    cameras = framed(_ring(RESOLUTION), frame)
    alpha = splats.render(cameras, background=torch.zeros(3)).alpha  # [C, H, W]
    half = frame.size * (0.5 + MARGIN)
    low, high = frame.centre - half, frame.centre + half
    axis = [torch.linspace(float(low[index]), float(high[index]), grid) for index in range(3)]
    points = torch.stack(torch.meshgrid(*axis, indexing="ij"), dim=-1).view(-1, 3)  # [G^3, 3]
    uv, in_front = _project(points, cameras)
    unit = uv / torch.tensor([RESOLUTION, RESOLUTION]) * 2 - 1  # pixel corners at -1 and 1
    seen = F.grid_sample(alpha[:, None], unit[:, :, None, :], align_corners=False, padding_mode="zeros")
    seen = torch.where(in_front, seen.view(len(cameras), -1), torch.zeros(()))
    return Occupancy(seen.amin(dim=0).view(grid, grid, grid), low, high)
