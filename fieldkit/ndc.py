"""Normalised device coordinates (NDC) for forward-facing captures, as original NeRF trains LLFF
scenes: in the frame of the capture's average camera, the view from a near plane to infinity
becomes the box [-1, 1]^3, and even steps along a ray there are even steps in disparity.

fieldkit renders forward-facing scenes in NDC rather than in a contracted space (mip-NeRF 360,
nerfstudio) because NDC maps straight rays to straight rays: the occupancy grid, the native
ray-marching kernels and the constant-step compositing work unchanged on the mapped rays, where
a contraction bends them and needs its own sampler.
Dimension letters: C cameras, R rays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from fieldkit.asset_file import finite_number, header_error, header_section, is_number
from fieldkit.cameras import Cameras
from fieldkit.errors import FieldkitError

SPACES = ("auto", "box", "ndc")  # what --space accepts
NEAR_FRACTION = 0.75
"""The near plane sits at this fraction of the capture's nearest bound (original NeRF's bd_factor),
so no camera's view of the scene starts in front of it."""
FORWARD_FACING_AGREEMENT = 0.9
"""Cameras whose unit viewing directions average to at least this length all look one way: a
forward-facing capture (an orbit's directions cancel out, a hemisphere's keep only their downward part)."""
BOX_MARGIN = 0.02  # the NDC box grows by this fraction of its width, so border pixels stay inside


def is_forward_facing(c2w: Tensor) -> bool:
    """Whether cameras [C, 4, 4] (OpenGL axes: they look down -z) all look roughly one way."""
    forwards = -c2w[:, :3, 2]
    forwards = forwards / forwards.norm(dim=-1, keepdim=True)
    return float(forwards.mean(dim=0).norm()) >= FORWARD_FACING_AGREEMENT


def average_pose(c2w: Tensor) -> Tensor:  # [C, 4, 4] -> [4, 4]
    """The capture's average camera (original NeRF's poses_avg): mean position, mean viewing axis,
    mean up made perpendicular to it."""
    backward = torch.nn.functional.normalize(c2w[:, :3, 2].mean(dim=0), dim=0)
    right = torch.nn.functional.normalize(torch.cross(c2w[:, :3, 1].mean(dim=0), backward, dim=0), dim=0)
    pose = torch.eye(4, dtype=c2w.dtype, device=c2w.device)
    pose[:3, 0], pose[:3, 1], pose[:3, 2] = right, torch.cross(backward, right, dim=0), backward
    pose[:3, 3] = c2w[:, :3, 3].mean(dim=0)
    return pose


