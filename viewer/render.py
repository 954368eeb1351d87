"""Renderables drawn for the browser (fields, and anything else but splats and meshes): each from
one camera through `render(cameras, background)` alone, composited by depth, and shown as rgb,
depth or alpha. Dimension letters: K renderables, H rows, W columns."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from fieldkit.cameras import Cameras
from fieldkit.renderable import Renderable

from .cameras import ray_to_z_depth

CHUNK_RAYS = 4096  # rays per band: a camera move interrupts a slow render within a fraction of a second
EMPTY_DEPTH = 1e4  # where nothing rendered is opaque: behind everything the browser draws
OPAQUE = 0.5  # a pixel this opaque hides the browser's objects behind it
DISPLAYS = ("rgb", "depth", "alpha")


@dataclass
class Layers:
    """K renderables seen from one camera: premultiplied rgb [K, H, W, 3], alpha and z-depth [K, H, W]."""

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor


@torch.no_grad()
def render_layers(placed: list[tuple[Renderable, torch.Tensor]], camera: Cameras,
                  abort: Callable[[], bool] = lambda: False) -> Layers | None:
    """Renders each (Renderable, offset [3]) over black, a band of rows at a time; None once `abort()`
    turns true."""
    height, width = int(camera.height[0]), int(camera.width[0])
    band = max(CHUNK_RAYS // width, 1)
    layers = []
    for model, offset in placed:
        moved = _moved(camera, -offset)  # moving the model by `offset` is moving the camera by -offset
        black = torch.zeros(3, device=model.aabb.device)
        parts = []
        for top in range(0, height, band):
            if abort():
                return None
            output = model.render(_rows(moved, top, min(band, height - top)), black)
            parts.append([getattr(output, name)[0].cpu() for name in ("rgb", "alpha", "depth")])  # [h, W, ...]
        layers.append([torch.cat([part[index] for part in parts]) for index in range(3)])
    rgb = torch.stack([layer[0] for layer in layers])  # [K, H, W, 3]
    alpha = torch.stack([layer[1] for layer in layers])  # [K, H, W]
    depth = torch.stack([ray_to_z_depth(layer[2], camera) for layer in layers])
    return Layers(rgb, alpha, depth)


def _moved(camera: Cameras, shift: torch.Tensor) -> Cameras:
    c2w = camera.c2w.clone()
    c2w[:, :3, 3] += shift.to(c2w)
    return replace(camera, c2w=c2w)


def _rows(camera: Cameras, top: int, rows: int) -> Cameras:
    """Rows top .. top + rows of the image, as a camera of their own (the principal point moves up)."""
    return replace(camera, cy=camera.cy - top, height=torch.full_like(camera.height, rows))


def composite(layers: Layers, background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Front-to-back over `background` [3] -> rgb [H, W, 3], alpha [H, W], z-depth [H, W] for the browser."""
    order = layers.depth.masked_fill(layers.alpha < 1e-3, float("inf")).argsort(dim=0)  # [K, H, W] nearest first
    rgb = layers.rgb.gather(0, order[..., None].expand_as(layers.rgb))
    alpha = layers.alpha.gather(0, order)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:1]), 1 - alpha[:-1]]), dim=0)  # [K, H, W]
    colour = (transmittance[..., None] * rgb).sum(dim=0)
    coverage = 1 - transmittance[-1] * (1 - alpha[-1])
    opaque_depth = layers.depth.masked_fill(layers.alpha < OPAQUE, EMPTY_DEPTH).amin(dim=0)
    return colour + (1 - coverage)[..., None] * background, coverage, opaque_depth


def display_image(display: str, rgb: torch.Tensor, alpha: torch.Tensor, depth: torch.Tensor) -> np.ndarray:
    """What the user chose to see, as uint8 [H, W, 3]."""
    if display == "alpha":
        image = alpha[..., None].expand(*alpha.shape, 3)
    elif display == "depth":
        image = depth_colours(depth, alpha)
    else:
        image = rgb
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def depth_colours(depth: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:  # [H, W] -> [H, W, 3]
    """Near surfaces bright, far ones dark, empty space black, stretched over the visible range."""
    visible = alpha >= OPAQUE
    if not visible.any():
        return torch.zeros(*depth.shape, 3)
    near, far = depth[visible].min(), depth[visible].max()
    shade = 1 - (depth - near) / (far - near).clamp(min=1e-6) * 0.8
    return (shade * visible)[..., None].expand(*depth.shape, 3)
