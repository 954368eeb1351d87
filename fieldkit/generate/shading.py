"""DreamFusion's shading augmentations, applied to renders of any representation.

A representation renders premultiplied colour, alpha and depth; here they are lit and composited
on a background. Normals come from the rendered depth (the cross product of its screen-space
derivatives), so fields and splats share one lambertian pass at the cost of a few image ops.
A textureless pass replaces the albedo by white, so that geometry alone has to explain the
image (DreamFusion's remedy for shapes painted onto flat geometry).
Dimension letters: B views, H, W image size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fieldkit.cameras import Cameras

AMBIENT = 0.5
"""The built-in prior's training scenes use ambient 0.5 too."""
LIGHT_JITTER = 0.5
"""Lights sit near the camera, off by up to this many units (DreamFusion samples them around it)."""


@dataclass
class Renders:
    colour: Tensor  # [B, H, W, 3] premultiplied by alpha
    alpha: Tensor  # [B, H, W]
    depth: Tensor  # [B, H, W] distance along each ray


def world_points(depth: Tensor, cameras: Cameras) -> Tensor:  # [B, H, W] -> [B, H, W, 3]
    points = []
    for index in range(len(cameras)):
        origins, directions = cameras.image_rays(index)  # [H*W, 3]
        points.append(origins + depth[index].reshape(-1, 1) * directions)
    return torch.stack(points).view(*depth.shape, 3)


def depth_normals(depth: Tensor, cameras: Cameras) -> Tensor:  # [B, H, W] -> unit normals [B, H, W, 3]
    points = world_points(depth, cameras)
    along_x = F.pad((points[:, :, 2:] - points[:, :, :-2]).permute(0, 3, 1, 2), (1, 1, 0, 0), mode="replicate")
    along_y = F.pad((points[:, 2:] - points[:, :-2]).permute(0, 3, 1, 2), (0, 0, 1, 1), mode="replicate")
    normals = F.normalize(torch.cross(along_x, along_y, dim=1), dim=1).permute(0, 2, 3, 1)
    # image y grows downwards, so x cross y points away from the camera: turn normals to face it
    towards_camera = cameras.positions[:, None, None, :] - points
    flip = torch.where((normals * towards_camera).sum(dim=-1, keepdim=True) < 0, -1.0, 1.0)
    return normals * flip


def lambertian(renders: Renders, cameras: Cameras, textureless: bool, generator: torch.Generator) -> Tensor:
    """Premultiplied colour [B, H, W, 3] lit by a point light near each camera."""
    jitter = (torch.rand(len(cameras), 3, generator=generator, device=generator.device) * 2 - 1) * LIGHT_JITTER
    lights = cameras.positions + jitter  # [B, 3]
    points = world_points(renders.depth.detach(), cameras)
    to_light = F.normalize(lights[:, None, None, :] - points, dim=-1)
    normals = depth_normals(renders.depth, cameras)
    shade = AMBIENT + (1 - AMBIENT) * (normals * to_light).sum(dim=-1, keepdim=True).clamp(min=0)
    albedo = renders.alpha[..., None].expand_as(renders.colour) if textureless else renders.colour
    return albedo * shade


def shaded_images(renders: Renders, cameras: Cameras, background: Tensor, lambertian_probability: float,
                  textureless_probability: float, generator: torch.Generator) -> Tensor:
    """Images [B, 3, H, W] for the prior: one shading pass drawn for the batch, on `background` [B, 3]."""
    draw = float(torch.rand((), generator=generator, device=generator.device))
    colour = renders.colour
    if draw < textureless_probability:
        colour = lambertian(renders, cameras, True, generator)
    elif draw < textureless_probability + lambertian_probability:
        colour = lambertian(renders, cameras, False, generator)
    images = colour + (1 - renders.alpha[..., None]) * background[:, None, None, :]
    return images.permute(0, 3, 1, 2)