@dataclass
class NdcSpace:
    """Where a forward-facing field lives: world rays mapped into the NDC of one reference camera."""

    world_to_camera: Tensor  # [4, 4] into the reference camera's frame (OpenGL axes)
    scale: Tensor  # [2] 2 fx / width and 2 fy / height of the reference camera
    near: float  # the near plane's distance in front of the reference camera (world units)

    kind = "ndc"

    @classmethod
    def for_capture(cls, cameras: Cameras, nearest_bound: float) -> "NdcSpace":
        """The NDC of a forward-facing capture's average camera, with the first camera's field of
        view (LLFF cameras share one) and the near plane in front of every camera's near bound."""
        reference = average_pose(cameras.c2w.double())
        scale = torch.stack([2 * cameras.fx[0] / cameras.width[0], 2 * cameras.fy[0] / cameras.height[0]])
        return cls(torch.linalg.inv(reference).float(), scale.float(), NEAR_FRACTION * nearest_bound)

    def rays(self, origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """World rays [R, 3] as NDC origins (on the near plane) and unit NDC directions [R, 3]
        (original NeRF's ndc_rays). A ray that does not look ahead of the reference camera is
        turned to graze it: NDC has no room behind the camera."""
        matrix, scale = self.world_to_camera.to(origins), self.scale.to(origins)  # follow the rays' device
        rotation, translation = matrix[:3, :3], matrix[:3, 3]
        origins, directions = origins @ rotation.T + translation, directions @ rotation.T
        dz = directions[:, 2].clamp(max=-1e-6)
        origins = origins + (-(self.near + origins[:, 2]) / dz)[:, None] * directions
        oz = origins[:, 2]
        xy_over_z = origins[:, :2] / oz[:, None]  # [R, 2]
        ndc_origins = torch.cat([-scale * xy_over_z, (1 + 2 * self.near / oz)[:, None]], dim=-1)
        ndc_directions = torch.cat([-scale * (directions[:, :2] / dz[:, None] - xy_over_z),
                                    (-2 * self.near / oz)[:, None]], dim=-1)
        return ndc_origins, ndc_directions / ndc_directions.norm(dim=-1, keepdim=True)

    def bounds(self, cameras: Cameras) -> Tensor:  # [2, 3]
        """The NDC box that holds every camera's view from the near plane to infinity: z spans
        [-1, 1], x and y the image corners of every camera at both ends, with a margin."""
        corners_x = torch.tensor([0.0, 1.0, 0.0, 1.0]) * cameras.width[:, None].cpu()  # [C, 4]
        corners_y = torch.tensor([0.0, 0.0, 1.0, 1.0]) * cameras.height[:, None].cpu()
        index = torch.arange(len(cameras))[:, None].expand(-1, 4)
        origins, directions = cameras.to("cpu").generate_rays(index.reshape(-1), corners_x.reshape(-1),
                                                              corners_y.reshape(-1))
        ndc_origins, ndc_directions = self.rays(origins, directions)
        # the point at infinity: where the unit direction reaches z = 1
        far = ndc_origins + ndc_directions * ((1 - ndc_origins[:, 2:]) / ndc_directions[:, 2:])
        points = torch.cat([ndc_origins, far])
        low, high = points.amin(dim=0), points.amax(dim=0)
        margin = BOX_MARGIN * (high - low)
        low, high = low - margin, high + margin
        low[2], high[2] = -1.0, 1.0
        return torch.stack([low, high]).to(cameras.device)

    def header(self) -> dict:
        return {"kind": self.kind, "world_to_camera": self.world_to_camera.tolist(), "scale": self.scale.tolist(),
                "near": self.near}

    @classmethod
    def from_header(cls, section: dict, path) -> "NdcSpace":
        matrix = section.get("world_to_camera")
        if not (isinstance(matrix, list) and len(matrix) == 4 and all(
                isinstance(row, list) and len(row) == 4 and all(is_number(x) and math.isfinite(x) for x in row)
                for row in matrix)):
            raise header_error(path, "space.world_to_camera", "a 4x4 matrix of finite numbers", matrix)
        scale = section.get("scale")
        if not (isinstance(scale, list) and len(scale) == 2 and
                all(is_number(x) and math.isfinite(x) and x > 0 for x in scale)):
            raise header_error(path, "space.scale", "two positive numbers", scale)
        near = finite_number(section, "near", path, "space.", low=0.0, low_open=True)
        return cls(torch.tensor(matrix, dtype=torch.float32), torch.tensor(scale, dtype=torch.float32), near)


def space_from_header(header: dict, path) -> NdcSpace | None:
    """The space an asset's field lives in: None (world coordinates in its box) for an asset
    without a 'space' section, one written before spaces existed included."""
    if "space" not in header:
        return None
    section = header_section(header, "space", path)
    if section.get("kind") != NdcSpace.kind:
        raise header_error(path, "space.kind", "'ndc' (a box field has no 'space')", section.get("kind"))
    return NdcSpace.from_header(section, path)


def training_space(requested: str, cameras: Cameras, nearest_bound: float | None) -> NdcSpace | None:
    """The space a field trains in (None: world coordinates in the scene's box). `auto` picks NDC
    for a forward-facing capture with near bounds (LLFF) and the box otherwise; NDC asked of a
    capture it cannot describe is refused."""
    forward_facing = nearest_bound is not None and is_forward_facing(cameras.c2w)
    if requested == "ndc" and nearest_bound is None:
        raise FieldkitError("--space ndc needs the near bounds of an LLFF capture (poses_bounds.npy); this "
                            "dataset has none (use --space box)")
    if requested == "ndc" and not forward_facing:
        raise FieldkitError("--space ndc needs a forward-facing capture, but these cameras look around the "
                            "scene (a 360-degree capture) and NDC holds one viewing direction (use --space box)")
    if requested == "box" or not forward_facing:
        return None
    return NdcSpace.for_capture(cameras, nearest_bound)
